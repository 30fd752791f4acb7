// One attempt to open a client-mode link's WebSocket: TCP (through a CONNECT proxy when one is
// configured), TLS (a private CA, a client certificate, a server name), the HTTP upgrade, under one deadline for all of them (CONNECT_TIMEOUT_SEC).
// ws's own handshakeTimeout is an idle timer (a server trickling its 101 one byte a second never
// trips it), so it is not used. Reports either an open socket with the subprotocol the server
// selected (or null: RFC 6455 lets it select none), or a failure that says whether the refusal is
// permanent (401, 403) and what Retry-After the server gave.
//
// Reaches into ws 8's handshake order (the version package-lock.json pins): the 'upgrade' event is emitted
// with the response before ws checks Sec-WebSocket-Protocol, so a lenient link can accept a
// server that selected none (test/client-dial.test.ts fails if that changes).
import { readFileSync } from 'node:fs';
import WebSocket from 'ws';
import { HttpsProxyAgent } from 'https-proxy-agent';
import { parseRetryAfter } from './backoff.ts';

export interface DialOptions {
  uri: string;
  protocols: string[];
  headers: Record<string, string>;
  connectTimeoutMs: number;
  maxPayload: number;
  /** Fail when the server selects none of `protocols` (else accept it and report null). */
  requireSubprotocol: boolean;
  /** wss://: files read for this attempt (so a renewed certificate is used on the next one). */
  tls?: { caFile?: string | undefined; certFile?: string | undefined; keyFile?: string | undefined; servername?: string | undefined } | undefined;
  /** An HTTP(S) proxy reached with CONNECT. */
  proxyUrl?: string | undefined;
}

export interface DialFailure {
  message: string;
  /** The HTTP status the server answered the upgrade with, if it answered one. */
  status?: number | undefined;
  retryAfterMs?: number | undefined;
  /** 401 or 403: the server refuses these credentials; trying again at once will not help. */
  permanent: boolean;
}

export interface Dialing {
  /** Abandons the attempt (no callback follows). */
  abort(): void;
}

export function dial(o: DialOptions, onOpen: (ws: WebSocket, protocol: string | null) => void, onFail: (f: DialFailure) => void): Dialing {
  let settled = false;
  let failure: DialFailure | undefined;
  let noneSelected = false;
  let tls: { ca?: Buffer; cert?: Buffer; key?: Buffer; servername?: string };
  try {
    tls = tlsOptions(o.tls);
  } catch (e) {
    const f = { message: (e as Error).message, permanent: false };
    setImmediate(() => onFail(f));
    return { abort() {} };
  }
  // The proxy's socket is made by the agent; aborting this signal destroys it, so a proxy that
  // never answers the CONNECT is cut off by the same deadline.
  const proxySocket = new AbortController();
  // https-proxy-agent (TooTallNate's proxy-agents, as npm and many others use): CONNECT, proxy
  // Basic auth from the URL, TLS to the target through the tunnel.
  const agent = o.proxyUrl ? new HttpsProxyAgent(o.proxyUrl, { signal: proxySocket.signal } as ConstructorParameters<typeof HttpsProxyAgent>[1]) : undefined;
  const ws = new WebSocket(o.uri, o.protocols, {
    headers: o.headers,
    maxPayload: o.maxPayload,
    perMessageDeflate: false,
    followRedirects: false,
    ...tls,
    ...(agent ? { agent } : {}),
  });
  const endProxySocket = () => proxySocket.abort();
  const settle = () => {
    if (settled) return false;
    settled = true;
    clearTimeout(deadline);
    return true;
  };
  const deadline = setTimeout(() => {
    if (ws.readyState !== WebSocket.CONNECTING) return;
    failure = { message: `connect timed out after ${o.connectTimeoutMs / 1000} s (CONNECT_TIMEOUT_SEC: TCP, ${o.proxyUrl ? 'the proxy\'s CONNECT, ' : ''}TLS and the handshake together)`, permanent: false };
    ws.terminate();
    endProxySocket();
  }, o.connectTimeoutMs);
  ws.on('unexpected-response', (_req, res) => {
    const status = res.statusCode ?? 0;
    failure = {
      message: `the server answered the handshake with HTTP ${status}${res.statusMessage ? ` ${res.statusMessage}` : ''}`,
      status,
      retryAfterMs: parseRetryAfter(res.headers['retry-after']),
      permanent: status === 401 || status === 403,
    };
    res.resume();
    ws.terminate();
  });
  ws.on('upgrade', (res) => {
    if (o.protocols.length === 0 || o.requireSubprotocol || res.headers['sec-websocket-protocol'] !== undefined) return;
    // The server selected none of the offered subprotocols, which RFC 6455 allows: ws would
    // refuse it ("Server sent no subprotocol"), so it is shown the first offer and we remember
    // that in truth none was selected.
    noneSelected = true;
    res.headers['sec-websocket-protocol'] = o.protocols[0];
  });
  ws.once('open', () => {
    if (!settle()) return;
    onOpen(ws, noneSelected ? null : ws.protocol || null);
  });
  ws.on('error', (err) => {
    if (!settle()) return;
    endProxySocket();
    onFail(failure ?? { message: err.message, permanent: false });
  });
  return {
    abort() {
      if (!settle()) return;
      ws.terminate();
      endProxySocket();
    },
  };
}

function tlsOptions(t: DialOptions['tls']): { ca?: Buffer; cert?: Buffer; key?: Buffer; servername?: string } {
  const out: { ca?: Buffer; cert?: Buffer; key?: Buffer; servername?: string } = {};
  if (!t) return out;
  const read = (setting: string, path: string) => {
    try {
      return readFileSync(path);
    } catch (e) {
      throw new Error(`${setting}: cannot read ${path} (${(e as NodeJS.ErrnoException).code ?? String(e)})`);
    }
  };
  if (t.caFile) out.ca = read('REMOTE_TLS_CA_FILE', t.caFile);
  if (t.certFile) out.cert = read('REMOTE_TLS_CERT', t.certFile);
  if (t.keyFile) out.key = read('REMOTE_TLS_KEY', t.keyFile);
  if (t.servername) out.servername = t.servername;
  return out;
}
