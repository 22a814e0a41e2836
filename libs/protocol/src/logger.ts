import pino, { type Logger } from 'pino';

export type { Logger };

/** pino JSON lines; pretty when `pretty` (by default: when stdout is a terminal). */
export function createLogger(name: string, level = 'info', pretty = process.stdout.isTTY): Logger {
  return pino({
    name,
    level,
    ...(pretty
      ? { transport: { target: 'pino-pretty', options: { colorize: true, translateTime: 'SYS:HH:MM:ss.l' } } }
      : {}),
  });
}
