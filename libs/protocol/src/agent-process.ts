import { readFileSync } from 'node:fs';
import type { Server } from 'node:http';
import type { Logger } from './logger';
import { ConfigError, errorInfo } from './errors';
import { startHttpServer, type MetricsSource, type RouteHandler } from './http-server';

/**
 * Where an agent is in its life: `STARTING` until its database and broker are set up, `RUNNING`,
 * `STOPPING` while it lets its work finish on close, then `STOPPED`; `FAILED` when it could not
 * start (it is closed again). `/healthz` reports it.
 */
export type AgentState = 'STARTING' | 'RUNNING' | 'STOPPING' | 'STOPPED' | 'FAILED';

/** What the process wrapper needs of an agent (both agents satisfy it). */
export interface ServableAgent {
  readonly state: AgentState;
  readonly metrics: { registry: MetricsSource };
  readonly database: { ping(): Promise<boolean> } | undefined;
  /** `refused` settles when the broker turned the agent's user away for good (see BrokerConnection). */
  readonly brokerConnection: { connected: boolean; readonly refused?: Promise<Error> } | undefined;
  close(): Promise<void>;
}

/** A started agent's HTTP endpoint and signal handling. Only `main.ts` files use this. */
export interface AgentProcess {
  server: Server | undefined;
  /** Closes the HTTP server (the agent is closed by its owner). */
  closeServer(): void;
  /**
   * Pending while the agent runs (a signal ends the process). Once the broker refused the agent's
   * user for good: reports it, closes the server and the agent, and resolves with the exit code.
   */
  untilFailed(program: string): Promise<number>;
}

/** Exit code of a process that stops on `err`: 2 for configuration (a refused broker user is one), else 1. */
export function exitCodeFor(err: unknown): number {
  return err instanceof ConfigError ? 2 : 1;
}

/** Logs why the agent stops and says it on stderr, as `program: message`; returns the exit code. */
export function reportFailure(program: string, log: Logger, err: unknown, what: string): number {
  log.error({ err: errorInfo(err) }, what);
  process.stderr.write(`${program}: ${err instanceof Error ? err.message : String(err)}\n`);
  return exitCodeFor(err);
}

/**
 * Serves `/metrics` and `/healthz` (unhealthy when the database or the broker is lost) on
 * `httpPort` when > 0, and closes the agent on SIGTERM/SIGINT within `graceMs`.
 */
export async function serveAgentProcess(
  agent: ServableAgent,
  opts: { httpPort: number; log: Logger; graceMs?: number; routes?: RouteHandler },
): Promise<AgentProcess> {
  const server =
    opts.httpPort > 0
      ? await startHttpServer(
          opts.httpPort,
          agent.metrics.registry,
          async () => {
            const db = (await agent.database?.ping()) ?? false;
            const broker = agent.brokerConnection?.connected ?? false;
            return { ok: db && broker, detail: { db, broker, state: agent.state } };
          },
          opts.routes,
        )
      : undefined;
  const stop = async (signal: string) => {
    opts.log.info({ signal }, 'stopping: finishing open work');
    const timer = setTimeout(() => process.exit(1), opts.graceMs ?? 60_000);
    timer.unref();
    server?.close();
    await agent.close();
    process.exit(0);
  };
  process.once('SIGTERM', () => void stop('SIGTERM'));
  process.once('SIGINT', () => void stop('SIGINT'));
  // Nothing is left to run although nobody stopped the agent: that is a failure, never exit code 0.
  process.once('beforeExit', () => {
    if (agent.state === 'STOPPED' || process.exitCode) return;
    opts.log.error({ state: agent.state }, 'the agent has nothing left to run but was not stopped: exiting with 1');
    process.exitCode = 1;
  });
  const closeServer = () => server?.close();
  return {
    server,
    closeServer,
    untilFailed: async (program) => {
      const refused = agent.brokerConnection?.refused;
      if (!refused) return new Promise<number>(() => undefined);
      const err = await refused;
      const code = reportFailure(program, opts.log, err, 'stopping: the broker refused this agent');
      closeServer();
      await agent.close();
      return code;
    },
  };
}

/** TLS socket options for amqps:// from PEM file paths. */
export function tlsSocketOptions(files: {
  caFile?: string;
  certFile?: string;
  keyFile?: string;
}): Record<string, unknown> {
  return {
    ...(files.caFile ? { ca: [readFileSync(files.caFile)] } : {}),
    ...(files.certFile ? { cert: readFileSync(files.certFile) } : {}),
    ...(files.keyFile ? { key: readFileSync(files.keyFile) } : {}),
  };
}
