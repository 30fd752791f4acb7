// Server mode transport: one HTTP(S) server carrying the WebSocket endpoint (/ws), its HTTP
// fallback (/sse, sse-transport.ts), the operator API (/api/), health and metrics. This file listens, loads and reloads TLS, and closes; the
// handshake checks live in upgrade-gate.ts, a session's life in connection.ts, the HTTP routes
// in http-routes.ts, the periodic sweeps in sweepers.ts.
import { createServer } from 'node:http';
import { createServer as createTlsServer } from 'node:https';
import type { Server as TlsServer } from 'node:https';
import { readFileSync } from 'node:fs';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { createServer as createNetServer } from 'node:net';
import type { AddressInfo, Server as NetServer } from 'node:net';
import { acceptProxyProtocol } from './proxy-protocol.ts';
import { WebSocketServer } from 'ws';
import type { Session } from '../sessions/session.ts';
import { CloseCodes } from '../protocol/errors.ts';
import { SUBPROTOCOL_JSON, SUBPROTOCOL_MSGPACK } from '../protocol/frames.ts';
import { createAuthenticator } from '../auth/authenticator.ts';
import type { Config, HostPort } from '../config/load.ts';
import type { Gateway } from '../gateway/gateway.ts';
import { UpgradeGate, WS_PATH, TOKEN_SUBPROTOCOL } from './upgrade-gate.ts';
import { HttpRoutes } from './http-routes.ts';
import { runConnection, GatewayWebSocket } from './connection.ts';
import type { ConnectionContext } from './connection.ts';
import { startSweepers } from './sweepers.ts';
import { SseTransport } from './sse-transport.ts';

export { WS_PATH, TOKEN_SUBPROTOCOL };

export class GatewayServer {
  readonly http: Server;
  readonly wss: WebSocketServer;
  readonly gate: UpgradeGate;
  readonly sse: SseTransport;
  #gw: Gateway;
  #config: Config;
  #connections: ConnectionContext;
  #closing = false;
  #stopSweepers: () => void;
  /** With PROXY_PROTOCOL: the listener that reads PROXY headers before the HTTP server sees a connection. */
  #front: NetServer | undefined;

  constructor(gw: Gateway, config: Config) {
    this.#gw = gw;
    this.#config = config;
    const auth = createAuthenticator(config.auth, gw.log);
    gw.hub.authenticator = auth;
    const routes = new HttpRoutes(gw, config, () => this.#closing);
    const handshakeMs = config.limits.handshakeTimeoutMs;
    // Node checks header/request timeouts every connectionsCheckingInterval (30 s by default).
    const checking = {
      connectionsCheckingInterval: Math.max(50, Math.min(1000, handshakeMs / 2)),
      headersTimeout: handshakeMs,
      requestTimeout: handshakeMs,
    };
    this.http = config.tls
      // handshakeTimeout bounds the TLS handshake itself (120 s by default in Node): the HTTP
      // timeouts above only start once it is done.
      ? createTlsServer({ ...checking, ...this.#tlsOptions(), handshakeTimeout: handshakeMs, requestCert: !!config.tls.clientCa, rejectUnauthorized: !!config.tls.clientCa }, (req, res) => this.#route(req, res, routes))
      : createServer(checking, (req, res) => this.#route(req, res, routes));
    this.wss = new WebSocketServer({
      noServer: true,
      clientTracking: false,
      WebSocket: GatewayWebSocket, // carries its Connection: no closures per session (connection.ts)
      maxPayload: config.maxMessageBytes,
      // Off by default: each compressing session keeps zlib state (see docs/protocol.md).
      perMessageDeflate: config.deflate.enabled ? { threshold: config.deflate.thresholdBytes, serverNoContextTakeover: true, clientNoContextTakeover: true, zlibDeflateOptions: { memLevel: 7, level: 3 } } : false,
      handleProtocols: (offered) => {
        if (offered.has(SUBPROTOCOL_MSGPACK)) return SUBPROTOCOL_MSGPACK;
        if (offered.has(SUBPROTOCOL_JSON)) return SUBPROTOCOL_JSON;
        return false; // none we know: JSON, and no protocol header in the response
      },
    });
    this.#connections = {
      gw,
      config,
      auth,
      open: new Set<Session>(),
      sessionLimits: { maxBufferedBytes: config.maxBufferedBytes, slowConsumerPolicy: config.slowConsumerPolicy, totals: gw.hub.totals, grants: config.grants },
      authFailed: (ip) => this.gate.authFailed(ip),
      releaseSlot: (ip) => this.gate.slots.free(ip),
    };
    this.gate = new UpgradeGate(config, auth, gw.hub.stats, this.wss, (ws, req, ip, identity) => {
      runConnection(this.#connections, ws, ip, remoteOf(req, ip), identity);
    }, gw.log);
    this.http.on('upgrade', (req, socket, head) => this.gate.handle(req, socket, head));
    this.sse = new SseTransport(config, auth, this.gate, (socket, req, ip, identity) => {
      runConnection(this.#connections, socket, ip, remoteOf(req, ip), identity);
    }, gw.log);
    // A failed in-band refresh counts toward the address's auth backoff like a failed handshake.
    gw.hub.onAuthFailure = (session) => {
      if (session.clientIp !== undefined) this.gate.throttle.failed(session.clientIp);
    };
    if (config.proxyProtocol) {
      this.#front = createNetServer();
      acceptProxyProtocol(this.#front, this.http, config.tls !== undefined, {
        timeoutMs: handshakeMs,
        trusted: (ip) => this.gate.addresses.trusts(ip),
        onRejected: (reason) => {
          gw.hub.stats.connectionsRefused++;
          gw.log.debug({ reason }, 'connection dropped before its PROXY header');
        },
      });
    }
    this.#stopSweepers = startSweepers(this.#connections.open, gw.hub.stats, config.limits, this.gate.throttle);
    this.http.on('clientError', (err: NodeJS.ErrnoException, socket) => {
      const timedOut = err.code === 'ERR_HTTP_REQUEST_TIMEOUT';
      // Only HTTP-level errors get an HTTP answer. A TLS failure (no ClientHello before the
      // handshake timeout, a bad record) arrives here too, on a socket that cannot carry one:
      // ending it politely would leave it open for good.
      const httpLevel = timedOut || (err.code?.startsWith('HPE_') ?? false);
      if (httpLevel && socket.writable) socket.end(timedOut ? 'HTTP/1.1 408 Request Timeout\r\nConnection: close\r\n\r\n' : 'HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
      else socket.destroy();
    });
  }

  #route(req: IncomingMessage, res: ServerResponse, routes: HttpRoutes): void {
    if (!this.sse.handle(req, res, (req.url ?? '/').split('?')[0]!)) routes.handle(req, res);
  }

  /** Connections open now (authenticated or not). */
  get openConnections(): number {
    return this.#connections.open.size;
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

  /** The server that owns the port: the HTTP(S) server, or the PROXY protocol front. */
  get #listener(): NetServer {
    return this.#front ?? this.http;
  }

  listen(at: HostPort): Promise<AddressInfo> {
    const l = this.#listener;
    return new Promise((resolve, reject) => {
      l.once('error', reject);
      l.listen(at.port, at.host, () => {
        l.off('error', reject);
        // The HTTP server starts its header and request timeouts on 'listening'; behind the
        // PROXY front it never listens itself.
        if (l !== this.http) this.http.emit('listening');
        resolve(l.address() as AddressInfo);
      });
    });
  }

  get address(): AddressInfo {
    return this.#listener.address() as AddressInfo;
  }

  /** The ws:// URL clients use, as printed at startup. */
  get url(): string {
    const a = this.address;
    const host = a.family === 'IPv6' ? `[${a.address}]` : a.address;
    return `${this.#config.tls ? 'wss' : 'ws'}://${host}:${a.port}${WS_PATH}`;
  }

  /**
   * Stops accepting, closes every connection with 1001 (those still authenticating too), waits up
   * to `timeoutMs` for their close handshakes, then cuts what is left.
   */
  async close(timeoutMs: number): Promise<void> {
    this.#closing = true;
    this.gate.close();
    this.sse.close();
    this.#stopSweepers();
    const httpClosed = new Promise<void>((resolve) => this.#listener.close(() => resolve()));
    if (this.#front) this.http.close(() => {}); // stops its timeout checks; it has no port of its own
    const open = [...this.#connections.open];
    const allClosed = Promise.all(open.map((s) => new Promise<void>((resolve) => {
      const ws = s.socket;
      if (ws.readyState === ws.CLOSED) return resolve();
      ws.once('close', () => resolve());
    })));
    for (const s of open) s.close(CloseCodes.goingAway, 'server shutting down');
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([allClosed, new Promise<void>((resolve) => (timer = setTimeout(resolve, timeoutMs)))]);
    clearTimeout(timer);
    for (const s of this.#connections.open) s.socket.terminate();
    this.http.closeAllConnections();
    await httpClosed;
  }
}

/** The session's remote address for the session list: the client IP and, when it is the TCP peer, its port. */
function remoteOf(req: IncomingMessage, ip: string): string {
  const peer = req.socket.remoteAddress ?? '?';
  return ip === peer || `::ffff:${ip}` === peer ? `${peer}:${req.socket.remotePort ?? 0}` : ip;
}
