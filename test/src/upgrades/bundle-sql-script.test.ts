import { describe, expect, it } from 'vitest';
import { splitSqlScript, SqlScriptError } from '@sitesync/db';

const texts = (script: string, dialect: Parameters<typeof splitSqlScript>[1]) =>
  splitSqlScript(script, dialect).map((s) => s.text);

describe('splitting SQL scripts into statements', () => {
  it('splits at semicolons, never inside strings, quoted names or comments; a statement starts at its first token', () => {
    const script = [
      '-- a comment; with a semicolon',
      "INSERT INTO t (a, \"b;c\") VALUES ('x;y', 'it''s; fine');",
      "/* block; comment */ DELETE FROM t WHERE a = '?';",
      '',
      'UPDATE t SET a = 1',
    ].join('\n');
    const st = splitSqlScript(script, 'postgres');
    expect(st.map((s) => s.text)).toEqual([
      "INSERT INTO t (a, \"b;c\") VALUES ('x;y', 'it''s; fine')",
      "DELETE FROM t WHERE a = '?'",
      'UPDATE t SET a = 1',
    ]);
    expect(st.map((s) => s.line)).toEqual([2, 3, 5]);
    expect(st[0]!.tokens.find((t) => t.kind === 'identifier')!.value).toBe('b;c');
  });

  it('keeps PostgreSQL dollar-quoted bodies and nested comments whole', () => {
    const script = `CREATE FUNCTION f() RETURNS int AS $body$ BEGIN RETURN 1; END; $body$ LANGUAGE plpgsql;
/* outer /* inner; */ still comment; */ SELECT $$a;b$$;`;
    expect(texts(script, 'postgres')).toEqual([
      'CREATE FUNCTION f() RETURNS int AS $body$ BEGIN RETURN 1; END; $body$ LANGUAGE plpgsql',
      'SELECT $$a;b$$',
    ]);
  });

  it('splits SQL Server scripts at GO lines only, keeping each batch whole', () => {
    const script = "CREATE TABLE [a;b] (x int);\nINSERT INTO [a;b] VALUES (1)\ngo\n/*\nGO\n*/\nSELECT N'GO'\n  GO  \n";
    expect(texts(script, 'mssql')).toEqual([
      'CREATE TABLE [a;b] (x int);\nINSERT INTO [a;b] VALUES (1)',
      "SELECT N'GO'",
    ]);
    expect(() => splitSqlScript('SELECT 1\nGO 5\n', 'mssql')).toThrow(SqlScriptError);
  });

  it('follows MySQL DELIMITER lines and backslash escapes', () => {
    const script =
      "INSERT INTO t VALUES ('a\\';b');\nDELIMITER //\nCREATE PROCEDURE p() BEGIN SELECT 1; SELECT 2; END//\nDELIMITER ;\nSELECT 3;";
    expect(texts(script, 'mysql')).toEqual([
      "INSERT INTO t VALUES ('a\\';b')",
      'CREATE PROCEDURE p() BEGIN SELECT 1; SELECT 2; END',
      'SELECT 3',
    ]);
  });

  it('keeps a SQLite trigger body (with CASE ... END inside) in one statement', () => {
    const script =
      'CREATE TRIGGER tr AFTER INSERT ON t BEGIN UPDATE t SET a = CASE WHEN 1 THEN 2 ELSE 3 END; DELETE FROM u; END;\nSELECT 1;';
    expect(texts(script, 'sqlite')).toEqual([
      'CREATE TRIGGER tr AFTER INSERT ON t BEGIN UPDATE t SET a = CASE WHEN 1 THEN 2 ELSE 3 END; DELETE FROM u; END',
      'SELECT 1',
    ]);
  });

  it('names the line of an unterminated string', () => {
    expect(() => splitSqlScript("SELECT 1;\nSELECT 'oops;\n", 'sqlite')).toThrow(/line 2: unterminated/);
  });
});
