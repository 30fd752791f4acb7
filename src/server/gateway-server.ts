// Server mode transport: one HTTP server carrying the WebSocket endpoint (/ws), the operator API
// (/api/) and health (/healthz). Each upgrade on /ws becomes a Session in the hub.
import { createServer } from 'node:http';
import { createServer as createTlsServer } from 'node:https';
import type { Server as TlsServer } from 'node:https';
import { readFileSync } from 'node:fs';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { randomBytes } from 'node:crypto';
import { WebSocketServer } from 'ws';
import type { WebSocket } from 'ws';
import { Session } from '../sessions/session.ts';
import type { SessionLimits } from '../sessions/session.ts';
import { codecFor, CloseError } from '../protocol/codec.ts';
import { ProtocolError, CloseCodes } from '../protocol/errors.ts';
import { SUBPROTOCOL_JSON, SUBPROTOCOL_MSGPACK } from '../protocol/frames.ts';
import { handleOperatorApi } from './operator-api.ts';
import { serveDemoAsset } from './demo-assets.ts';
import { createAuthenticator } from '../auth/authenticator.ts';
import type { Authenticator, Identity } from '../auth/authenticator.ts';
import type { Config, HostPort } from '../config/load.ts';
import type { Gateway } from '../gateway/gateway.ts';

export const WS_PATH = '/ws';

export class GatewayServer {
  readonly http: Server;
  readonly wss: WebSocketServer;
  #gw: Gateway;
  #config: Config;
  /** Every open connection's session, authenticated or not (sweepers, shutdown, limits). */
  #open = new Set<Session>();
  #closing = false;
  #auth: Authenticator | undefined;
  #perIp = new Map<string, number>();
  #timers: NodeJS.Timeout[] = [];

  constructor(gw: Gateway, config: Config) {
    this.#gw = gw;
    this.#config = config;
    this.#auth = createAuthenticator(config.auth);
    gw.hub.authenticator = this.#auth;
    const handler = (req: IncomingMessage, res: ServerResponse) => this.#request(req, res);
    // Node checks header/request timeouts every connectionsCheckingInterval (30 s by default).
    const checking = {
      connectionsCheckingInterval: Math.max(50, Math.min(1000, config.limits.handshakeTimeoutMs / 2)),
      headersTimeout: config.limits.handshakeTimeoutMs,
      requestTimeout: config.limits.handshakeTimeoutMs,
    };
    this.http = config.tls
      ? createTlsServer({ ...checking, ...this.#tlsOptions(), requestCert: !!config.tls.clientCa, rejectUnauthorized: !!config.tls.clientCa }, handler)
      : createServer(checking, handler);
    this.wss = new WebSocketServer({
      noServer: true,
      clientTracking: false,
      maxPayload: config.maxMessageBytes,
      // Off by default: each compressing session keeps zlib state (see docs/protocol.md).
      perMessageDeflate: config.deflate.enabled ? { threshold: config.deflate.thresholdBytes, serverNoContextTakeover: true, clientNoContextTakeover: true, zlibDeflateOptions: { memLevel: 7, level: 3 } } : false,
      handleProtocols: (offered) => {
        if (offered.has(SUBPROTOCOL_MSGPACK)) return SUBPROTOCOL_MSGPACK;
        if (offered.has(SUBPROTOCOL_JSON)) return SUBPROTOCOL_JSON;
        return false; // none we know: JSON, and no protocol header in the response
      },
    });
    this.http.on('upgrade', (req, socket, head) => this.#upgrade(req, socket, head));
    this.#startSweepers();
    this.http.on('clientError', (err: NodeJS.ErrnoException, socket) => {
      const timedOut = err.code === 'ERR_HTTP_REQUEST_TIMEOUT';
      if (socket.writable) socket.end(timedOut ? 'HTTP/1.1 408 Request Timeout\r\nConnection: close\r\n\r\n' : 'HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
      else socket.destroy();
    });
  }

  #tlsOptions(): { cert: Buffer; key: Buffer; ca?: Buffer } {
    const t = this.#config.tls!;
    return { cert: readFileSync(t.cert), key: readFileSync(t.key), ...(t.clientCa ? { ca: readFileSync(t.clientCa) } : {}) };
  }

  /** Re-reads the certificate, key and client CA (SIGHUP); open sessions are not touched. */
  reloadTls(): void {
    if (!this.#config.tls) return;
    (this.http as TlsServer).setSecureContext(this.#tlsOptions());
    this.#gw.log.info('TLS certificate reloaded');
  }

  listen(at: HostPort): Promise<AddressInfo> {
    return new Promise((resolve, reject) => {
      this.http.once('error', reject);
      this.http.listen(at.port, at.host, () => {
        this.http.off('error', reject);
        resolve(this.http.address() as AddressInfo);
      });
    });
  }

  get address(): AddressInfo {
    return this.http.address() as AddressInfo;
  }

  /** The ws:// URL clients use, as printed at startup. */
  get url(): string {
    const a = this.address;
    const host = a.family === 'IPv6' ? `[${a.address}]` : a.address;
    return `${this.#config.tls ? 'wss' : 'ws'}://${host}:${a.port}${WS_PATH}`;
  }

  #request(req: IncomingMessage, res: ServerResponse): void {
    const path = (req.url ?? '/').split('?')[0]!;
    if (path === '/healthz') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ status: 'ok', sessions: this.#gw.hub.sessions.size }));
      return;
    }
    if (path === '/metrics') {
      void this.#metrics(req, res);
      return;
    }
    if (path === '/readyz') {
      const ready = !this.#closing && this.#gw.ready;
      res.writeHead(ready ? 200 : 503, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ status: ready ? 'ready' : 'not_ready', nats: this.#config.nats ? (this.#gw.ready ? 'connected' : 'disconnected') : 'not_configured' }));
      return;
    }
    if (path === '/api' || path.startsWith('/api/')) {
      handleOperatorApi(this.#gw, this.#config, req, res, path).catch((err: unknown) => {
        this.#gw.log.error({ err }, 'operator API failed');
        if (!res.headersSent) res.writeHead(500, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ error: { code: 'internal', message: 'internal error' } }));
      });
      return;
    }
    const notFound = () => {
      res.writeHead(404, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: { code: 'not_found', message: `no route for ${path}` } }));
    };
    if (!this.#config.demoPage || (req.method !== 'GET' && req.method !== 'HEAD')) return notFound();
    serveDemoAsset(path, res).then((served) => {
      if (!served) notFound();
    }, (err: unknown) => {
      this.#gw.log.error({ err }, 'demo asset failed');
      if (!res.headersSent) res.writeHead(500);
      res.end();
    });
  }

  #registry: import('prom-client').Registry | undefined;

  async #metrics(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const token = this.#config.metricsToken;
    if (token && req.headers.authorization !== `Bearer ${token}`) {
      res.writeHead(401, { 'content-type': 'application/json', 'www-authenticate': 'Bearer realm="wsbridge"' });
      res.end(JSON.stringify({ error: { code: 'unauthorized', message: 'missing or wrong bearer token' } }));
      return;
    }
    if (!this.#registry) {
      const { createMetrics } = await import('../observability/metrics.ts');
      this.#registry = createMetrics(this.#gw);
    }
    res.writeHead(200, { 'content-type': this.#registry.contentType });
    res.end(await this.#registry.metrics());
  }

  #upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    // A module-level listener: a closure here would share this call's context with the
    // handleUpgrade callback below and keep `req` (headers and all) alive for the session's life.
    socket.on('error', destroyOnError);
    const path = (req.url ?? '/').split('?')[0];
    if (this.#closing) {
      socket.end('HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
      return;
    }
    if (path !== WS_PATH) {
      socket.end('HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
      return;
    }
    const limits = this.#config.limits;
    const ip = req.socket.remoteAddress ?? '?';
    if (limits.maxConnections > 0 && this.#open.size >= limits.maxConnections) {
      this.#gw.hub.stats.connectionsRefused++;
      socket.end('HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nRetry-After: 5\r\nContent-Length: 0\r\n\r\n');
      return;
    }
    if (limits.maxConnectionsPerIp > 0 && (this.#perIp.get(ip) ?? 0) >= limits.maxConnectionsPerIp) {
      this.#gw.hub.stats.connectionsRefused++;
      socket.end('HTTP/1.1 429 Too Many Requests\r\nConnection: close\r\nRetry-After: 5\r\nContent-Length: 0\r\n\r\n');
      return;
    }
    const origin = req.headers.origin;
    if (origin !== undefined && this.#config.allowedOrigins.length > 0 && !this.#config.allowedOrigins.includes(origin)) {
      this.#gw.hub.stats.authFailures++;
      this.#gw.log.info({ remote: req.socket.remoteAddress, origin }, 'origin refused (ALLOWED_ORIGINS)');
      socket.end('HTTP/1.1 403 Forbidden\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
      return;
    }
    const token = this.#auth ? handshakeToken(req) : undefined;
    if (!this.#auth || token === undefined) {
      // No authentication, or the token comes in the first frame.
      this.wss.handleUpgrade(req, socket, head, (ws) => this.#accept(ws, req, undefined));
      return;
    }
    this.#auth.verify(token).then(
      (identity) => this.wss.handleUpgrade(req, socket, head, (ws) => this.#accept(ws, req, identity)),
      () => {
        this.#gw.hub.stats.authFailures++;
        this.#gw.log.info({ remote: req.socket.remoteAddress }, 'authentication failed (handshake token)');
        socket.end('HTTP/1.1 401 Unauthorized\r\nConnection: close\r\nWWW-Authenticate: Bearer realm="wsbridge"\r\nContent-Length: 0\r\n\r\n');
      },
    );
  }

  /** One limits object shared by every session (per-session copies cost memory at 10k+ sessions). */
  #sessionLimits: SessionLimits | undefined;

  #accept(ws: WebSocket, req: IncomingMessage, identity: Identity | undefined): void {
    const hub = this.#gw.hub;
    const id = randomBytes(16).toString('base64url'); // 128 random bits
    const remote = `${req.socket.remoteAddress ?? '?'}:${req.socket.remotePort ?? 0}`;
    const session = new Session(id, hub.newReplySubject(), ws, remote, codecFor(ws.protocol || undefined), (this.#sessionLimits ??= {
      maxBufferedBytes: this.#config.maxBufferedBytes,
      grants: this.#config.grants,
      slowConsumerPolicy: this.#config.slowConsumerPolicy,
      totals: this.#gw.hub.totals,
    }));
    this.#open.add(session);
    const ip = req.socket.remoteAddress ?? '?';
    this.#perIp.set(ip, (this.#perIp.get(ip) ?? 0) + 1);
    ws.on('pong', () => {
      session.alive = true; // liveness only: a pong is not activity for the idle timeout
    });
    const log = this.#gw.log;
    const limits = this.#config.limits;
    // With authentication on and no token in the handshake, the session exists only after a
    // valid {"op":"auth"} as its first frame: no welcome and no traffic before that.
    let pendingAuth = this.#auth !== undefined && identity === undefined;
    const deadline = pendingAuth ? setTimeout(() => session.close(CloseCodes.policyViolation, 'authentication required'), this.#config.authDeadlineMs) : undefined;
    ws.on('message', (data: Buffer, isBinary) => {
      session.received(data.length);
      if (!session.withinRate(data.length, limits.rateMsgs, limits.rateBytes)) {
        hub.stats.rateLimited++;
        if (session.rateErrorDue()) hub.error(session, 'rate_limited', `over ${limits.rateMsgs || '∞'} frames/s or ${limits.rateBytes || '∞'} bytes/s: frames are being dropped`);
        return;
      }
      if (pendingAuth) {
        pendingAuth = false;
        clearTimeout(deadline);
        let token: string | undefined;
        try {
          const f = session.codec.decode(data, isBinary);
          if (f.op === 'auth') token = f.token;
        } catch {
          // anything else than a valid auth frame ends the session below
        }
        const refuse = () => {
          hub.stats.authFailures++;
          log.info({ session: id, remote }, 'authentication failed (first frame)');
          session.close(CloseCodes.policyViolation, 'authentication failed');
        };
        if (token === undefined) return refuse();
        this.#auth!.verify(token).then((id) => {
          if (session.closed) return;
          session.authenticate(id);
          hub.add(session);
        }, refuse);
        return;
      }
      if (!hub.sessions.has(id)) return; // authenticating: frames wait for nothing
      let frame;
      try {
        frame = session.codec.decode(data, isBinary);
      } catch (err) {
        if (err instanceof ProtocolError) hub.protocolError(session, err);
        else if (err instanceof CloseError) session.close(err.closeCode, err.message);
        else {
          log.error({ err, session: id }, 'decode failed');
          session.close(CloseCodes.internalError, 'internal error');
        }
        return;
      }
      try {
        hub.handle(session, frame);
      } catch (err) {
        log.error({ err, session: id }, 'frame handling failed');
        hub.error(session, 'internal', 'the gateway failed to handle the frame', 'id' in frame ? frame.id : undefined);
      }
    });
    // ws reports protocol violations (oversize → 1009, invalid UTF-8 → 1007) here and closes
    // the socket with that code itself; the session must only be cleaned up.
    ws.on('error', (err) => log.debug({ err: err.message, session: id }, 'session socket error'));
    ws.on('close', (code) => {
      clearTimeout(deadline);
      this.#open.delete(session);
      const left = (this.#perIp.get(ip) ?? 1) - 1;
      if (left > 0) this.#perIp.set(ip, left);
      else this.#perIp.delete(ip);
      hub.closed(code);
      hub.remove(session);
      log.info({ session: id, code }, 'session closed');
    });
    if (identity) session.authenticate(identity);
    if (!pendingAuth) hub.add(session);
    log.info({ session: id, remote, protocol: session.codec.name, who: identity?.subject }, 'session opened');
  }

  /** Server pings (dead peers are dropped) and the idle timeout, one timer each for all sessions. */
  #startSweepers(): void {
    const { pingIntervalSec, idleTimeoutSec } = this.#config.limits;
    const hub = this.#gw.hub;
    if (pingIntervalSec > 0) {
      this.#timers.push(setInterval(() => {
        for (const s of this.#open) {
          const ws = s.socket;
          if (!s.alive) {
            hub.stats.deadPeers++;
            ws.terminate(); // no close handshake: the peer is not answering
            continue;
          }
          s.alive = false;
          ws.ping();
        }
      }, pingIntervalSec * 1000));
    }
    if (idleTimeoutSec > 0) {
      this.#timers.push(setInterval(() => {
        const cutoff = Date.now() - idleTimeoutSec * 1000;
        for (const s of this.#open) {
          if (!s.closed && s.lastActivity < cutoff) {
            hub.stats.idleCloses++;
            s.close(CloseCodes.normal, 'idle timeout');
          }
        }
      }, Math.max(100, Math.min(5000, (idleTimeoutSec * 1000) / 4))));
    }
    for (const t of this.#timers) t.unref();
  }

  /** Stops accepting, closes every session with 1001, waits up to `timeoutMs` for them. */
  async close(timeoutMs: number): Promise<void> {
    this.#closing = true;
    for (const t of this.#timers) clearInterval(t);
    const httpClosed = new Promise<void>((resolve) => this.http.close(() => resolve()));
    const sockets = [...this.#open].map((s) => s.socket);
    const allClosed = Promise.all(sockets.map((ws) => new Promise<void>((resolve) => {
      if (ws.readyState === ws.CLOSED) return resolve();
      ws.once('close', () => resolve());
    })));
    for (const s of this.#gw.hub.sessions.values()) s.close(CloseCodes.goingAway, 'server shutting down');
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([allClosed, new Promise<void>((resolve) => (timer = setTimeout(resolve, timeoutMs)))]);
    clearTimeout(timer);
    for (const s of this.#open) s.socket.terminate();
    this.http.closeAllConnections();
    await httpClosed;
  }
}

/** The token a client sent in the handshake: Authorization header, subprotocol entry, or query. */
function handshakeToken(req: IncomingMessage): string | undefined {
  const auth = req.headers.authorization;
  if (auth?.startsWith('Bearer ')) return auth.slice(7);
  const protocols = req.headers['sec-websocket-protocol'];
  if (protocols) {
    for (const p of protocols.split(',')) {
      const t = p.trim();
      if (t.startsWith(TOKEN_SUBPROTOCOL)) return t.slice(TOKEN_SUBPROTOCOL.length);
    }
  }
  const q = new URL(req.url ?? '/', 'http://x').searchParams.get('token');
  return q ?? undefined;
}

/** Subprotocol entry carrying a token, for browsers (which cannot set headers): wsbridge.token.<token>. */
export const TOKEN_SUBPROTOCOL = 'wsbridge.token.';

function destroyOnError(this: Duplex): void {
  this.destroy();
}
