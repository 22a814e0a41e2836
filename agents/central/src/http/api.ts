import type { IncomingMessage, ServerResponse } from 'node:http';
import { TransferRefusedError, type CentralInterventions } from '../interventions/central-interventions';
import type { Caller } from './auth';
import { HttpRequestError, readJson, sendJson } from './respond';

const MAX_TRANSFERS = 1000;

/**
 * `POST /api/transfers {guid, to}` asks to move an intervention (the same as `syncctl transfer`;
 * operators only), `GET /api/transfers?guid=&site=&state=&limit=` reads the transfer log (newest
 * `limit`, oldest first). The caller is already authenticated and authorized.
 */
export async function transfersEndpoint(
  req: IncomingMessage,
  res: ServerResponse,
  url: URL,
  svc: CentralInterventions,
  caller: Caller,
): Promise<true> {
  if (req.method === 'POST') {
    const body = (await readJson(req)) as { guid?: unknown; to?: unknown } | null;
    if (typeof body?.guid !== 'string' || typeof body.to !== 'number' || !Number.isInteger(body.to)) {
      throw new HttpRequestError(400, 'body must be {"guid": "<uuid>", "to": <site id>}');
    }
    try {
      // Recorded by user name; a bearer-token script is `api`.
      const transferId = await svc.requestTransferOut(body.guid, body.to, caller.name);
      return sendJson(res, 202, { transferId });
    } catch (err) {
      if (err instanceof TransferRefusedError) throw new HttpRequestError(409, err.message);
      throw err;
    }
  }
  const p = url.searchParams;
  const site = p.get('site');
  const limit = Number(p.get('limit') ?? MAX_TRANSFERS);
  const rows = await svc.listTransfers({
    ...(p.get('guid') ? { guid: p.get('guid')! } : {}),
    ...(site && /^\d+$/.test(site) ? { site: Number(site) } : {}),
    ...(p.get('state') ? { state: p.get('state')! } : {}),
    limit: Number.isInteger(limit) && limit > 0 ? Math.min(limit, MAX_TRANSFERS) : MAX_TRANSFERS,
  });
  return sendJson(res, 200, rows);
}
