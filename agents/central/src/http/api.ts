import { timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { RouteHandler } from '@sitesync/protocol';
import { TransferRefusedError, type CentralInterventions } from '../interventions/central-interventions';

const MAX_BODY_BYTES = 64 * 1024;

function send(res: ServerResponse, status: number, body: unknown): true {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
  return true;
}

async function readJson(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of req) {
    size += (c as Buffer).length;
    if (size > MAX_BODY_BYTES) throw new Error('request body too large');
    chunks.push(c as Buffer);
  }
  return JSON.parse(Buffer.concat(chunks).toString('utf8'));
}

function authorized(req: IncomingMessage, token: string): boolean {
  const given = Buffer.from((req.headers.authorization ?? '').replace(/^Bearer\s+/i, ''));
  const want = Buffer.from(token);
  return given.length === want.length && timingSafeEqual(given, want);
}

/**
 * The central's HTTP API: `POST /api/transfers {guid, to}` asks to move an intervention (the same as
 * `syncctl transfer`), `GET /api/transfers?guid=&site=&state=` reads the log. Requests carry
 * `Authorization: Bearer <apiToken>`; without a configured token the API is off.
 */
export function centralApi(
  service: () => CentralInterventions | undefined,
  apiToken: string | undefined,
): RouteHandler {
  return async (req, res) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    if (!url.pathname.startsWith('/api/')) return false;
    if (!apiToken)
      return send(res, 404, { error: 'the API is off: set apiToken (SYNC_API_TOKEN or SYNC_API_TOKEN_FILE)' });
    if (!authorized(req, apiToken)) return send(res, 401, { error: 'missing or wrong bearer token' });
    const svc = service();
    if (!svc) return send(res, 503, { error: 'the central agent is not running' });
    if (url.pathname === '/api/transfers' && req.method === 'POST') {
      let body: { guid?: unknown; to?: unknown };
      try {
        body = (await readJson(req)) as { guid?: unknown; to?: unknown };
      } catch (err) {
        return send(res, 400, { error: `body must be JSON {"guid", "to"}: ${(err as Error).message}` });
      }
      if (typeof body.guid !== 'string' || typeof body.to !== 'number' || !Number.isInteger(body.to)) {
        return send(res, 400, { error: 'body must be {"guid": "<uuid>", "to": <site id>}' });
      }
      try {
        const transferId = await svc.requestTransferOut(body.guid, body.to, 'api');
        return send(res, 202, { transferId });
      } catch (err) {
        if (err instanceof TransferRefusedError) return send(res, 409, { error: err.message });
        throw err;
      }
    }
    if (url.pathname === '/api/transfers' && req.method === 'GET') {
      const site = url.searchParams.get('site');
      const rows = await svc.listTransfers({
        ...(url.searchParams.get('guid') ? { guid: url.searchParams.get('guid')! } : {}),
        ...(site && /^\d+$/.test(site) ? { site: Number(site) } : {}),
        ...(url.searchParams.get('state') ? { state: url.searchParams.get('state')! } : {}),
      });
      return send(res, 200, rows);
    }
    return send(res, 404, { error: 'no such endpoint' });
  };
}
