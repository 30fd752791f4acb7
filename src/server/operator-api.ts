// The operator HTTP API under /api/, guarded by ADMIN_TOKEN (Authorization: Bearer). Bodies of
// POST requests are v1 message envelopes in JSON, decoded by the same codec as WebSocket frames.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { bearerMatches } from '../auth/secret.ts';
import { jsonCodec, CloseError } from '../protocol/codec.ts';
import { ProtocolError } from '../protocol/errors.ts';
import type { BrokerMessage } from '../protocol/frames.ts';
import type { Config } from '../config/load.ts';
import type { Gateway } from '../gateway/gateway.ts';
import { SubjectRefused } from '../gateway/gateway.ts';
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
  const parts = path.split('/').filter(Boolean).map(decodeURIComponent); // ['api', ...]

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
  fail(res, 404, 'not_found', `no route for ${method} ${path}`);
}
