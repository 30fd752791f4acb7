// One outbound WebSocket opened by a component, independent of which WIT contract drives it:
// handshake with timeout, a bounded receive queue (past it the socket stops reading, so the
// server feels TCP backpressure and nothing is lost), waiters for blocking receives, keepalive
// pings with dead-peer detection, and a truthful state.
import WebSocket from 'ws';
import type { IncomingMessage } from 'node:http';

export type SocketState = 'connecting' | 'open' | 'closing' | 'closed';

export type Inbound =
  | { kind: 'text'; data: string }
  | { kind: 'binary'; data: Uint8Array }
  | { kind: 'ping'; data: Uint8Array }
  | { kind: 'pong'; data: Uint8Array }
  | { kind: 'close'; code: number; reason: string };

export interface SocketOptions {
  url: string;
  headers: Record<string, string>;
  subprotocols: string[];
  timeoutMs: number;
  maxMessageBytes: number;
  keepaliveMs: number;
  receiveQueue: number;
  /** Deliver ping/pong frames to the guest as messages (the wasmcloud contract has them). */
  surfaceControlFrames: boolean;
}

export type ConnectFailure =
  | { kind: 'timeout'; message: string }
  | { kind: 'auth'; status: number; message: string }
  | { kind: 'failed'; message: string };

export interface OutboundStats {
  open: number;
  opened: number;
  bytesIn: number;
  bytesOut: number;
}

export class OutboundSocket {
  readonly url: string;
  state: SocketState = 'connecting';
  protocol: string | undefined;
  /** Why the connection ended, when it ended other than by a close frame. */
  failure: string | undefined;
  /** The close frame received from the server, if any. */
  closeInfo: { code: number; reason: string } | undefined;
  #ws: WebSocket;
  #queue: Inbound[] = [];
  #waiters: Array<() => void> = [];
  #paused = false;
  #opts: SocketOptions;
  #stats: OutboundStats;
  #keepalive: NodeJS.Timeout | undefined;
  #awaitingPong = false;
  #onEnd: () => void;

  private constructor(ws: WebSocket, opts: SocketOptions, stats: OutboundStats, onEnd: () => void) {
    this.#ws = ws;
    this.url = opts.url;
    this.#opts = opts;
    this.#stats = stats;
    this.#onEnd = onEnd;
  }

  /** Dials; resolves when open, rejects with a ConnectFailure. */
  static open(opts: SocketOptions, stats: OutboundStats, onEnd: () => void): Promise<OutboundSocket> {
    return new Promise((resolve, reject) => {
      let status: number | undefined;
      const ws = new WebSocket(opts.url, opts.subprotocols, {
        headers: opts.headers,
        handshakeTimeout: opts.timeoutMs,
        maxPayload: opts.maxMessageBytes,
        perMessageDeflate: false,
      });
      const sock = new OutboundSocket(ws, opts, stats, onEnd);
      ws.on('unexpected-response', (_req, res: IncomingMessage) => {
        status = res.statusCode;
        res.resume();
        ws.terminate();
      });
      const onError = (err: Error) => {
        ws.off('open', onOpen);
        sock.state = 'closed';
        onEnd();
        if (status === 401 || status === 403) reject({ kind: 'auth', status, message: `handshake refused: HTTP ${status}` } satisfies ConnectFailure);
        else if (status !== undefined) reject({ kind: 'failed', message: `handshake refused: HTTP ${status}` } satisfies ConnectFailure);
        else if (/timed out/i.test(err.message)) reject({ kind: 'timeout', message: err.message } satisfies ConnectFailure);
        else reject({ kind: 'failed', message: err.message } satisfies ConnectFailure);
      };
      const onOpen = () => {
        ws.off('error', onError);
        sock.#attach();
        resolve(sock);
      };
      ws.once('error', onError);
      ws.once('open', onOpen);
    });
  }

  #attach(): void {
    const ws = this.#ws;
    this.state = 'open';
    this.protocol = ws.protocol || undefined;
    this.#stats.open++;
    this.#stats.opened++;
    ws.on('message', (data: Buffer, isBinary) => {
      this.#stats.bytesIn += data.length;
      this.#push(isBinary ? { kind: 'binary', data: new Uint8Array(data) } : { kind: 'text', data: data.toString('utf8') });
    });
    ws.on('ping', (data: Buffer) => {
      if (this.#opts.surfaceControlFrames) this.#push({ kind: 'ping', data: new Uint8Array(data) });
    });
    ws.on('pong', (data: Buffer) => {
      this.#awaitingPong = false;
      if (this.#opts.surfaceControlFrames && !isKeepalive(data)) this.#push({ kind: 'pong', data: new Uint8Array(data) });
    });
    ws.on('error', (err: Error & { code?: string }) => {
      // Oversize frames (1009) and protocol violations: ws closes the socket after this.
      this.failure = err.code === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH' ? `message larger than ${this.#opts.maxMessageBytes} bytes` : err.message;
    });
    ws.on('close', (code: number, reason: Buffer) => {
      this.#stopKeepalive();
      const wasOpen = this.state !== 'closed';
      this.state = 'closed';
      // A close frame from the server is a message the guest reads, then the state is closed.
      if (code !== 1006 && code !== 1009 && this.failure === undefined) {
        this.closeInfo = { code, reason: reason.toString() };
        this.#push({ kind: 'close', code, reason: reason.toString() });
      } else if (code === 1009) {
        this.failure ??= `message larger than ${this.#opts.maxMessageBytes} bytes`;
      } else {
        // guest/golem.js tells this text apart (a cut connection: close 1006 without an error event).
        this.failure ??= 'connection lost';
      }
      if (wasOpen) {
        this.#stats.open--;
        this.#onEnd();
      }
      this.#wake();
    });
    if (this.#opts.keepaliveMs > 0) {
      this.#keepalive = setInterval(() => {
        if (this.#awaitingPong) {
          this.failure = 'keepalive: no pong from the server';
          ws.terminate();
          return;
        }
        this.#awaitingPong = true;
        ws.ping(KEEPALIVE_PAYLOAD);
      }, this.#opts.keepaliveMs);
    }
  }

  #push(m: Inbound): void {
    this.#queue.push(m);
    if (this.#queue.length >= this.#opts.receiveQueue && !this.#paused && this.state === 'open') {
      this.#paused = true;
      this.#ws.pause();
    }
    this.#wake();
  }

  #wake(): void {
    for (const w of this.#waiters.splice(0)) w();
  }

  /** The next queued message, without waiting. */
  take(): Inbound | undefined {
    const m = this.#queue.shift();
    if (this.#paused && this.#queue.length <= this.#opts.receiveQueue / 2) {
      this.#paused = false;
      this.#ws.resume();
    }
    return m;
  }

  get hasQueued(): boolean {
    return this.#queue.length > 0;
  }

  /** Resolves when a message is queued or the connection has ended, or after `timeoutMs`. */
  wait(timeoutMs?: number): Promise<void> {
    if (this.#queue.length > 0 || this.state === 'closed') return Promise.resolve();
    return new Promise((resolve) => {
      let timer: NodeJS.Timeout | undefined;
      const w = () => {
        clearTimeout(timer);
        resolve();
      };
      this.#waiters.push(w);
      if (timeoutMs !== undefined) {
        timer = setTimeout(() => {
          const i = this.#waiters.indexOf(w);
          if (i >= 0) this.#waiters.splice(i, 1);
          resolve();
        }, timeoutMs);
      }
    });
  }

  sendText(text: string): void {
    this.#ws.send(text);
    this.#stats.bytesOut += Buffer.byteLength(text);
  }

  sendBinary(data: Uint8Array): void {
    this.#ws.send(data, { binary: true });
    this.#stats.bytesOut += data.length;
  }

  ping(data: Uint8Array): void {
    this.#ws.ping(data);
  }

  pong(data: Uint8Array): void {
    this.#ws.pong(data);
  }

  close(code: number | undefined, reason: string | undefined): void {
    if (this.state === 'closed' || this.state === 'closing') return;
    this.state = 'closing';
    this.#stopKeepalive();
    // A reason needs a code on the wire: close(none, some(reason)) sends 1000 with the reason.
    this.#ws.close(code ?? (reason ? 1000 : undefined), reason);
  }

  /** Ends the connection without a handshake (instance dropped, gateway shutting down). */
  destroy(): void {
    if (this.state === 'closed') return;
    this.failure ??= 'connection closed by the gateway';
    this.#ws.close(1001, 'component unloaded');
    setTimeout(() => this.#ws.terminate(), 1000).unref();
  }

  #stopKeepalive(): void {
    clearInterval(this.#keepalive);
    this.#keepalive = undefined;
  }
}

// Keepalive pings carry a marker so their pongs are not shown to the guest as its own.
const KEEPALIVE_PAYLOAD = Buffer.from('wsbridge-keepalive');
function isKeepalive(data: Buffer): boolean {
  return data.equals(KEEPALIVE_PAYLOAD);
}
