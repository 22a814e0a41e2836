import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Database } from '@sitesync/db';
import { errorInfo, type BrokerConnection, type Logger, type RouteHandler } from '@sitesync/protocol';
import type { CentralInterventions } from '../interventions/central-interventions';
import { transfersEndpoint } from './api';
import { HttpAuthenticator, hasRole, type Caller, type Role } from './auth';
import { TooManyLoginsError, clientAddress } from './login-throttle';
import { FAVICON_SVG, PAGE_CSS, PAGE_HTML, PAGE_JS } from './page';
import { groupDeadLetters } from './dead-letter-groups';
import { HttpRequestError, checkSameOriginJson, readJson, sendJson } from './respond';
import { readSessionOverview } from './session-overview';
import { DEFAULT_ACTIVITY_HOURS, readSiteActivity } from './site-activity';
import {
  DeadLetterBoard,
  managementApiFor,
  recentSessions,
  summarize,
  supervisedSiteStatus,
  type SupervisedCentral,
} from './supervision-data';

export type { SupervisedCentral } from './supervision-data';

/** Answered with 401 so that browsers ask for a user name and password. */
export const AUTH_CHALLENGE = 'Basic realm="sitesync", charset="UTF-8"';
const DEFAULT_SESSIONS = 20;
const MAX_SESSIONS = 200;
const MAX_MESSAGE_ID_CHARS = 200;
const MAX_REASON_CHARS = 200;
const MAX_ACTIVITY_HOURS = 24 * 7;

const CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "connect-src 'self'",
  "img-src 'self'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ');

const ASSETS: Readonly<Record<string, { type: string; body: string }>> = {
  '/': { type: 'text/html; charset=utf-8', body: PAGE_HTML },
  '/supervision.js': { type: 'text/javascript; charset=utf-8', body: PAGE_JS },
  '/supervision.css': { type: 'text/css; charset=utf-8', body: PAGE_CSS },
  '/favicon.svg': { type: 'image/svg+xml', body: FAVICON_SVG },
};

/** A running central: what an endpoint may use. */
interface Running {
  db: Database;
  broker: BrokerConnection;
  interventions: CentralInterventions;
}

interface Endpoint {
  method: 'GET' | 'POST';
  path: string;
  role: Role;
  handle(req: IncomingMessage, res: ServerResponse, url: URL, caller: Caller, run: Running): Promise<true>;
}

export interface SupervisionOptions {
  /** Operator actions (replays, transfers) and server errors are logged; never credentials or bodies. */
  log?: Logger;
}

/**
 * The central's web surface behind authentication: the supervision page (`GET /`) and the JSON
 * API under `/api/` (see docs/supervision.md). Users come from `config.users` (HTTP Basic), and
 * `config.apiToken` is accepted as an operator bearer token; with neither, page and API are off.
 * Failed logins are throttled per user name and client address (`config.loginThrottle`): 429.
 */
export function supervisionRoutes(central: SupervisedCentral, opts: SupervisionOptions = {}): RouteHandler {
  const { trustedProxies, ...loginThrottle } = central.config.loginThrottle;
  const auth = new HttpAuthenticator(central.config.users, central.config.apiToken, { loginThrottle, log: opts.log });
  const board = new DeadLetterBoard(central);
  const management = managementApiFor(central.config);
  const log = opts.log;

  const endpoints: Endpoint[] = [
    {
      method: 'GET',
      path: '/api/me',
      role: 'viewer',
      handle: async (_req, res, _url, caller) => sendJson(res, 200, { name: caller.name, role: caller.role }),
    },
    {
      method: 'GET',
      path: '/api/status',
      role: 'viewer',
      handle: async (_req, res, _url, _caller, run) => {
        const letters = await board.list(run.broker, run.db).catch(() => undefined);
        const status = await supervisedSiteStatus(central, run.db, management, letters?.letters);
        return sendJson(res, 200, { generatedAt: new Date().toISOString(), ...status });
      },
    },
    {
      method: 'GET',
      path: '/api/sessions',
      role: 'viewer',
      handle: async (_req, res, url, _caller, run) =>
        sendJson(res, 200, await recentSessions(run.db, sessionLimit(url))),
    },
    {
      method: 'GET',
      path: '/api/sessions/overview',
      role: 'viewer',
      handle: async (_req, res, url, _caller, run) =>
        sendJson(res, 200, await readSessionOverview(run.db, sessionLimit(url))),
    },
    {
      method: 'GET',
      path: '/api/activity',
      role: 'viewer',
      handle: async (_req, res, url, _caller, run) => {
        const asked = Number(url.searchParams.get('hours') ?? DEFAULT_ACTIVITY_HOURS);
        const hours =
          Number.isInteger(asked) && asked > 0 ? Math.min(asked, MAX_ACTIVITY_HOURS) : DEFAULT_ACTIVITY_HOURS;
        return sendJson(res, 200, { sites: await readSiteActivity(run.db, { hours }) });
      },
    },
    {
      method: 'GET',
      path: '/api/dead-letters/groups',
      role: 'viewer',
      handle: async (_req, res, _url, _caller, run) => {
        const { letters, failed } = await board.list(run.broker, run.db);
        return sendJson(res, 200, { groups: groupDeadLetters(letters), failed });
      },
    },
    {
      method: 'POST',
      path: '/api/dead-letters/replay-group',
      role: 'operator',
      handle: async (req, res, _url, caller, run) => {
        const body = (await readJson(req)) as { site?: unknown; reason?: unknown } | null;
        const { site, reason } = body ?? {};
        if (
          typeof site !== 'number' ||
          !Number.isInteger(site) ||
          typeof reason !== 'string' ||
          reason.length === 0 ||
          reason.length > MAX_REASON_CHARS
        ) {
          throw new HttpRequestError(400, 'body must be {"site": <site id>, "reason": "<reason of the group>"}');
        }
        const r = await board.replay(run.broker, run.db, { listedSiteId: site, reason });
        log?.info(
          { user: caller.name, site, reason, replayed: r.replayed.length, refused: r.refused.length },
          'dead letter group replay requested over HTTP',
        );
        if (r.replayed.length === 0 && r.refused.length === 0) {
          throw new HttpRequestError(404, `no dead letters of site ${site} with reason ${reason} (already replayed?)`);
        }
        return sendJson(res, 200, {
          replayed: r.replayed.map(summarize),
          refused: r.refused.map((x) => ({ ...summarize(x.letter), why: x.why })),
        });
      },
    },
    {
      method: 'GET',
      path: '/api/dead-letters',
      role: 'viewer',
      handle: async (_req, res, _url, _caller, run) => {
        const { letters, failed } = await board.list(run.broker, run.db);
        return sendJson(res, 200, { deadLetters: letters.map(summarize), failed });
      },
    },
    {
      method: 'POST',
      path: '/api/dead-letters/replay',
      role: 'operator',
      handle: async (req, res, _url, caller, run) => {
        const body = (await readJson(req)) as { messageId?: unknown } | null;
        const id = body?.messageId;
        if (typeof id !== 'string' || id.length === 0 || id.length > MAX_MESSAGE_ID_CHARS) {
          throw new HttpRequestError(400, 'body must be {"messageId": "<message id of a dead letter>"}');
        }
        const r = await board.replay(run.broker, run.db, { messageId: id });
        log?.info(
          { user: caller.name, messageId: id, replayed: r.replayed.length, refused: r.refused.length },
          'dead letter replay requested over HTTP',
        );
        if (r.replayed.length === 0 && r.refused.length === 0) {
          throw new HttpRequestError(404, `no dead letter with message id ${id} (already replayed or purged?)`);
        }
        return sendJson(res, 200, {
          replayed: r.replayed.map(summarize),
          refused: r.refused.map((x) => ({ ...summarize(x.letter), why: x.why })),
        });
      },
    },
    {
      method: 'GET',
      path: '/api/transfers',
      role: 'viewer',
      handle: (req, res, url, caller, run) => transfersEndpoint(req, res, url, run.interventions, caller),
    },
    {
      method: 'POST',
      path: '/api/transfers',
      role: 'operator',
      handle: async (req, res, url, caller, run) => {
        try {
          const done = await transfersEndpoint(req, res, url, run.interventions, caller);
          log?.info({ user: caller.name }, 'intervention transfer requested over HTTP');
          return done;
        } catch (err) {
          if (err instanceof HttpRequestError) log?.info({ user: caller.name, status: err.status }, 'transfer refused');
          throw err;
        }
      },
    },
  ];

  return async (req, res) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const asset = ASSETS[url.pathname];
    if (!asset && !url.pathname.startsWith('/api/')) return false;
    if (!auth.enabled) {
      const why = 'the supervision page and HTTP API are off: configure users (see docs/supervision.md) or apiToken';
      return asset ? sendText(res, 404, why) : sendJson(res, 404, { error: why });
    }
    try {
      const address = clientAddress(req.socket.remoteAddress, req.headers['x-forwarded-for'], trustedProxies);
      const caller = await auth.authenticate(req.headers.authorization, address);
      if (!caller) {
        const why = 'authentication required: a user name and password (HTTP Basic) or the API bearer token';
        const headers = { 'www-authenticate': AUTH_CHALLENGE };
        return asset ? sendText(res, 401, why, headers) : sendJson(res, 401, { error: why }, headers);
      }
      if (asset) return sendAsset(res, asset);
      const matching = endpoints.filter((e) => e.path === url.pathname);
      const endpoint = matching.find((e) => e.method === req.method);
      if (!endpoint) {
        if (matching.length === 0) return sendJson(res, 404, { error: `no endpoint ${url.pathname}` });
        const allow = matching.map((e) => e.method).join(', ');
        return sendJson(res, 405, { error: `use ${allow}` }, { allow });
      }
      if (!hasRole(caller, endpoint.role)) {
        return sendJson(res, 403, {
          error: `${caller.name} is a ${caller.role}; this needs the ${endpoint.role} role`,
        });
      }
      if (endpoint.method === 'POST') checkSameOriginJson(req);
      const db = central.database;
      const broker = central.brokerConnection;
      const interventions = central.interventionService;
      if (!db || !broker || !interventions) return sendJson(res, 503, { error: 'the central agent is not running' });
      return await endpoint.handle(req, res, url, caller, { db, broker, interventions });
    } catch (err) {
      if (err instanceof TooManyLoginsError) {
        const headers = { 'retry-after': String(err.retryAfterSeconds) };
        if (asset) return sendText(res, 429, err.message, headers);
        return sendJson(res, 429, { error: err.message, retryAfterSeconds: err.retryAfterSeconds }, headers);
      }
      if (err instanceof HttpRequestError) return sendJson(res, err.status, { error: err.message });
      log?.error({ err: errorInfo(err), path: url.pathname }, 'HTTP request failed');
      // Internal detail (SQL, broker state) is for the log; the browser gets no more than this.
      return sendJson(res, 500, { error: 'internal error; see the central log' });
    }
  };
}

/** The `limit` a sessions request asked for, within bounds. */
function sessionLimit(url: URL): number {
  const asked = Number(url.searchParams.get('limit') ?? DEFAULT_SESSIONS);
  return Number.isInteger(asked) && asked > 0 ? Math.min(asked, MAX_SESSIONS) : DEFAULT_SESSIONS;
}

function sendText(res: ServerResponse, status: number, text: string, headers: Record<string, string> = {}): true {
  res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store', ...headers });
  res.end(`${text}\n`);
  return true;
}

function sendAsset(res: ServerResponse, asset: { type: string; body: string }): true {
  res.writeHead(200, {
    'content-type': asset.type,
    'content-security-policy': CSP,
    'x-content-type-options': 'nosniff',
    'x-frame-options': 'DENY',
    'referrer-policy': 'no-referrer',
    'cache-control': 'no-store',
  });
  res.end(asset.body);
  return true;
}
