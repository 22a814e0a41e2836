import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';

const MAX_BODY_BYTES = 64 * 1024;

/** A request the client must fix; `status` is the HTTP status to answer with. */
export class HttpRequestError extends Error {
  override name = 'HttpRequestError';
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/** Answers with a JSON body; API answers are never cached (they may change every second). */
export function sendJson(res: ServerResponse, status: number, body: unknown, headers: OutgoingHttpHeaders = {}): true {
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'cache-control': 'no-store',
    'x-content-type-options': 'nosniff',
    ...headers,
  });
  res.end(JSON.stringify(body));
  return true;
}

/** Reads a JSON request body (at most 64 KiB). */
export async function readJson(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of req) {
    size += (c as Buffer).length;
    if (size > MAX_BODY_BYTES) throw new HttpRequestError(413, 'request body too large');
    chunks.push(c as Buffer);
  }
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch (err) {
    throw new HttpRequestError(400, `the body is not JSON: ${(err as Error).message}`);
  }
}

/**
 * Refuses a state-changing request another web site could have made with the browser's stored
 * credentials: the body must be JSON (a cross-site form cannot send that without a CORS
 * preflight, which this server never grants) and an `Origin`, when sent, must be this host.
 */
export function checkSameOriginJson(req: IncomingMessage): void {
  const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
  if (type !== 'application/json') throw new HttpRequestError(415, 'send the body as application/json');
  const origin = req.headers.origin;
  if (origin === undefined) return;
  let host: string;
  try {
    host = new URL(origin).host;
  } catch {
    throw new HttpRequestError(403, 'cross-origin request refused');
  }
  if (host !== req.headers.host) throw new HttpRequestError(403, 'cross-origin request refused');
}
