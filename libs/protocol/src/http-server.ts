import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';

/** Extra routes: returns true when it answered the request. */
export type RouteHandler = (req: IncomingMessage, res: ServerResponse) => Promise<boolean>;
/** What `/metrics` needs of a prom-client Registry. */
export interface MetricsSource {
  contentType: string;
  metrics(): Promise<string>;
}

/** `/metrics` (Prometheus) and `/healthz` (200 when `healthy()` says so, else 503). */
export function startHttpServer(
  port: number,
  registry: MetricsSource,
  healthy: () => Promise<{ ok: boolean; detail: object }>,
  routes?: RouteHandler,
): Promise<Server> {
  const server = createServer((req, res) => {
    void (async () => {
      try {
        if (req.url === '/metrics') {
          res.writeHead(200, { 'content-type': registry.contentType });
          res.end(await registry.metrics());
        } else if (req.url === '/healthz') {
          const h = await healthy();
          res.writeHead(h.ok ? 200 : 503, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ ok: h.ok, ...h.detail }));
        } else if (!(routes && (await routes(req, res)))) {
          res.writeHead(404).end();
        }
      } catch (err) {
        res.writeHead(500).end(String(err));
      }
    })();
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, () => resolve(server));
  });
}
