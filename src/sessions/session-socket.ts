// What a session needs of the connection it sits on. A ws WebSocket is one as it is; the
// Server-Sent Events fallback (src/server/sse-socket.ts) implements the same members, so Session,
// the connection loop, the sweepers and shutdown serve both transports with the same code.
import type { WireData } from '../protocol/codec.ts';

export interface SessionSocket {
  /** WebSocket states: 0 connecting, 1 open, 2 closing, 3 closed. */
  readonly readyState: number;
  readonly CLOSED: number;
  /** The negotiated subprotocol ('' for none). */
  readonly protocol: string;
  /** Negotiated extensions ('' for none). */
  readonly extensions: string;
  /** Bytes waiting to be sent (the transport's own measure; see queuedBytes in preframed.ts). */
  readonly bufferedAmount: number;
  readonly isPaused: boolean;
  /** 'sse' on the fallback transport; absent on a WebSocket. */
  readonly transport?: 'sse';
  send(data: WireData, options: { binary: boolean }): void;
  close(code?: number, reason?: string): void;
  /** Ends the connection without a close handshake. */
  terminate(): void;
  /** A liveness probe; the peer's answer is the 'pong' event. */
  ping(): void;
  /** Stops reading frames ('message' events) until resume(). */
  pause(): void;
  resume(): void;
  // Events: 'message' (data: Buffer, isBinary: boolean), 'pong', 'error' (err), 'close' (code).
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  on(event: string, listener: (...args: any[]) => void): unknown;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  once(event: string, listener: (...args: any[]) => void): unknown;
}
