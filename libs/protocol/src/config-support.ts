import { readFileSync } from 'node:fs';
import type { z } from 'zod';
import { ConfigError } from './errors';

/** Where an environment variable lands in the config object, and how to parse it. */
export interface EnvKey {
  path: readonly string[];
  type: 'string' | 'number';
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
    let value = env[`SYNC_${name}`];
    const file = env[`SYNC_${name}_FILE`];
    if (value === undefined && file) {
      try {
        value = readFileSync(file, 'utf8').trim();
      } catch (cause) {
        throw new ConfigError(`SYNC_${name}_FILE: cannot read ${file}`, spec.path.join('.'), { cause });
      }
    }
    if (value === undefined) continue;
    let v: unknown = value;
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

/** Names the first problem of a zod error as `config key "a.b": message`. */
export function configErrorFrom(err: z.ZodError, prefix = ''): ConfigError {
  const issue = err.issues[0];
  const key = prefix + (issue?.path.map(String).join('.') ?? '');
  let msg = issue?.message ?? 'invalid';
  if (issue?.code === 'invalid_type' && /received undefined/.test(msg)) msg = 'is required';
  if (issue?.code === 'unrecognized_keys') msg = `unknown key(s) ${issue.keys.join(', ')}`;
  return new ConfigError(`config key "${key || '(root)'}": ${msg}`, key || '(root)');
}
