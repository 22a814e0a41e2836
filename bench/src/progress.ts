/**
 * One progress line on stderr: redrawn in place on a terminal, printed at most every few seconds
 * (and at each new phase) when stderr is a file or a pipe.
 */
export class Progress {
  private readonly started = Date.now();
  private label = '';
  private lastPrint = 0;
  private lastLine = '';
  private readonly tty = process.stderr.isTTY === true;

  /** Starts a new phase (printed as its own line). */
  phase(label: string): void {
    this.finishLine();
    this.label = label;
    this.write(this.render(), true);
  }

  /** Reports progress of the current phase. */
  update(done: number, total: number, unit = 'rows'): void {
    const frac = total > 0 ? Math.min(1, done / total) : 0;
    const width = 24;
    const full = Math.round(frac * width);
    const bar = `${'#'.repeat(full)}${'.'.repeat(width - full)}`;
    this.write(
      `${this.render()} [${bar}] ${(frac * 100).toFixed(0).padStart(3)}% ${fmt(done)}/${fmt(total)} ${unit}`,
      false,
    );
  }

  /** A free-text status within the phase. */
  note(text: string): void {
    this.write(`${this.render()} ${text}`, false);
  }

  /** A result line that stays on screen. */
  result(text: string): void {
    this.finishLine();
    process.stderr.write(`${this.clock()}   ${text}\n`);
  }

  done(): void {
    this.finishLine();
  }

  private clock(): string {
    const s = Math.floor((Date.now() - this.started) / 1000);
    return `[bench ${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}]`;
  }

  private render(): string {
    return `${this.clock()} ${this.label}`;
  }

  private write(line: string, force: boolean): void {
    const now = Date.now();
    if (this.tty) {
      const cols = process.stderr.columns || 120;
      const text = line.length >= cols ? line.slice(0, cols - 1) : line;
      process.stderr.write(`\r${text}\x1b[K`);
      this.lastLine = text;
      return;
    }
    if (!force && now - this.lastPrint < 5000) return;
    this.lastPrint = now;
    process.stderr.write(`${line}\n`);
  }

  private finishLine(): void {
    if (this.tty && this.lastLine) process.stderr.write('\n');
    this.lastLine = '';
  }
}

function fmt(n: number): string {
  return Math.round(n).toLocaleString('en-US');
}
