import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import type { z } from 'zod';
import { ConfigError } from './errors';
import { splitBrokerUrls } from './broker-urls';

/** Where an environment variable lands in the config object, and how to parse it. */
export interface EnvKey {
  path: readonly string[];
  /** `urls`: one broker URL, or several separated by commas (the nodes of a cluster). */
  type: 'string' | 'number' | 'urls';
}

/**
 * Applies `SYNC_<NAME>` overrides (or `SYNC_<NAME>_FILE`, a file holding the value, for secrets)
 * onto a raw config object. A key whose first path segment is `schedule` replaces the whole object.
 */
export function applyEnvOverrides(
  raw: Record<string, unknown>,
  env: NodeJS.ProcessEnv,
  keys: Readonly<Record<string, EnvKey>>,
): Record<string, unknown> {
  const out = structuredClone(raw);
  for (const [name, spec] of Object.entries(keys)) {
    const variable = envVariableOf(name, env);
    if (variable === undefined) continue;
    let value = env[variable]!;
    if (variable !== `SYNC_${name}`) {
      const file = value;
      try {
        value = readFileSync(file, 'utf8').trim();
      } catch (cause) {
        throw new ConfigError(`${variable}: cannot read ${file}`, spec.path.join('.'), { cause });
      }
    }
    let v: unknown = value;
    if (spec.type === 'urls') v = splitBrokerUrls(value);
    if (spec.type === 'number') {
      v = Number(value);
      if (value.trim() === '' || !Number.isFinite(v)) {
        throw new ConfigError(`SYNC_${name}: ${JSON.stringify(value)} is not a number`, spec.path.join('.'));
      }
    }
    let obj = out;
    for (const p of spec.path.slice(0, -1)) {
      if (typeof obj[p] !== 'object' || obj[p] === null) obj[p] = {};
      obj = obj[p] as Record<string, unknown>;
    }
    if (spec.path[0] === 'schedule') for (const k of Object.keys(obj)) delete obj[k];
    obj[spec.path.at(-1)!] = v;
  }
  return out;
}

/** The variable that sets key `name` (`SYNC_<NAME>`, else `SYNC_<NAME>_FILE`), or undefined when neither is set. */
function envVariableOf(name: string, env: NodeJS.ProcessEnv): string | undefined {
  if (env[`SYNC_${name}`] !== undefined) return `SYNC_${name}`;
  return env[`SYNC_${name}_FILE`] ? `SYNC_${name}_FILE` : undefined;
}

/**
 * Where a loaded config's keys came from: the config file (if any) and the `SYNC_*` variables that
 * override it. Kept beside the config, not in it, so that errors can say where to fix a key.
 */
export class ConfigOrigin {
  private readonly variables = new Map<string, { name: string; set: string | undefined; value?: string }>();

  constructor(
    /** The config file read, as an absolute path; undefined when the environment alone configures. */
    readonly file: string | undefined,
    env: NodeJS.ProcessEnv,
    keys: Readonly<Record<string, EnvKey>>,
  ) {
    for (const [name, spec] of Object.entries(keys)) {
      const set = envVariableOf(name, env);
      this.variables.set(spec.path.join('.'), {
        name: `SYNC_${name}`,
        set,
        ...(set && set !== `SYNC_${name}` ? { value: env[set] } : {}),
      });
    }
  }

  /**
   * Where to change `key` (dotted), for "check …" in an error: `db.url in /etc/sitesync/central.json
   * (or SYNC_DB_URL)` when the file set it, `SYNC_DB_URL` when the environment did.
   */
  whereSet(key: string): string {
    const variable = this.variables.get(key);
    if (variable?.set) {
      const what = variable.value === undefined ? variable.set : `${variable.set} (${variable.value})`;
      return this.file ? `${what}, which overrides ${key} in ${this.file}` : what;
    }
    if (this.file) return `${key} in ${this.file}${variable ? ` (or ${variable.name})` : ''}`;
    return variable ? `${key} (${variable.name})` : key;
  }

  /**
   * `err` with where to fix it appended when it is a config error on `key` or an item of it
   * (`amqp.url.1`); any other error unchanged.
   */
  locate(err: unknown, key: string): unknown {
    if (!(err instanceof ConfigError) || (err.key !== key && !err.key.startsWith(`${key}.`))) return err;
    return new ConfigError(`${err.message} (set in ${this.whereSet(key)})`, err.key, { cause: err, code: err.code });
  }
}

/** Names the first problem of a zod error as `config key "a.b": message`. */
export function configErrorFrom(err: z.ZodError, prefix = ''): ConfigError {
  const issue = err.issues[0];
  const key = prefix + (issue?.path.map(String).join('.') ?? '');
  let msg = issue?.message ?? 'invalid';
  if (issue?.code === 'invalid_type' && /received undefined/.test(msg)) msg = 'is required';
  if (issue?.code === 'unrecognized_keys') msg = `unknown key(s) ${issue.keys.join(', ')}`;
  return new ConfigError(`config key "${key || '(root)'}": ${msg}`, key || '(root)');
}

/**
 * The config file an agent or syncctl reads: `file`, else `SYNC_CONFIG`; none at all is an empty
 * object (everything from the environment). Returns the path read, resolved, for errors to name.
 */
export function readConfigFile(
  file: string | undefined,
  env: NodeJS.ProcessEnv,
): { raw: Record<string, unknown>; path: string | undefined } {
  const given = file ?? env.SYNC_CONFIG;
  if (!given) return { raw: {}, path: undefined };
  const path = resolve(given);
  try {
    return { raw: JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>, path };
  } catch (cause) {
    throw new ConfigError(`config file ${given}: ${(cause as Error).message}`, 'config', { cause });
  }
}
