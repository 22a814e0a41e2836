import { describe, expect, it } from 'vitest';
import { createSyncctlProgram } from '@sitesync/syncctl';
import { runBin, syncctl } from '../../support/wait.js';

/**
 * `--help` is the reference operators read first: every command says what it does, an option the
 * command cannot run without says so, and no option claims a default it does not have.
 */

/** syncctl's own commander (tools/syncctl may hold another major version than the test workspace). */
type Command = ReturnType<typeof createSyncctlProgram>;

/** A command and every command below it, with its path from the program (`sites list`). */
function walk(cmd: Command, path: string[] = []): Array<{ path: string; cmd: Command }> {
  return [{ path: path.join(' ') || cmd.name(), cmd }, ...cmd.commands.flatMap((c) => walk(c, [...path, c.name()]))];
}

/** Help text with its line wrapping undone. */
const flat = (text: string) => text.replace(/\s+/g, ' ');

describe('syncctl --help', () => {
  const commands = walk(createSyncctlProgram({}));

  it('walks every command group', () => {
    const paths = commands.map((c) => c.path);
    for (const p of [
      'sites list',
      'sites disable',
      'sites enable',
      'sites remove',
      'transfer',
      'transfer-cancel',
      'transfers',
      'dlq replay',
      'bundle export',
    ])
      expect(paths).toContain(p);
  });

  it.each(commands.map((c) => [c.path, c.cmd] as const))('%s: has a description', (_path, cmd) => {
    expect(cmd.description().trim()).not.toBe('');
  });

  it.each(commands.map((c) => [c.path, c.cmd] as const))(
    '%s: marks required options, and only those; claims no empty default',
    (_path, cmd) => {
      const help = cmd.createHelp();
      for (const o of cmd.options)
        expect(help.optionDescription(o).includes('(required)'), `${o.flags}: ${help.optionDescription(o)}`).toBe(
          o.mandatory,
        );
      expect(flat(cmd.helpInformation())).not.toContain('(default: "")');
    },
  );

  it('the bin prints the marks: syncctl transfer --help', async () => {
    const r = await syncctl(['transfer', '--help']);
    expect(r.code).toBe(0);
    expect(flat(r.stdout)).toMatch(/--to <site> destination site id \(required\)/);
  });

  it('the bin prints the marks: syncctl procedures publish --help, with no default for --name', async () => {
    const r = await syncctl(['procedures', 'publish', '--help']);
    expect(r.code).toBe(0);
    const out = flat(r.stdout);
    expect(out).toMatch(/--definition-file <file> .*\(required\)/);
    expect(out).toMatch(/--name <name> [^(]*\(default: the code\)/);
  });
});

/** The command names a help text lists under "Commands:" (not `help`). */
function listedCommands(help: string): string[] {
  const section = help.split(/^Commands:$/m)[1] ?? '';
  return [...section.matchAll(/^ {2}(\S+)/gm)].map((m) => m[1]!).filter((n) => n !== 'help');
}

/** The description a command's own help prints between its usage line and its first section. */
function ownDescription(help: string): string {
  return (/^Usage: [^\n]*\n\n([\s\S]*?)(?:\n\n|$)/.exec(help)?.[1] ?? '').replace(/^[A-Z][a-z]+:$[\s\S]*/m, '');
}

describe.each([
  ['sync-central', 'agents/central/bin/sync-central.js'],
  ['sync-peripheral', 'agents/peripheral/bin/sync-peripheral.js'],
])('%s --help', (_name, bin) => {
  it('every command has a description; no option claims an empty default', async () => {
    const top = await runBin(bin, ['--help']);
    expect(top.code).toBe(0);
    expect(ownDescription(top.stdout).trim()).not.toBe('');
    const names = listedCommands(top.stdout);
    expect(names).toContain('run');
    for (const name of names) {
      const r = await runBin(bin, [name, '--help']);
      expect(r.code, name).toBe(0);
      expect(ownDescription(r.stdout).trim(), `${name}: ${r.stdout}`).not.toBe('');
      expect(listedCommands(r.stdout), `${name} has no subcommands to walk`).toEqual([]);
      expect(flat(r.stdout), name).not.toContain('(default: "")');
    }
  });
});
