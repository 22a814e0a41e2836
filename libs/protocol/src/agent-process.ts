import { readFileSync } from 'node:fs';
import type { Server } from 'node:http';
import type { Logger } from './logger';
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
  readonly brokerConnection: { connected: boolean } | undefined;
  close(): Promise<void>;
}

/** A started agent's HTTP endpoint and signal handling. Only `main.ts` files use this. */
export interface AgentProcess {
  server: Server | undefined;
  /** Closes the HTTP server (the agent is closed by its owner). */
  closeServer(): void;
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
  return { server, closeServer: () => server?.close() };
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
