import { type Command, InvalidArgumentError } from 'commander';
import { hashPassword } from '@sitesync/central';

/** Registers the `users` command group (hash-password): users of the supervision page and HTTP API. */
export function registerUsersCommands(program: Command): void {
  const users = program.command('users').description('users of the supervision page and HTTP API');
  users
    .command('hash-password')
    .description('read a password from stdin and print its scrypt hash, for "passwordHash" in the "users" config')
    .action(async () => {
      const password = await readPassword();
      if (password.length < 8) throw new InvalidArgumentError('use a password of at least 8 characters');
      process.stdout.write(`${await hashPassword(password)}\n`);
    });
}

/** The password from stdin: typed without echo on a terminal, or piped (one trailing newline dropped). */
async function readPassword(): Promise<string> {
  const stdin = process.stdin;
  if (!stdin.isTTY) {
    const chunks: Buffer[] = [];
    for await (const c of stdin) chunks.push(c as Buffer);
    return Buffer.concat(chunks)
      .toString('utf8')
      .replace(/\r?\n$/, '');
  }
  process.stderr.write('password: ');
  stdin.setRawMode(true);
  stdin.setEncoding('utf8');
  try {
    return await new Promise<string>((resolve, reject) => {
      let typed = '';
      const onData = (s: string) => {
        for (const ch of s) {
          if (ch === '\r' || ch === '\n') {
            stdin.off('data', onData);
            process.stderr.write('\n');
            resolve(typed);
            return;
          }
          if (ch === '\u0003') {
            stdin.off('data', onData);
            reject(new Error('cancelled'));
            return;
          }
          typed = ch === '\u007f' || ch === '\b' ? typed.slice(0, -1) : typed + ch;
        }
      };
      stdin.on('data', onData);
    });
  } finally {
    stdin.setRawMode(false);
    stdin.pause();
  }
}
