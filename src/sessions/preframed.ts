// Frame once, write to many: a broadcast to N sessions is framed (WebSocket header + payload,
// one buffer) once and the same bytes are written to every socket, instead of ws framing and
// copying it N times. This is what Socket.IO's engine.io does (`wsPreEncodedFrame`), through the
// same ws internals, which ws exports at runtime but does not document or type:
//   - `Sender.frame(data, opts)`: ws's own frame encoder, so the bytes are exactly what ws sends;
//   - `ws._sender.sendFrame(list)`: writes already-framed bytes to the socket;
//   - `ws._socket`: the net.Socket, corked for the rest of a tick (corkUntilTickEnd).
// It is only safe while ws keeps no send queue for the socket, which is the case unless
// permessage-deflate was negotiated (ws then compresses through a queue); see canWriteFrames.
import * as wsModule from 'ws';
import { WebSocket } from 'ws';
import type { SessionSocket } from './session-socket.ts';

type FrameFn = (data: Buffer, opts: { fin: boolean; rsv1: boolean; opcode: number; mask: boolean; readOnly: boolean }) => Buffer[];
const frame = (wsModule as unknown as { Sender: { frame: FrameFn } }).Sender.frame;

interface CorkableSocket {
  cork(): void;
  uncork(): void;
  readonly writableLength: number;
  /** Node's Writable state: writes waiting behind the one in flight (or behind the cork). */
  readonly _writableState?: { readonly bufferedRequestCount?: number };
}
interface WithBuffered { readonly bufferedAmount: number }
interface WithSender { _sender: { sendFrame(list: Buffer[], cb?: () => void): void }; _socket: CorkableSocket | undefined }

/** One unmasked, final frame holding `payload` (text or binary), as a single buffer. */
export function frameOnce(payload: Buffer, binary: boolean): Buffer {
  const parts = frame(payload, { fin: true, rsv1: false, opcode: binary ? 2 : 1, mask: false, readOnly: true });
  return parts.length === 1 ? parts[0]! : Buffer.concat(parts);
}

/** Whether pre-framed bytes may go straight to this socket (no compression queue in ws). */
export function canWriteFrames(ws: SessionSocket): boolean {
  return ws.extensions === '' && typeof (ws as unknown as Partial<WithSender>)._sender?.sendFrame === 'function';
}

/** Writes a frame made by frameOnce; the caller checked canWriteFrames and that ws is OPEN. */
export function writeFrame(ws: SessionSocket, framed: Buffer): void {
  (ws as unknown as WithSender)._sender.sendFrame([framed]);
}

/**
 * Corks the socket until the current tick ends, so that a burst of frames to the same session
 * (a publisher's frames arrive and are routed in one tick; a client's pipelined requests are
 * answered in one tick) leaves in one writev instead of one syscall each. A lone frame still
 * leaves before the next I/O turn: this batches, it never delays. Once FLUSH_BYTES are held the
 * batch is written at once, so corking never holds back more than that.
 */
export function corkUntilTickEnd(ws: SessionSocket): void {
  const sock = (ws as unknown as WithSender)._socket;
  if (!sock) return;
  const before = corked.get(sock);
  if (before !== undefined) {
    if (sock.writableLength - before >= FLUSH_BYTES) {
      sock.uncork();
      corked.set(sock, sock.writableLength);
      corkedCost.set(sock, queueCost(sock));
      sock.cork();
    }
    return;
  }
  corked.set(sock, sock.writableLength);
  corkedCost.set(sock, queueCost(sock));
  sock.cork();
  if (!flushScheduled) {
    flushScheduled = true;
    process.nextTick(uncorkAll);
  }
}

/**
 * What a socket's queued writes cost in memory: their bytes, plus WRITE_OVERHEAD_BYTES for each
 * write waiting in Node's buffer (the Buffer objects and the buffer entry). A client that sends
 * pings and never reads queues thousands of 20-byte pongs whose bookkeeping outweighs their
 * payload many times over; counted this way, MAX_BUFFERED_BYTES bounds memory, not only payload.
 * `bufferedRequestCount` is Node's own count (a getter of the Writable state, Node 14 to 24).
 */
function queueCost(sock: CorkableSocket): number {
  return sock.writableLength + WRITE_OVERHEAD_BYTES * (sock._writableState?.bufferedRequestCount ?? 0);
}

/** Counted per write waiting in a socket's buffer, on top of its bytes (see queueCost). */
export const WRITE_OVERHEAD_BYTES = 256;

/**
 * What is really waiting to be sent to this socket, in bytes (queueCost), plus ws's own
 * compression queue; minus what the cork holds back for the end of this tick. The corked bytes
 * are leaving anyway; counting them made a low MAX_BUFFERED_BYTES close healthy readers. What is
 * queued in one tick is still bounded, by FLUSH_BYTES.
 */
export function queuedBytes(ws: SessionSocket): number {
  const sock = (ws as unknown as WithSender)._socket;
  const total = (ws as unknown as WithBuffered).bufferedAmount;
  if (sock === undefined) return total;
  const ownQueue = total - sock.writableLength; // ws's compression queue (0 without deflate)
  return ownQueue + (corkedCost.get(sock) ?? queueCost(sock));
}

/** Most bytes corkUntilTickEnd holds back for one socket (beyond MAX_BUFFERED_BYTES, see docs). */
export const FLUSH_BYTES = 16 * 1024;
/** Corked sockets → their writableLength when corked (what was queued before this tick's batch). */
const corked = new Map<CorkableSocket, number>();
/** Corked sockets → their queueCost when corked: what queuedBytes reports while they are corked. */
const corkedCost = new Map<CorkableSocket, number>();
let flushScheduled = false;
function uncorkAll(): void {
  flushScheduled = false;
  // Each socket leaves the map before its uncork: should one throw, the rest stay listed and
  // the next cork schedules another flush, so no session is left corked.
  for (const sock of corked.keys()) {
    corked.delete(sock);
    corkedCost.delete(sock);
    sock.uncork();
  }
}

export { WebSocket };
