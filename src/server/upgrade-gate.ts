// Everything that can refuse a WebSocket handshake, in the order it is checked: shutting down,
// path, per-IP throttles (rate, failed-auth backoff), connection slots (MAX_CONNECTIONS,
// MAX_CONNECTIONS_PER_IP), Origin, then the token when it comes with the handshake. Every refusal
// goes through refuse(). The connection slot is reserved synchronously, before the token check
// awaits anything (a cap checked before an await and counted after it is no cap), and released
// exactly once: when the upgrade is refused, when the TCP socket closes before the upgrade is
// done, or (handed over with the socket) when the session closes.
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { WebSocket, WebSocketServer } from 'ws';
import type { Authenticator, Identity } from '../auth/authenticator.ts';
import type { Config } from '../config/load.ts';
import type { Logger } from '../observability/logger.ts';
import type { HubStats } from '../sessions/hub.ts';
import { ClientAddress } from './client-address.ts';
import { HandshakeThrottle } from './handshake-throttle.ts';

export const WS_PATH = '/ws';

/** Subprotocol entry carrying a token, for browsers (which cannot set headers): wsbridge.token.<token>. */
export const TOKEN_SUBPROTOCOL = 'wsbridge.token.';

const STATUS_TEXT: Record<number, string> = { 401: 'Unauthorized', 403: 'Forbidden', 404: 'Not Found', 429: 'Too Many Requests', 503: 'Service Unavailable' };

/** Answers an upgrade request with an HTTP error and closes the socket once it is written. */
export function refuse(socket: Duplex, status: number, headers: Record<string, string> = {}): void {
  if (!socket.writable) {
    socket.destroy();
    return;
  }
  const lines = [`HTTP/1.1 ${status} ${STATUS_TEXT[status] ?? 'Error'}`, 'Connection: close', ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`), 'Content-Length: 0'];
  socket.once('finish', () => socket.destroy());
  socket.end(`${lines.join('\r\n')}\r\n\r\n`);
}

/** One connection's claim on MAX_CONNECTIONS and MAX_CONNECTIONS_PER_IP. */
export class Slot {
  #slots: ConnectionSlots | undefined;
  readonly ip: string;
  constructor(slots: ConnectionSlots, ip: string) {
    this.#slots = slots;
    this.ip = ip;
  }
  release(): void {
    const slots = this.#slots;
    if (slots === undefined) return;
    this.#slots = undefined;
    slots.free(this.ip);
  }
  /** The session now holds the slot (it frees it with `ConnectionSlots.free(ip)` on close). */
  handOver(): void {
    this.#slots = undefined;
  }
}

class ConnectionSlots {
  #max: number;
  #maxPerIp: number;
  #total = 0;
  #perIp = new Map<string, number>();
  constructor(max: number, maxPerIp: number) {
    this.#max = max;
    this.#maxPerIp = maxPerIp;
  }
  get total(): number {
    return this.#total;
  }
  /** Reserves a slot at once, or says which cap is reached. */
  reserve(ip: string): Slot | 'total' | 'ip' {
    if (this.#max > 0 && this.#total >= this.#max) return 'total';
    const n = this.#perIp.get(ip) ?? 0;
    if (this.#maxPerIp > 0 && n >= this.#maxPerIp) return 'ip';
    this.#total++;
    this.#perIp.set(ip, n + 1);
    return new Slot(this, ip);
  }
  free(ip: string): void {
    this.#total--;
    const left = (this.#perIp.get(ip) ?? 1) - 1;
    if (left > 0) this.#perIp.set(ip, left);
    else this.#perIp.delete(ip);
  }
}

/** admit()'s answer: a reserved slot, or the HTTP status (and headers) to refuse with. */
export type Admission = { ok: true; ip: string; slot: Slot } | { ok: false; status: number; headers: Record<string, string> };

/**
 * Takes an upgraded socket. It holds a slot for `ip` from now on: the taker frees it with
 * `gate.slots.free(ip)` exactly once, when the socket closes.
 */
export type Accept = (ws: WebSocket, req: IncomingMessage, ip: string, identity: Identity | undefined) => void;

export class UpgradeGate {
  readonly slots: ConnectionSlots;
  readonly throttle: HandshakeThrottle;
  readonly addresses: ClientAddress;
  #config: Config;
  #auth: Authenticator | undefined;
  #stats: HubStats;
  /** Refusals worth an operator's eye (origin, failed authentication) are logged at info. */
  #log: Logger | undefined;
  #wss: WebSocketServer;
  #accept: Accept;
  /** Sockets whose handshake token is being verified (answered 503 on shutdown). */
  #verifying = new Set<Duplex>();
  #closing = false;

  constructor(config: Config, auth: Authenticator | undefined, stats: HubStats, wss: WebSocketServer, accept: Accept, log?: Logger) {
    this.#log = log;
    this.#config = config;
    this.#auth = auth;
    this.#stats = stats;
    this.#wss = wss;
    this.#accept = accept;
    this.slots = new ConnectionSlots(config.limits.maxConnections, config.limits.maxConnectionsPerIp);
    this.throttle = new HandshakeThrottle(config.limits.handshakeRatePerIp, config.limits.authFailureBackoffMs);
    this.addresses = new ClientAddress(config.trustedProxies);
  }

  /** A failed authentication from `ip`, for the backoff (first-frame auth reports here too). */
  authFailed(ip: string): void {
    this.#stats.authFailures++;
    this.throttle.failed(ip);
  }

  /**
   * The checks every new session passes before its credential, whatever its transport: shutting
   * down, the per-IP throttles, the connection slots (reserved here, synchronously) and Origin.
   * The SSE fallback (sse-transport.ts) opens its sessions through it too.
   */
  admit(req: IncomingMessage): Admission {
    if (this.#closing) return { ok: false, status: 503, headers: {} };
    const ip = this.addresses.of(req);
    const verdict = this.throttle.admit(ip);
    if (!verdict.ok) return { ok: false, status: 429, headers: { 'Retry-After': String(verdict.retryAfterSec) } };
    const slot = this.slots.reserve(ip);
    if (slot === 'total' || slot === 'ip') {
      this.#stats.connectionsRefused++;
      return { ok: false, status: slot === 'total' ? 503 : 429, headers: { 'Retry-After': '5' } };
    }
    const origin = req.headers.origin;
    if (!this.originAllowed(origin)) {
      this.#log?.info({ remote: ip, origin }, 'origin refused (ALLOWED_ORIGINS)');
      this.#stats.authFailures++;
      slot.release();
      return { ok: false, status: 403, headers: {} };
    }
    return { ok: true, ip, slot };
  }

  /** Whether a browser Origin may open sessions (ALLOWED_ORIGINS; requests without one may). */
  originAllowed(origin: string | undefined): boolean {
    return origin === undefined || this.#config.allowedOrigins.length === 0 || this.#config.allowedOrigins.includes(origin);
  }

  handle(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    // A module-level listener: a closure here would share this call's context with the
    // handleUpgrade callback below and keep `req` (headers and all) alive for the session's life.
    socket.on('error', destroyOnError);
    if (this.#closing) return refuse(socket, 503);
    const path = (req.url ?? '/').split('?')[0];
    if (path !== WS_PATH) return refuse(socket, 404);
    const admitted = this.admit(req);
    if (!admitted.ok) return refuse(socket, admitted.status, admitted.headers);
    const { ip, slot } = admitted;
    releaseOnClose(socket, slot);
    const token = this.#auth ? handshakeToken(req) : undefined;
    if (!this.#auth || token === undefined) {
      // No authentication, or the token comes in the first frame.
      this.#wss.handleUpgrade(req, socket, head, (ws) => {
        handOver(socket, slot);
        this.#accept(ws, req, ip, undefined);
      });
      return;
    }
    this.#verifying.add(socket);
    this.#auth.verify(token).then(
      (identity) => {
        if (!this.#verifying.delete(socket)) return; // answered by close() meanwhile
        // A socket that went away meanwhile is destroyed by ws; its close releases the slot.
        this.#wss.handleUpgrade(req, socket, head, (ws) => {
          handOver(socket, slot);
          this.#accept(ws, req, ip, identity);
        });
      },
      () => {
        if (!this.#verifying.delete(socket)) return;
        this.#log?.info({ remote: ip }, 'authentication failed (handshake token)');
        this.authFailed(ip);
        slot.release();
        refuse(socket, 401, { 'WWW-Authenticate': 'Bearer realm="wsbridge"' });
      },
    );
  }

  /** Refuses new upgrades and those still verifying their token (503). */
  close(): void {
    this.#closing = true;
    for (const socket of this.#verifying) refuse(socket, 503);
    this.#verifying.clear();
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

/** The slot a socket holds, released by a module-level listener: no closure per connection. */
const kSlot = Symbol('wsbridge.slot');
type WithSlot = Duplex & { [kSlot]?: Slot };
function releaseOnClose(socket: Duplex, slot: Slot): void {
  (socket as WithSlot)[kSlot] = slot;
  socket.on('close', releaseSlotOf);
}
function releaseSlotOf(this: WithSlot): void {
  this[kSlot]?.release();
}
/**
 * The upgrade is done: the session takes over the slot (see Accept), and ws's own socket error
 * handler has replaced destroyOnError. The socket keeps no listener or slot of the gate's: at
 * 10k+ sessions each listener is an array of listeners on the socket, and the Slot an object.
 */
function handOver(socket: Duplex, slot: Slot): void {
  socket.off('close', releaseSlotOf);
  socket.off('error', destroyOnError);
  (socket as WithSlot)[kSlot] = undefined;
  slot.handOver();
}

function destroyOnError(this: Duplex): void {
  this.destroy();
}
