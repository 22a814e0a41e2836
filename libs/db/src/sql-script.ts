import type { DialectName } from './dialects';

/**
 * Splitting SQL scripts (upgrade scripts, bundle entries) into the statements or batches a driver
 * runs one at a time. A small lexer, not a parser: it knows enough about strings, quoted names,
 * comments and dollar quoting that a `;` or a `GO` inside them never splits, and it hands each
 * statement's tokens to callers that want to recognise a few statement shapes (DDL on a table).
 */

export type SqlTokenKind = 'word' | 'identifier' | 'string' | 'number' | 'symbol';

export interface SqlToken {
  kind: SqlTokenKind;
  /** Words and symbols as written; identifiers and strings without their quotes (escapes undone). */
  value: string;
  /** 1-based line of the token's first character. */
  line: number;
}

export interface SqlStatement {
  /** The statement (or SQL Server batch) as written, without its delimiter. */
  text: string;
  /** 1-based line where it starts in the script. */
  line: number;
  /** Its tokens, comments and whitespace left out. */
  tokens: SqlToken[];
}

/** A script the splitter cannot read (an unterminated string or comment, a GO with a count). */
export class SqlScriptError extends Error {
  override name = 'SqlScriptError';
  constructor(
    message: string,
    readonly line: number,
  ) {
    super(`line ${line}: ${message}`);
  }
}

const WORD_START = /[A-Za-z_\u0080-\uffff]/;
const WORD_PART = /[A-Za-z0-9_$\u0080-\uffff]/;
/** SQL Server names variables `@x` and temporary tables `#t`. */
const MSSQL_WORD_START = /[A-Za-z_@#\u0080-\uffff]/;
const MSSQL_WORD_PART = /[A-Za-z0-9_$@#\u0080-\uffff]/;

/**
 * Splits `script` into statements for `dialect`: at `;` (SQLite, PostgreSQL, MySQL), at `GO` lines
 * (SQL Server, whose batches may hold many statements and run as one request). Also understood:
 * MySQL's `DELIMITER` lines, SQLite's `CREATE TRIGGER ... BEGIN ...; END`, PostgreSQL's
 * `$tag$ ... $tag$` bodies, `E'...'` and `N'...'` strings, nested comments on PostgreSQL.
 * Statements holding only comments are dropped.
 */
export function splitSqlScript(script: string, dialect: DialectName): SqlStatement[] {
  return new ScriptSplitter(script.replace(/^\uFEFF/, ''), dialect).split();
}

class ScriptSplitter {
  private pos = 0;
  private line = 1;
  private delimiter = ';';
  private readonly statements: SqlStatement[] = [];
  private tokens: SqlToken[] = [];
  private start = -1;
  private startLine = 1;

  constructor(
    private readonly src: string,
    private readonly dialect: DialectName,
  ) {}

  split(): SqlStatement[] {
    while (this.pos < this.src.length) {
      if (this.atLineStart() && this.directiveLine()) continue;
      const c = this.src[this.pos]!;
      if (c === '\n') {
        this.line++;
        this.pos++;
      } else if (/\s/.test(c)) {
        this.pos++;
      } else if (this.comment()) {
        // skipped
      } else if (this.dialect !== 'mssql' && this.src.startsWith(this.delimiter, this.pos) && this.endsStatement()) {
        this.pos += this.delimiter.length;
        this.flush(this.pos - this.delimiter.length);
      } else {
        this.token();
      }
    }
    this.flush(this.src.length);
    return this.statements;
  }

  /** Only whitespace since the last newline. */
  private atLineStart(): boolean {
    for (let i = this.pos - 1; i >= 0; i--) {
      const c = this.src[i]!;
      if (c === '\n') return true;
      if (c !== ' ' && c !== '\t' && c !== '\r') return false;
    }
    return true;
  }

  /** SQL Server's `GO` and MySQL's `DELIMITER x` are client commands on a line of their own. */
  private directiveLine(): boolean {
    const end = this.src.indexOf('\n', this.pos);
    const lineText = this.src.slice(this.pos, end === -1 ? this.src.length : end);
    if (this.dialect === 'mssql') {
      const go = /^[ \t]*go(?:[ \t]+(\S+))?[ \t]*(?:--.*)?\r?$/i.exec(lineText);
      if (!go) return false;
      if (go[1] !== undefined)
        throw new SqlScriptError(`"GO ${go[1]}": a GO with a repeat count is not supported`, this.line);
      this.flush(this.pos);
      this.pos += lineText.length;
      return true;
    }
    if (this.dialect === 'mysql') {
      const m = /^[ \t]*delimiter[ \t]+(\S+)[ \t]*\r?$/i.exec(lineText);
      if (!m) return false;
      this.flush(this.pos);
      this.delimiter = m[1]!;
      this.pos += lineText.length;
      return true;
    }
    return false;
  }

  /**
   * Whether a `;` here ends the statement. In SQLite a trigger body holds `;`-terminated statements
   * between BEGIN and END, so within `CREATE TRIGGER` only the `;` after END does.
   */
  private endsStatement(): boolean {
    if (this.dialect !== 'sqlite' || this.delimiter !== ';') return true;
    const words = this.tokens.slice(0, 4).map((t) => (t.kind === 'word' ? t.value.toUpperCase() : ''));
    const isTrigger = words[0] === 'CREATE' && words.slice(1, 4).includes('TRIGGER');
    if (!isTrigger) return true;
    // BEGIN ... END of the body, with CASE ... END inside it.
    let depth = 0;
    let body = false;
    for (const t of this.tokens) {
      if (t.kind !== 'word') continue;
      const w = t.value.toUpperCase();
      if (w === 'BEGIN' || w === 'CASE') {
        depth++;
        body ||= w === 'BEGIN';
      } else if (w === 'END') depth--;
    }
    return body && depth <= 0;
  }

  private flush(end: number): void {
    if (this.start >= 0 && this.tokens.length) {
      this.statements.push({ text: this.src.slice(this.start, end).trim(), line: this.startLine, tokens: this.tokens });
    }
    this.tokens = [];
    this.start = -1;
  }

  private push(kind: SqlTokenKind, value: string, from: number, line: number): void {
    if (this.start < 0) {
      this.start = from;
      this.startLine = line;
    }
    this.tokens.push({ kind, value, line });
  }

  private comment(): boolean {
    const s = this.src;
    const p = this.pos;
    if (s.startsWith('--', p) || (this.dialect === 'mysql' && s[p] === '#')) {
      const end = s.indexOf('\n', p);
      this.pos = end === -1 ? s.length : end;
      return true;
    }
    if (!s.startsWith('/*', p)) return false;
    // PostgreSQL nests block comments; the others end at the first */.
    const nests = this.dialect === 'postgres';
    const line = this.line;
    let depth = 0;
    let i = p;
    while (i < s.length) {
      if (s.startsWith('/*', i) && (nests || depth === 0)) {
        depth++;
        i += 2;
      } else if (s.startsWith('*/', i)) {
        depth--;
        i += 2;
        if (depth === 0) break;
      } else {
        if (s[i] === '\n') this.line++;
        i++;
      }
    }
    if (depth !== 0) throw new SqlScriptError('unterminated /* comment', line);
    this.pos = i;
    return true;
  }

  private token(): void {
    const s = this.src;
    const p = this.pos;
    const c = s[p]!;
    const line = this.line;
    const wordStart = this.dialect === 'mssql' ? MSSQL_WORD_START : WORD_START;
    const wordPart = this.dialect === 'mssql' ? MSSQL_WORD_PART : WORD_PART;
    // A one-letter prefix glued to a quote makes a string: N'..' (national), E'..' (escapes), X'..', B'..'.
    if (/[NnEeXxBb]/.test(c) && s[p + 1] === "'") {
      const backslashes = this.dialect === 'mysql' || c === 'E' || c === 'e';
      this.push('string', this.quoted(p + 1, "'", backslashes), p, line);
      return;
    }
    if (c === "'") {
      this.push('string', this.quoted(p, "'", this.dialect === 'mysql'), p, line);
    } else if (c === '"') {
      // MySQL reads "..." as a string unless ANSI_QUOTES; either way it is one token.
      this.push(
        this.dialect === 'mysql' ? 'string' : 'identifier',
        this.quoted(p, '"', this.dialect === 'mysql'),
        p,
        line,
      );
    } else if (c === '`' && (this.dialect === 'mysql' || this.dialect === 'sqlite')) {
      this.push('identifier', this.quoted(p, '`', false), p, line);
    } else if (c === '[' && (this.dialect === 'mssql' || this.dialect === 'sqlite')) {
      this.push('identifier', this.quoted(p, ']', false, '['), p, line);
    } else if (c === '$' && this.dialect === 'postgres' && this.dollarQuoted()) {
      this.push('string', this.dollarBody!, p, line);
    } else if (wordStart.test(c)) {
      let i = p + 1;
      while (i < s.length && wordPart.test(s[i]!)) i++;
      this.pos = i;
      this.push('word', s.slice(p, i), p, line);
    } else if (/[0-9]/.test(c) || (c === '.' && /[0-9]/.test(s[p + 1] ?? ''))) {
      let i = p + 1;
      while (i < s.length && /[0-9.eE]/.test(s[i]!)) i++;
      this.pos = i;
      this.push('number', s.slice(p, i), p, line);
    } else {
      this.pos = p + 1;
      this.push('symbol', c, p, line);
    }
  }

  /** Reads a quoted token starting at `from` (the opening quote); a doubled closing quote is one. */
  private quoted(from: number, close: string, backslashEscapes: boolean, open = close): string {
    const s = this.src;
    const line = this.line;
    let out = '';
    let i = from + open.length;
    for (;;) {
      if (i >= s.length) throw new SqlScriptError(`unterminated ${open}${close === open ? '' : close} quote`, line);
      const ch = s[i]!;
      if (backslashEscapes && ch === '\\' && i + 1 < s.length) {
        out += s[i + 1];
        i += 2;
        continue;
      }
      if (ch === close) {
        if (s[i + 1] === close) {
          out += close;
          i += 2;
          continue;
        }
        this.pos = i + 1;
        return out;
      }
      if (ch === '\n') this.line++;
      out += ch;
      i++;
    }
  }

  private dollarBody: string | undefined;

  /** PostgreSQL `$tag$ ... $tag$` (tag may be empty); `$1` is a parameter, not a quote. */
  private dollarQuoted(): boolean {
    const m = /^\$([A-Za-z_][A-Za-z0-9_]*)?\$/.exec(this.src.slice(this.pos, this.pos + 64));
    if (!m) return false;
    const tag = m[0];
    const bodyStart = this.pos + tag.length;
    const end = this.src.indexOf(tag, bodyStart);
    if (end === -1) throw new SqlScriptError(`unterminated ${tag} quote`, this.line);
    this.dollarBody = this.src.slice(bodyStart, end);
    for (const ch of this.dollarBody) if (ch === '\n') this.line++;
    this.pos = end + tag.length;
    return true;
  }
}
