import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { loadCentralConfig, verifyPassword } from '@sitesync/central';
import { PERIPHERAL_NODE_OPTIONS } from '@sitesync/peripheral';
import type { BrokerDefinitions } from '@sitesync/protocol';
import { REPO } from '../../support/wait.js';
import { loadPeripheralConfig } from '@sitesync/protocol';

/**
 * No Docker engine runs here, so the deployment files are checked by reading them: the essentials
 * of each image, and every compose service's configuration loaded through the agents' own config
 * loaders, so a missing or misspelt variable fails here and not at a hospital.
 */
const DEPLOY = join(REPO, 'deploy');
const read = (p: string) => readFileSync(join(DEPLOY, p), 'utf8');

interface Stage {
  name: string;
  from: string;
  lines: string[];
}

/** FROM-separated stages of a Dockerfile, continuation lines joined. */
function stages(dockerfile: string): Stage[] {
  const logical = dockerfile
    .replace(/\\\n/g, ' ')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'));
  const out: Stage[] = [];
  for (const line of logical) {
    const from = /^FROM\s+(\S+)(?:\s+AS\s+(\S+))?/i.exec(line);
    if (from) out.push({ from: from[1]!, name: from[2] ?? `stage${out.length}`, lines: [] });
    else out.at(-1)?.lines.push(line);
  }
  return out;
}

/** A stage's instructions including those it inherits from the stages it is built FROM. */
function chain(all: Stage[], name: string): Stage[] {
  const s = all.find((x) => x.name === name);
  if (!s) return [];
  return [...chain(all, s.from), s];
}

function instruction(st: Stage[], keyword: string): string[] {
  return st.flatMap((s) => s.lines.filter((l) => l.toUpperCase().startsWith(`${keyword} `)));
}

function dotenv(text: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const m = /^([A-Z0-9_]+)=(.*)$/.exec(line.trim());
    if (m) env[m[1]!] = m[2]!;
  }
  return env;
}

describe('deploy/Dockerfile', () => {
  const all = stages(read('Dockerfile'));

  it('is a multi-stage build whose runtime stages carry no compiler', () => {
    expect(all.length).toBeGreaterThanOrEqual(4);
    for (const target of ['peripheral', 'central']) {
      const own = chain(all, target);
      expect(own.map((s) => s.name)).toContain('runtime');
      expect(instruction(own, 'RUN').join('\n'), target).not.toMatch(/g\+\+|apt-get install/);
    }
  });

  it.each(['peripheral', 'central'])(
    '%s: non-root user, /healthz health check, SIGTERM, its bin as entrypoint',
    (target) => {
      const own = chain(all, target);
      const user = instruction(own, 'USER').at(-1);
      expect(user).toBeDefined();
      expect(user).not.toMatch(/USER\s+(root|0)\b/);
      expect(instruction(own, 'HEALTHCHECK').at(-1)).toMatch(/\/healthz/);
      expect(instruction(own, 'STOPSIGNAL').at(-1)).toBe('STOPSIGNAL SIGTERM');
      const entry = instruction(own, 'ENTRYPOINT').at(-1)!;
      const bin = /"(agents\/[^"]+\.js)"/.exec(entry)?.[1];
      expect(bin, entry).toBeDefined();
      expect(existsSync(join(REPO, bin!)), bin).toBe(true);
    },
  );

  it('runs the site agent with the Node options its memory benchmark measured', () => {
    expect(instruction(chain(all, 'peripheral'), 'ENV')).toContain(`ENV NODE_OPTIONS=${PERIPHERAL_NODE_OPTIONS}`);
  });

  it('gives npm ci every workspace of the root package.json, in the build and in the runtime dependencies', () => {
    const workspaces = (JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as { workspaces: string[] })
      .workspaces;
    for (const stage of ['build', 'agent-deps', 'syncctl-deps']) {
      const copies = instruction(chain(all, stage), 'COPY').join('\n');
      for (const w of workspaces) expect(copies, `${stage} copies ${w}/package.json`).toContain(`${w}/package.json`);
    }
  });

  it('the central image carries neither syncctl nor its dependencies; syncctl is an image of its own', () => {
    const central = chain(all, 'central');
    expect(instruction(central, 'COPY').join('\n')).not.toMatch(/tools\/syncctl|syncctl-deps/);
    expect(instruction(chain(all, 'agent-deps'), 'RUN').join('\n')).not.toContain('@sitesync/syncctl');
    const tool = chain(all, 'syncctl');
    expect(instruction(tool, 'COPY').join('\n')).toContain('tools/syncctl/dist');
    expect(instruction(tool, 'USER').at(-1)).not.toMatch(/USER\s+(root|0)\b/);
    expect(instruction(tool, 'RUN').join('\n')).not.toMatch(/g\+\+|apt-get install/);
    expect(existsSync(join(REPO, 'tools/syncctl/bin/syncctl.js'))).toBe(true);
  });

  it('copies only paths that exist in the build context', () => {
    for (const s of all)
      for (const copy of instruction([s], 'COPY').filter((c) => !c.includes('--from='))) {
        const parts = copy.split(/\s+/).slice(1);
        for (const src of parts.slice(0, -1)) expect(existsSync(join(REPO, src)), `${s.name}: ${copy}`).toBe(true);
      }
  });
});

type Service = {
  image?: string;
  hostname?: string;
  build?: { target?: string };
  environment?: Record<string, string>;
  secrets?: string[];
  volumes?: string[];
  depends_on?: Record<string, { condition: string }>;
  healthcheck?: { test: unknown };
};
type Compose = {
  services: Record<string, Service>;
  secrets: Record<string, { environment: string }>;
  volumes: Record<string, unknown>;
};

/** The repository file a service mounts at `path`, if any. */
function mounted(s: Service, path: string): string | undefined {
  const m = (s.volumes ?? []).find((v) => v.split(':')[1] === path && v.startsWith('.'));
  return m ? resolve(DEPLOY, m.split(':')[0]!) : undefined;
}

/** A service's environment as the agent sees it: secrets (`*_FILE`) resolved from .env.example, mounted files mapped to the repository. */
function agentEnv(compose: Compose, env: Record<string, string>, s: Service): NodeJS.ProcessEnv {
  const out: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(s.environment ?? {})) {
    const secret = /^\/run\/secrets\/(.+)$/.exec(v)?.[1];
    if (k.endsWith('_FILE') && secret) {
      expect(s.secrets, `${k} needs secret ${secret}`).toContain(secret);
      out[k.slice(0, -'_FILE'.length)] = env[compose.secrets[secret]!.environment];
    } else if (k.endsWith('_FILE') && mounted(s, v)) {
      out[k.slice(0, -'_FILE'.length)] = readFileSync(mounted(s, v)!, 'utf8').trim();
    } else if (k === 'SYNC_PIPELINE_FILES') {
      out[k] = v
        .split(',')
        .map((f) => {
          const mount = (s.volumes ?? []).find((m) => m.split(':')[1] === f)!;
          expect(mount, `${f} is mounted`).toBeDefined();
          return resolve(DEPLOY, mount.split(':')[0]!);
        })
        .join(',');
    } else out[k] = v;
  }
  return out;
}

describe('deploy/compose.yaml', () => {
  const compose = parse(read('compose.yaml'), { merge: true }) as Compose;
  const services = compose.services;
  const env = dotenv(read('.env.example'));

  it('defines in .env.example every variable it uses', () => {
    const used = [...read('compose.yaml').matchAll(/\$\{([A-Z0-9_]+)/g)].map((m) => m[1]!);
    const fromSecrets = Object.values(compose.secrets).map((s) => s.environment);
    for (const v of new Set([...used, ...fromSecrets])) expect(env, v).toHaveProperty(v);
  });

  it('mounts files that exist, and the broker gets its config, plugins, definitions and TLS', () => {
    for (const [name, s] of Object.entries(services))
      for (const v of s.volumes ?? []) {
        const src = v.split(':')[0]!;
        if (src.startsWith('.')) expect(existsSync(resolve(DEPLOY, src)), `${name}: ${v}`).toBe(true);
      }
    const mounts = (services.rabbitmq!.volumes ?? []).map((v) => v.split(':')[1]);
    for (const target of [
      '/etc/rabbitmq/rabbitmq.conf',
      '/etc/rabbitmq/enabled_plugins',
      '/etc/rabbitmq/definitions.json',
      '/etc/rabbitmq/tls',
    ])
      expect(mounts).toContain(target);
    expect(read('rabbitmq/rabbitmq.conf')).toMatch(/^load_definitions = \/etc\/rabbitmq\/definitions\.json$/m);
    expect(read('rabbitmq/enabled_plugins')).toMatch(/rabbitmq_management.*rabbitmq_prometheus/);
  });

  it('starts things in order: every dependency exists, and databases and the broker are waited for until healthy', () => {
    for (const [name, s] of Object.entries(services))
      for (const [dep, { condition }] of Object.entries(s.depends_on ?? {})) {
        expect(services, `${name} depends on ${dep}`).toHaveProperty(dep);
        if (services[dep]!.healthcheck) expect(condition, `${name} -> ${dep}`).toBe('service_healthy');
      }
    for (const name of ['rabbitmq', 'central-db', 'site-101-db', 'site-102-db'])
      expect(services[name]!.healthcheck, name).toBeDefined();
  });

  it.each(['site-101', 'site-102'])('%s: its environment is a complete, valid peripheral config over TLS', (name) => {
    const s = services[name]!;
    expect(s.image ?? s.build?.target).toMatch(/peripheral/);
    const cfg = loadPeripheralConfig(undefined, agentEnv(compose, env, s));
    expect(cfg.siteId).toBe(Number(name.slice(-3)));
    expect(cfg.amqp.url).toMatch(/^amqps:\/\//);
    expect(decodeURIComponent(new URL(cfg.amqp.url).username)).toBe(`site-${cfg.siteId}`);
    expect(cfg.amqp.caFile).toBe('/tls/ca.pem');
    expect(cfg.db.url).toMatch(/^mssql:\/\//);
    expect(cfg.pipelines.map((p) => p.name)).toEqual(['lab']);
    expect(cfg.httpPort).toBeGreaterThan(0);
  });

  it('central: its environment is a complete, valid central config over TLS, with its API and metrics on', async () => {
    const cfg = loadCentralConfig(undefined, agentEnv(compose, env, services.central!));
    expect(cfg.amqp.url).toMatch(/^amqps:\/\//);
    expect(cfg.amqp.caFile).toBe('/tls/ca.pem');
    expect(cfg.db.url).toMatch(/^mssql:\/\//);
    expect(cfg.httpPort).toBeGreaterThan(0);
    expect(cfg.apiToken).toBeDefined();
    expect(cfg.amqp.managementUrl).toBeDefined();
    expect(cfg.users.map((u) => `${u.name}:${u.role}`)).toEqual(['operator:operator', 'viewer:viewer']);
    // The demo passwords docs/deploy.md gives are the ones hashed there.
    for (const u of cfg.users)
      expect(await verifyPassword(`${u.name}-demo-password`, u.passwordHash), u.name).toBe(true);
  });

  it("the broker users' passwords in .env.example are the ones definitions.json holds", () => {
    const defs = JSON.parse(read('rabbitmq/definitions.json')) as BrokerDefinitions;
    const urls = [env.CENTRAL_AMQP_URL!, env.SITE_101_AMQP_URL!, env.SITE_102_AMQP_URL!, env.MANAGEMENT_URL!];
    for (const u of urls.map((x) => new URL(x))) {
      const user = defs.users.find((d) => d.name === decodeURIComponent(u.username));
      expect(user, u.username).toBeDefined();
      const raw = Buffer.from(user!.password_hash, 'base64');
      const digest = createHash('sha256')
        .update(Buffer.concat([raw.subarray(0, 4), Buffer.from(decodeURIComponent(u.password))]))
        .digest();
      expect(digest.equals(raw.subarray(4)), `password of ${u.username}`).toBe(true);
    }
    for (const u of urls.slice(0, 3)) expect(new URL(u).pathname).toBe(`/${defs.vhosts[0]!.name}`);
  });
});

describe('deploy/compose.cluster.yml: the same system on a three-node RabbitMQ cluster', () => {
  const text = read('compose.cluster.yml');
  const compose = parse(text, { merge: true }) as Compose;
  const services = compose.services;
  const single = parse(read('compose.yaml'), { merge: true }) as Compose;
  const env = dotenv(read('.env.example'));
  const NODES = ['rabbitmq-1', 'rabbitmq-2', 'rabbitmq-3'];

  it('runs every service of compose.yaml, the one broker replaced by three nodes', () => {
    const expected = Object.keys(single.services).filter((n) => n !== 'rabbitmq');
    expect(Object.keys(services)).toEqual(expect.arrayContaining([...expected, ...NODES, 'cookie-init']));
    expect(services).not.toHaveProperty('rabbitmq');
  });

  it('defines in .env.example every variable it uses, and mounts files that exist', () => {
    const used = [...text.matchAll(/\$\{([A-Z0-9_]+)/g)].map((m) => m[1]!);
    const fromSecrets = Object.values(compose.secrets).map((s) => s.environment);
    for (const v of new Set([...used, ...fromSecrets])) expect(env, v).toHaveProperty(v);
    for (const [name, s] of Object.entries(services))
      for (const v of s.volumes ?? []) {
        const src = v.split(':')[0]!;
        if (src.startsWith('.')) expect(existsSync(resolve(DEPLOY, src)), `${name}: ${v}`).toBe(true);
        else expect(compose.volumes, `${name}: volume ${src}`).toHaveProperty(src);
      }
  });

  it('three nodes with their own host names and data, the same config, definitions and cluster peer list', () => {
    const conf = read('rabbitmq/conf.d/30-cluster.conf');
    expect(conf).toMatch(/^cluster_formation\.peer_discovery_backend = classic_config$/m);
    const peers = [...conf.matchAll(/^cluster_formation\.classic_config\.nodes\.\d+ = rabbit@(\S+)$/gm)].map(
      (m) => m[1],
    );
    expect(peers).toEqual(NODES);
    const data = new Set<string>();
    for (const name of NODES) {
      const s = services[name]!;
      expect(s.hostname, name).toBe(name);
      expect(s.image, name).toMatch(/^rabbitmq:4\./);
      expect(s.healthcheck, name).toBeDefined();
      const mounts = Object.fromEntries((s.volumes ?? []).map((v) => [v.split(':')[1], v.split(':')[0]]));
      for (const target of [
        '/etc/rabbitmq/rabbitmq.conf',
        '/etc/rabbitmq/enabled_plugins',
        '/etc/rabbitmq/definitions.json',
        '/etc/rabbitmq/conf.d/30-cluster.conf',
        '/etc/rabbitmq/tls',
      ])
        expect(mounts, `${name} mounts ${target}`).toHaveProperty([target]);
      data.add(mounts['/var/lib/rabbitmq']!);
    }
    expect(data.size).toBe(3);
  });

  it("one Erlang cookie for all nodes, written into each node's data volume before it starts", () => {
    const init = services['cookie-init']!;
    const into = (init.volumes ?? []).map((v) => v.split(':')[0]);
    for (const name of NODES) {
      const volume = services[name]!.volumes!.find((v) => v.endsWith(':/var/lib/rabbitmq'))!.split(':')[0];
      expect(into, name).toContain(volume);
    }
    expect(services['rabbitmq-1']!.depends_on).toHaveProperty('cookie-init');
    expect(env.RABBITMQ_ERLANG_COOKIE!.length).toBeGreaterThanOrEqual(20);
  });

  it('nodes join one after the other, and the agents start once all three are healthy', () => {
    expect(services['rabbitmq-2']!.depends_on).toEqual({ 'rabbitmq-1': { condition: 'service_healthy' } });
    expect(services['rabbitmq-3']!.depends_on).toEqual({ 'rabbitmq-2': { condition: 'service_healthy' } });
    for (const name of ['central', 'site-101', 'site-102'])
      for (const node of NODES)
        expect(services[name]!.depends_on?.[node], `${name} -> ${node}`).toEqual({ condition: 'service_healthy' });
  });

  /** The host names of a config's broker URLs, after checking each is amqps with `user`. */
  function nodesOf(urls: readonly string[], user: string): string[] {
    return urls.map((u) => {
      expect(u).toMatch(/^amqps:\/\//);
      expect(decodeURIComponent(new URL(u).username)).toBe(user);
      return new URL(u).hostname;
    });
  }

  it.each(['site-101', 'site-102'])('%s: its config lists all three nodes', (name) => {
    const cfg = loadPeripheralConfig(undefined, agentEnv(compose, env, services[name]!));
    expect(cfg.siteId).toBe(Number(name.slice(-3)));
    expect(nodesOf(cfg.amqp.urls, `site-${cfg.siteId}`)).toEqual(NODES);
    expect(cfg.amqp.caFile).toBe('/tls/ca.pem');
  });

  it('central and syncctl: their configs list all three nodes', () => {
    for (const name of ['central', 'syncctl']) {
      const cfg = loadCentralConfig(undefined, agentEnv(compose, env, services[name]!));
      expect(nodesOf(cfg.amqp.urls, 'sitesync-central'), name).toEqual(NODES);
      expect(new URL(cfg.amqp.managementUrl!).hostname).toBe('rabbitmq-1');
    }
  });

  it("the demo certificate names every node (the agents check the broker's host name)", () => {
    for (const name of NODES) expect(read('tls/make-certs.sh')).toContain(`DNS:${name}`);
  });
});
