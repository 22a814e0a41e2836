import { ConfigError } from '@sitesync/protocol';
import type { DialectName } from './dialects';

export interface ParsedDatabaseUrl {
  dialect: DialectName;
  /** sqlite: file path or ':memory:' */
  path?: string;
  host?: string;
  port?: number;
  user?: string;
  password?: string;
  database?: string;
  /** postgres schema / mssql schema for every sitesync table */
  schema?: string;
  params: Record<string, string>;
}

/**
 * `sqlite:<path>` | `sqlite::memory:` | `postgres://user:pw@host:5432/db?schema=s` |
 * `mssql://user:pw@host:1433/db?encrypt=false` | `mysql://` or `mariadb://`.
 */
export function parseDatabaseUrl(url: string, key = 'db.url'): ParsedDatabaseUrl {
  if (url.startsWith('sqlite:')) {
    let path = url.slice('sqlite:'.length);
    if (path.startsWith('//')) path = path.slice(2);
    if (!path) throw new ConfigError(`${key}: sqlite URL needs a file path (sqlite:./site.db or sqlite::memory:)`, key);
    return { dialect: 'sqlite', path, params: {} };
  }
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new ConfigError(`${key}: ${JSON.stringify(redact(url))} is not a database URL`, key);
  }
  const proto = u.protocol.replace(/:$/, '');
  const dialect: DialectName | undefined =
    proto === 'postgres' || proto === 'postgresql'
      ? 'postgres'
      : proto === 'mssql' || proto === 'sqlserver'
        ? 'mssql'
        : proto === 'mysql' || proto === 'mariadb'
          ? 'mysql'
          : undefined;
  if (!dialect) {
    throw new ConfigError(
      `${key}: unsupported database scheme "${proto}" (expected sqlite, postgres, mssql, mysql)`,
      key,
    );
  }
  const params: Record<string, string> = {};
  u.searchParams.forEach((v, k) => (params[k] = v));
  const database = decodeURIComponent(u.pathname.replace(/^\//, ''));
  return {
    dialect,
    ...(u.hostname ? { host: u.hostname } : {}),
    ...(u.port ? { port: Number(u.port) } : {}),
    ...(u.username ? { user: decodeURIComponent(u.username) } : {}),
    ...(u.password ? { password: decodeURIComponent(u.password) } : {}),
    ...(database ? { database } : {}),
    ...(params.schema ? { schema: params.schema } : {}),
    params,
  };
}

// The user and the password of a URL's authority. Greedy up to the LAST @ of the authority, as URL
// parsers read it: a password may hold an unencoded @.
const USER_PASSWORD = /(\/\/[^:/@]+):[^/?#]*@/;

/** The URL with its password replaced, for logs and error messages. */
export function redact(url: string): string {
  return url.replace(USER_PASSWORD, '$1:***@');
}

/** The URL without its password, saying so when it had one (`postgres://u@h/db (password hidden)`): for operators. */
export function urlWithoutPassword(url: string): string {
  const shown = url.replace(USER_PASSWORD, '$1@');
  return shown === url ? url : `${shown} (password hidden)`;
}
