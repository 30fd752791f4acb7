// The operator HTTP API under /api/, guarded by ADMIN_TOKEN (Authorization: Bearer). Bodies of
// POST requests are v1 message envelopes in JSON, decoded by the same codec as WebSocket frames.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { bearerMatches } from '../auth/secret.ts';
import { jsonCodec, CloseError } from '../protocol/codec.ts';
import { ProtocolError } from '../protocol/errors.ts';
import type { BrokerMessage } from '../protocol/frames.ts';
import type { Config } from '../config/load.ts';
import { ConfigError, componentConfig } from '../config/load.ts';
import type { Gateway } from '../gateway/gateway.ts';
import { PresenceUnavailable, SubjectRefused, ownerName } from '../gateway/gateway.ts';
import { ClusterUnavailable } from '../cluster/node-requests.ts';

function send(res: ServerResponse, status: number, body?: unknown, headers: Record<string, string> = {}): void {
  if (body === undefined) {
    res.writeHead(status, headers);
    res.end();
    return;
  }
  res.writeHead(status, { 'content-type': 'application/json', ...headers });
  res.end(JSON.stringify(body));
}

/** The one 401 answer of the HTTP endpoints (operator API and /metrics), byte for byte. */
export function unauthorized(res: ServerResponse): void {
  fail(res, 401, 'unauthorized', 'missing or wrong bearer token', { 'www-authenticate': 'Bearer realm="wsbridge"' });
}

function fail(res: ServerResponse, status: number, code: string, message: string, headers: Record<string, string> = {}): void {
  send(res, status, { error: { code, message } }, headers);
}

async function readBody(req: IncomingMessage, limit: number): Promise<Buffer | null> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > limit) return null;
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}

/** Reads and validates a v1 message envelope; answers the error itself and returns null. */
async function readEnvelope(req: IncomingMessage, res: ServerResponse, config: Config): Promise<BrokerMessage | null> {
  // base64 makes a body 4/3 larger; allow room for the envelope around it.
  const body = await readBody(req, Math.ceil(config.maxMessageBytes * 4 / 3) + 4096);
  if (body === null) {
    fail(res, 413, 'too_large', `body exceeds the limit for a ${config.maxMessageBytes}-byte message`);
    return null;
  }
  try {
    const frame = jsonCodec.decode(body, true);
    if (frame.op !== 'pub') {
      fail(res, 400, 'bad_frame', 'expected a message envelope {"subject","body"|"text","reply_to"}');
      return null;
    }
    return frame.msg;
  } catch (err) {
    if (err instanceof ProtocolError) fail(res, 400, err.code, err.message);
    else if (err instanceof CloseError) fail(res, 400, 'bad_json', err.message);
    else throw err;
    return null;
  }
}

export async function handleOperatorApi(gw: Gateway, config: Config, req: IncomingMessage, res: ServerResponse, path: string): Promise<void> {
  if (!config.adminToken) {
    fail(res, 404, 'api_disabled', 'the operator API is disabled: set ADMIN_TOKEN to enable it');
    return;
  }
  if (!bearerMatches(req.headers.authorization, config.adminToken)) {
    unauthorized(res);
    return;
  }
  const method = req.method ?? 'GET';
  let parts: string[]; // ['api', ...]
  try {
    parts = path.split('/').filter(Boolean).map(decodeURIComponent);
  } catch {
    return fail(res, 400, 'bad_request', 'the path is not valid percent-encoded UTF-8');
  }

  const sessionsRoute = parts[1] === 'sessions';
  if (sessionsRoute && !config.sessionTracking) {
    fail(res, 404, 'session_tracking_disabled', 'ENABLE_SESSION_TRACKING is false');
    return;
  }

  if (parts.length === 2 && sessionsRoute) {
    if (method !== 'GET') return fail(res, 405, 'method_not_allowed', 'use GET', { allow: 'GET' });
    return send(res, 200, await gw.listAllSessions());
  }
  if (parts.length === 2 && parts[1] === 'nodes') {
    if (method !== 'GET') return fail(res, 405, 'method_not_allowed', 'use GET', { allow: 'GET' });
    return send(res, 200, await gw.listNodes());
  }
  try {
    if (parts.length === 3 && sessionsRoute) {
      if (method !== 'DELETE') return fail(res, 405, 'method_not_allowed', 'use DELETE', { allow: 'DELETE' });
      if (!(await gw.closeAnySession(parts[2]!))) return fail(res, 404, 'session_not_found', 'no such session');
      return send(res, 204);
    }
    if (parts.length === 4 && sessionsRoute && parts[3] === 'messages') {
      if (method !== 'POST') return fail(res, 405, 'method_not_allowed', 'use POST', { allow: 'POST' });
      const msg = await readEnvelope(req, res, config);
      if (!msg) return;
      const r = await gw.sendToSession(parts[2]!, msg);
      if (r === 'not_found') return fail(res, 404, 'session_not_found', 'no such session');
      return send(res, 202, { delivered: r === 'delivered' ? 1 : 0 });
    }
  } catch (e) {
    if (e instanceof SubjectRefused) return fail(res, 400, e.code, e.message);
    // Not known: the session may exist on a node this one cannot reach right now.
    if (e instanceof ClusterUnavailable) return fail(res, 503, e.code, e.message);
    throw e;
  }
  if (parts.length === 3 && parts[1] === 'presence') {
    if (method !== 'GET') return fail(res, 405, 'method_not_allowed', 'use GET', { allow: 'GET' });
    try {
      return send(res, 200, await gw.presenceOf(parts[2]!));
    } catch (e) {
      if (e instanceof SubjectRefused) return fail(res, 400, e.code, e.message);
      if (e instanceof PresenceUnavailable) return fail(res, 404, 'presence_unavailable', e.message);
      return fail(res, 503, 'bus_unavailable', `presence could not be read: ${(e as Error).message}`);
    }
  }
  if (parts.length === 2 && parts[1] === 'stats') {
    if (method !== 'GET') return fail(res, 405, 'method_not_allowed', 'use GET', { allow: 'GET' });
    return send(res, 200, gw.statsSnapshot());
  }
  if (parts.length === 2 && (parts[1] === 'broadcast' || parts[1] === 'publish')) {
    if (method !== 'POST') return fail(res, 405, 'method_not_allowed', 'use POST', { allow: 'POST' });
    const msg = await readEnvelope(req, res, config);
    if (!msg) return;
    if (parts[1] === 'broadcast') {
      try {
        return send(res, 202, await gw.broadcastReach(msg));
      } catch (e) {
        if (e instanceof SubjectRefused) return fail(res, 400, e.code, e.message);
        throw e;
      }
    }
    const r = await gw.publishAcked(msg);
    if (r.tag === 'err') {
      // Refused by the subject policy (a reserved subject): the request is wrong, not the bus.
      const policy = /^(invalid_subject|permission_denied): (.*)$/s.exec(r.val);
      if (policy) return fail(res, 400, policy[1]!, policy[2]!);
      const bus = /^(bus_unavailable|unconfirmed): (.*)$/s.exec(r.val);
      return fail(res, 503, bus ? bus[1]! : 'bus_unavailable', bus ? bus[2]! : r.val);
    }
    return send(res, 202, { published: true });
  }
  if (parts[1] === 'links' && parts.length <= 3) return linksRoute(gw, req, res, method, parts[2]);
  if (parts[1] === 'components' && parts.length <= 3) return componentsRoute(gw, config, req, res, method, parts[2]);
  fail(res, 404, 'not_found', `no route for ${method} ${path}`);
}

/** A JSON object body (link settings, a component); answers the error itself and returns null. */
async function readObject(req: IncomingMessage, res: ServerResponse): Promise<Record<string, unknown> | null> {
  const body = await readBody(req, 64 * 1024);
  if (body === null) {
    fail(res, 413, 'too_large', 'body exceeds 64 KiB');
    return null;
  }
  let o: unknown;
  try {
    o = JSON.parse(body.toString('utf8'));
  } catch (e) {
    fail(res, 400, 'bad_json', (e as Error).message);
    return null;
  }
  if (typeof o !== 'object' || o === null || Array.isArray(o)) {
    fail(res, 400, 'bad_json', 'expected a JSON object');
    return null;
  }
  return o as Record<string, unknown>;
}

/**
 * Settings that name files the gateway would read (a token, keys, CAs): not accepted over the API,
 * where they would let a bearer of ADMIN_TOKEN send the gateway's files to any server. Links
 * added at runtime inherit them from the gateway's own configuration instead.
 */
const FILE_SETTINGS: readonly string[] = ['AUTH_TOKEN_FILE', 'REMOTE_TLS_CA_FILE', 'REMOTE_TLS_CERT', 'REMOTE_TLS_KEY'];

/** GET /api/links, POST /api/links (link settings), DELETE /api/links/{id}. */
async function linksRoute(gw: Gateway, req: IncomingMessage, res: ServerResponse, method: string, id: string | undefined): Promise<void> {
  const describe = (l: Gateway['links'][number]) => ({ ...l.info(), owners: gw.remoteLinks.owners(l.id).map(ownerName) });
  if (id === undefined) {
    if (method === 'GET') return send(res, 200, { links: gw.links.map(describe) });
    if (method !== 'POST') return fail(res, 405, 'method_not_allowed', 'use GET or POST', { allow: 'GET, POST' });
    const values = await readObject(req, res);
    if (!values) return;
    const file = Object.keys(values).find((k) => FILE_SETTINGS.includes(k));
    if (file) return fail(res, 400, 'bad_link', `${file} names a file the gateway would read: not accepted over the API (set it in the gateway's configuration; links added here inherit it)`);
    if (typeof values.URI !== 'string') return fail(res, 400, 'bad_link', 'URI (the ws:// or wss:// URL to dial) is required');
    if (typeof values.LINK_NAME === 'string' && gw.remoteLinks.get(values.LINK_NAME)) return fail(res, 409, 'link_exists', `a link named ${JSON.stringify(values.LINK_NAME)} exists already`);
    const before = new Set(gw.links.map((l) => l.id));
    try {
      const link = gw.addRemoteLink(values, undefined, 'POST /api/links');
      return send(res, before.has(link.id) ? 200 : 201, describe(link));
    } catch (e) {
      if (!(e instanceof ConfigError)) throw e;
      return fail(res, / would share one connection /.test(e.message) ? 409 : 400, / would share one connection /.test(e.message) ? 'link_conflict' : 'bad_link', e.message);
    }
  }
  if (method === 'GET') {
    const l = gw.remoteLinks.get(id);
    return l ? send(res, 200, describe(l)) : fail(res, 404, 'link_not_found', 'no such link');
  }
  if (method !== 'DELETE') return fail(res, 405, 'method_not_allowed', 'use GET or DELETE', { allow: 'GET, DELETE' });
  if (!(await gw.deleteRemoteLink(id))) return fail(res, 404, 'link_not_found', 'no such link');
  return send(res, 204);
}

/** GET /api/components, POST /api/components (a config-file component), DELETE /api/components/{id}. */
async function componentsRoute(gw: Gateway, config: Config, req: IncomingMessage, res: ServerResponse, method: string, id: string | undefined): Promise<void> {
  const describe = (cid: string) => {
    const c = gw.wasm.get(cid)!;
    return { id: cid, path: c.config.path, subscriptions: c.config.subscriptions, pool_size: c.pool.size, ...c.pool.stats };
  };
  if (id === undefined) {
    if (method === 'GET') return send(res, 200, { components: [...gw.wasm.keys()].map(describe) });
    if (method !== 'POST') return fail(res, 405, 'method_not_allowed', 'use GET or POST', { allow: 'GET, POST' });
    const o = await readObject(req, res);
    if (!o) return;
    // Filesystem access for a guest is the gateway's configuration to give, not the API's.
    if (o.preopens !== undefined) return fail(res, 400, 'bad_component', 'preopens are not accepted over the API: give components filesystem access in the configuration');
    let cfg;
    try {
      cfg = componentConfig(o, 'POST /api/components', config.componentDefaults);
    } catch (e) {
      if (e instanceof ConfigError) return fail(res, 400, 'bad_component', e.message);
      throw e;
    }
    if (gw.wasm.has(cfg.id)) return fail(res, 409, 'component_exists', `a component with id ${JSON.stringify(cfg.id)} is linked already`);
    try {
      await gw.addComponent(cfg);
    } catch (e) {
      const { ComponentLoadError } = await import('../components/component-config.ts');
      if (e instanceof ComponentLoadError || e instanceof ConfigError) return fail(res, 400, 'bad_component', e.message);
      if (/exists already/.test((e as Error).message)) return fail(res, 409, 'component_exists', (e as Error).message);
      throw e;
    }
    return send(res, 201, describe(cfg.id));
  }
  if (method === 'GET') return gw.wasm.has(id) ? send(res, 200, describe(id)) : fail(res, 404, 'component_not_found', 'no such component');
  if (method !== 'DELETE') return fail(res, 405, 'method_not_allowed', 'use GET or DELETE', { allow: 'GET, DELETE' });
  if (!gw.wasm.has(id)) return fail(res, 404, 'component_not_found', 'no such component');
  await gw.deleteLink(id);
  return send(res, 204);
}
