import { execFile } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const PG_LIB = '/usr/lib/postgresql';

function binDir(): string | undefined {
  if (!existsSync(PG_LIB)) return undefined;
  const versions = readdirSync(PG_LIB).sort((a, b) => Number(b) - Number(a));
  const dir = versions.map((v) => join(PG_LIB, v, 'bin')).find((d) => existsSync(join(d, 'pg_ctl')));
  return dir;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

/**
 * A throwaway PostgreSQL server of this test's own (initdb in a temp folder, its own port), so a
 * test can stop "the central database" without touching the server other suites share.
 */
export class PrivatePostgres {
  private constructor(
    private readonly bin: string,
    readonly dir: string,
    readonly port: number,
    private readonly asUser: string | undefined,
  ) {}

  /** Why a private server cannot run here, or undefined when it can. */
  static unavailable(): string | undefined {
    if (!binDir()) return `no PostgreSQL server binaries under ${PG_LIB}`;
    if (process.getuid?.() === 0 && !existsSync('/usr/sbin/runuser')) return 'running as root without runuser';
    return undefined;
  }

  static async create(): Promise<PrivatePostgres> {
    const bin = binDir()!;
    const dir = mkdtempSync(join(tmpdir(), 'sitesync-pg-'));
    // PostgreSQL refuses to run as root: run it as the postgres user.
    const asUser = process.getuid?.() === 0 ? 'postgres' : undefined;
    if (asUser) chownSync(dir, Number(await sh('id', ['-u', asUser])), Number(await sh('id', ['-g', asUser])));
    const pg = new PrivatePostgres(bin, dir, await freePort(), asUser);
    await pg.run('initdb', ['-D', join(dir, 'data'), '-A', 'trust', '-U', 'postgres', '--no-sync', '-E', 'UTF8']);
    await pg.start();
    return pg;
  }

  url(database = 'postgres'): string {
    return `postgres://postgres@127.0.0.1:${this.port}/${database}`;
  }

  async start(): Promise<void> {
    await this.run('pg_ctl', [
      '-D',
      join(this.dir, 'data'),
      '-l',
      join(this.dir, 'log'),
      '-w',
      '-o',
      `-p ${this.port} -k ${this.dir} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off`,
      'start',
    ]);
  }

  /** Fast shutdown: open connections are cut, like a crashed or restarted server. */
  async stop(): Promise<void> {
    await this.run('pg_ctl', ['-D', join(this.dir, 'data'), '-m', 'fast', '-w', 'stop']);
  }

  async destroy(): Promise<void> {
    await this.stop().catch(() => undefined);
    rmSync(this.dir, { recursive: true, force: true });
  }

  private run(tool: string, args: string[]): Promise<string> {
    const exe = join(this.bin, tool);
    return this.asUser ? sh('/usr/sbin/runuser', ['-u', this.asUser, '--', exe, ...args]) : sh(exe, args);
  }
}

function sh(cmd: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) =>
    execFile(cmd, args, { timeout: 60_000 }, (err, stdout, stderr) =>
      err ? reject(new Error(`${cmd} ${args.join(' ')}: ${stderr || err.message}`)) : resolve(stdout.trim()),
    ),
  );
}
