import { describe, expect, it } from 'vitest';
import { ConfigError } from '@sitesync/protocol';
import { parseDatabaseUrl, redact, urlWithoutPassword } from '@sitesync/db';

function configError(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return err as ConfigError;
  }
  throw new Error('expected a ConfigError');
}

describe('database URLs', () => {
  it('sqlite: a relative path, an absolute path and an in-memory database', () => {
    expect(parseDatabaseUrl('sqlite:./site.db')).toEqual({ dialect: 'sqlite', path: './site.db', params: {} });
    expect(parseDatabaseUrl('sqlite:/var/lib/sitesync/site.db').path).toBe('/var/lib/sitesync/site.db');
    expect(parseDatabaseUrl('sqlite:///var/lib/site.db').path).toBe('/var/lib/site.db');
    expect(parseDatabaseUrl('sqlite://data/site.db').path).toBe('data/site.db');
    expect(parseDatabaseUrl('sqlite::memory:').path).toBe(':memory:');
  });

  it('sqlite without a path is a configuration error naming the key', () => {
    const err = configError(() => parseDatabaseUrl('sqlite:', 'central.db.url'));
    expect(err.key).toBe('central.db.url');
    expect(err.message).toMatch(/^central\.db\.url: /);
  });

  it('postgres: host, port, user, password, database and schema', () => {
    const p = parseDatabaseUrl('postgres://sync:s3cret@db.example:6543/central?schema=sitesync&sslmode=require');
    expect(p).toEqual({
      dialect: 'postgres',
      host: 'db.example',
      port: 6543,
      user: 'sync',
      password: 's3cret',
      database: 'central',
      schema: 'sitesync',
      params: { schema: 'sitesync', sslmode: 'require' },
    });
    expect(parseDatabaseUrl('postgresql://h/db').dialect).toBe('postgres');
  });

  it('leaves out what the URL does not give, so drivers use their defaults', () => {
    const p = parseDatabaseUrl('postgres://localhost');
    expect(p).toEqual({ dialect: 'postgres', host: 'localhost', params: {} });
  });

  it('decodes percent-encoded user names, passwords and database names', () => {
    const p = parseDatabaseUrl('mssql://dom%5Cuser:p%40ss%3Aw%2Fd@sql01:1433/Lab%20Central');
    expect(p.user).toBe('dom\\user');
    expect(p.password).toBe('p@ss:w/d');
    expect(p.database).toBe('Lab Central');
  });

  it('mssql and sqlserver schemes are SQL Server, with their options as params', () => {
    const p = parseDatabaseUrl('sqlserver://sa:pw@10.0.0.5:1433/Laboratorio?encrypt=true&trustServerCertificate=false');
    expect(p.dialect).toBe('mssql');
    expect(p.params).toEqual({ encrypt: 'true', trustServerCertificate: 'false' });
    expect(parseDatabaseUrl('mssql://h/db').dialect).toBe('mssql');
  });

  it('mysql and mariadb schemes are the mysql dialect', () => {
    expect(parseDatabaseUrl('mysql://root@127.0.0.1:3306/test')).toMatchObject({
      dialect: 'mysql',
      user: 'root',
      port: 3306,
      database: 'test',
    });
    expect(parseDatabaseUrl('mariadb://root@127.0.0.1/test').dialect).toBe('mysql');
  });

  it('an unsupported scheme is a configuration error', () => {
    const err = configError(() => parseDatabaseUrl('oracle://scott:tiger@h/orcl'));
    expect(err.key).toBe('db.url');
    expect(err.message).toContain('oracle');
  });

  it('something that is not a URL is a configuration error that does not print the password', () => {
    const err = configError(() => parseDatabaseUrl('postgres//sync:hunter2@nowhere', 'site.db.url'));
    expect(err.key).toBe('site.db.url');
    expect(err.message).not.toContain('hunter2');
    const err2 = configError(() => parseDatabaseUrl('just words'));
    expect(err2.key).toBe('db.url');
  });
});

describe('redact', () => {
  it('hides the password and keeps everything else', () => {
    expect(redact('postgres://sync:s3cret@db:5432/central')).toBe('postgres://sync:***@db:5432/central');
    // an unencoded @ in the password: URL parsers take the LAST @ of the authority, and so must redact
    expect(redact('mssql://sa:p@ss@word@sql01/db')).toBe('mssql://sa:***@sql01/db');
    expect(redact('postgres://u:pw@h/db?notify=ops@example.org')).toBe('postgres://u:***@h/db?notify=ops@example.org');
  });

  it('leaves a URL without a password as it is', () => {
    expect(redact('postgres://sync@db/central')).toBe('postgres://sync@db/central');
    expect(redact('sqlite:./site.db')).toBe('sqlite:./site.db');
  });
});

describe('urlWithoutPassword', () => {
  it('drops the password and says so', () => {
    expect(urlWithoutPassword('postgres://sync:s3cret@db:5432/central')).toBe(
      'postgres://sync@db:5432/central (password hidden)',
    );
    expect(urlWithoutPassword('mssql://sa:p@ss@word@sql01/db')).toBe('mssql://sa@sql01/db (password hidden)');
  });

  it('leaves a URL without a password as it is', () => {
    expect(urlWithoutPassword('postgres://sync@db/central')).toBe('postgres://sync@db/central');
    expect(urlWithoutPassword('sqlite:./site.db')).toBe('sqlite:./site.db');
  });
});
