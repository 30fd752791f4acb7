// One session on the fallback transport, seen from the session's side: a SessionSocket whose
// outbound half is a Server-Sent Events stream (the response to the POST that opened the session)
// and whose inbound half is the frames of the POSTs the client sends to /sse/send (fed in by
// sse-transport.ts, one POST at a time). Session, the connection loop, the sweepers and shutdown
// use it exactly like a ws WebSocket.
//
// On the stream: `event: open` (the send token) first, then each v1 frame as one `data:` line
// (JSON has no raw line breaks), `event: ping` for liveness, and `event: close` with the close
// code and reason before the server ends the stream.
import { EventEmitter } from 'node:events';
import type { ServerResponse } from 'node:http';
import type { WireData } from '../protocol/codec.ts';
import type { SessionSocket } from '../sessions/session-socket.ts';
import { FLUSH_BYTES, WRITE_OVERHEAD_BYTES } from '../sessions/preframed.ts';

/** How long a closing stream may take to drain its close event before it is cut (as ws waits for a close frame). */
export const SSE_CLOSE_TIMEOUT_MS = 30_000;

const OPEN = 1;
const CLOSING = 2;
const CLOSED = 3;

interface WritableState { readonly bufferedRequestCount?: number }

export class SseSocket extends EventEmitter implements SessionSocket {
  readonly transport = 'sse' as const;
  readonly protocol = 'wsbridge.v1.json';
  readonly extensions = '';
  readonly CLOSED = CLOSED;
  /** The stream id half of the send token (the key sse-transport.ts finds this socket by). */
  readonly streamId: string;
  /** The secret half of the send token, compared in constant time. */
  readonly secret: string;
  readyState = OPEN;
  isPaused = false;
  /** A POST to /sse/send is being read for this session (at most one at a time). */
  posting = false;
  #res: ServerResponse;
  #closeCode: number | undefined;
  #closeTimer: NodeJS.Timeout | undefined;

  constructor(res: ServerResponse, streamId: string, secret: string, pingIntervalMs: number) {
    super();
    this.#res = res;
    this.streamId = streamId;
    this.secret = secret;
    res.on('close', () => this.#ended());
    // Written before the session exists, so nothing precedes it: the client needs the token to send.
    res.write(`event: open\ndata: ${JSON.stringify({ send_token: `${streamId}.${secret}`, ping_interval_ms: pingIntervalMs })}\n\n`);
  }

  /**
   * Bytes waiting to go out on the stream, counted as the WebSocket path counts them: the bytes
   * in the response and socket buffers plus WRITE_OVERHEAD_BYTES per write waiting in the socket.
   */
  get bufferedAmount(): number {
    const sock = this.#res.socket as (NonNullable<ServerResponse['socket']> & { _writableState?: WritableState }) | null;
    const waiting = sock?._writableState?.bufferedRequestCount ?? 0;
    return this.#res.writableLength + WRITE_OVERHEAD_BYTES * waiting;
  }

  send(data: WireData, _options: { binary: boolean }): void {
    if (this.readyState !== OPEN) return;
    const text = typeof data === 'string' ? data : data.toString('utf8');
    // The codecs never put a raw line break in JSON; should one ever appear, each line is its own
    // data field and the client joins them with "\n", as the SSE format says.
    this.#res.write(/[\r\n]/.test(text) ? `data: ${text.split(/\r\n|\r|\n/).join('\ndata: ')}\n\n` : `data: ${text}\n\n`);
    // Node corks a response's socket until the end of the tick: a burst would sit in memory,
    // counted against MAX_BUFFERED_BYTES, before the kernel saw any of it. Write it out every
    // FLUSH_BYTES, as the WebSocket path does (an extra uncork is a no-op).
    const sock = this.#res.socket;
    if (sock && sock.writableCorked > 0 && sock.writableLength >= FLUSH_BYTES) sock.uncork();
  }

  ping(): void {
    if (this.readyState === OPEN) this.#res.write('event: ping\ndata:\n\n');
  }

  /** The client posted to /sse/send: it is alive (the answer to ping). */
  heard(): void {
    this.emit('pong');
  }

  /** Tells the client the code and reason, ends the stream, and cuts it if it does not drain in time. */
  close(code = 1000, reason = ''): void {
    if (this.readyState !== OPEN) return;
    this.readyState = CLOSING;
    this.#closeCode = code;
    this.#res.end(`event: close\ndata: ${JSON.stringify({ code, reason })}\n\n`);
    this.#closeTimer = setTimeout(() => this.#res.destroy(), SSE_CLOSE_TIMEOUT_MS);
    this.#closeTimer.unref();
  }

  terminate(): void {
    this.#closeCode ??= 1006;
    this.#res.destroy();
  }

  pause(): void {
    this.isPaused = true;
  }

  resume(): void {
    if (!this.isPaused) return;
    this.isPaused = false;
    this.emit('resume');
  }

  #ended(): void {
    if (this.readyState === CLOSED) return;
    clearTimeout(this.#closeTimer);
    this.readyState = CLOSED;
    // A stream that ended without the server closing it: the client went away (1006, as for a
    // WebSocket whose TCP connection dropped).
    this.emit('close', this.#closeCode ?? 1006);
  }
}
