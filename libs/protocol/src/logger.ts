import pino, { type Logger } from 'pino';

export type { Logger };

/** pino JSON lines; pretty when stdout is a terminal (or SITESYNC_PRETTY_LOGS=1). */
export function createLogger(name: string, level = 'info', pretty = process.stdout.isTTY): Logger {
  return pino({
    name,
    level,
    ...(pretty
      ? { transport: { target: 'pino-pretty', options: { colorize: true, translateTime: 'SYS:HH:MM:ss.l' } } }
      : {}),
  });
}
