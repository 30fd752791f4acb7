// Frame once, write to many: a broadcast to N sessions is framed (WebSocket header + payload,
// one buffer) once and the same bytes are written to every socket, instead of ws framing and
// copying it N times. This is what Socket.IO's engine.io does (`wsPreEncodedFrame`), through the
// same ws internals, which ws exports at runtime but does not document or type:
//   - `Sender.frame(data, opts)`: ws's own frame encoder, so the bytes are exactly what ws sends;
//   - `ws._socket`: the net.Socket, written to directly (what `ws._sender.sendFrame` does with
//     one buffer), and corked for the rest of a tick (corkUntilTickEnd).
// It is only safe while ws keeps no send queue for the socket, which is the case unless
// permessage-deflate was negotiated (ws then compresses through a queue); see canWriteFrames.
//
// Shared frames are also batched per tick, the way uWebSockets batches a topic's messages: each
// session's shared frames wait in a list until the end of the tick (or BATCH_BYTES), and the
// sessions that got the same frames in the same order (every subscriber of one subject, in a
// burst) are written one buffer joined once for all of them: one socket write per session per
// tick, whatever the number of messages, instead of one stream write each. On loopback a socket
// write costs ~10 µs of kernel time whether it carries 4 or 16 KiB (the receiver's side runs in
// the sender's syscall), so a batch may hold BATCH_BYTES: its bytes are shared, not per session.
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
interface WritableSocket extends CorkableSocket {
  write(data: Buffer): boolean;
}
interface WithSender { _sender: { sendFrame(list: Buffer[], cb?: () => void): void }; _socket: WritableSocket | undefined }

/** One unmasked, final frame holding `payload` (text or binary), as a single buffer. */
export function frameOnce(payload: Buffer, binary: boolean): Buffer {
  const parts = frame(payload, { fin: true, rsv1: false, opcode: binary ? 2 : 1, mask: false, readOnly: true });
  return parts.length === 1 ? parts[0]! : Buffer.concat(parts);
}

/** Whether pre-framed bytes may go straight to this socket (no compression queue in ws). */
export function canWriteFrames(ws: SessionSocket): boolean {
  const w = ws as unknown as Partial<WithSender>;
  return ws.extensions === '' && typeof w._sender?.sendFrame === 'function' && typeof w._socket?.write === 'function';
}

/** One session's shared frames waiting for the end of the tick. */
interface Batch {
  frames: Buffer[];
  bytes: number;
}
/** Sockets with a batch this tick (a Map keeps their order: sessions are flushed as they came). */
const batches = new Map<SessionSocket, Batch>();
/** This tick's joined batches, by their first frame: sessions with the same frames share one. */
const joined = new Map<Buffer, { frames: Buffer[]; buf: Buffer }>();

/**
 * Most bytes of shared frames batchFrame holds back for one socket. More than FLUSH_BYTES: the
 * frames are the same buffers for every session that gets them (what a session holds of its own
 * is a list of references, 8 bytes a frame), and fewer writes cost less kernel time.
 */
export const BATCH_BYTES = 64 * 1024;

/**
 * Adds a frame made by frameOnce (shared by many sessions) to the batch begun for `ws` this tick;
 * false when there is none (the caller checks the bound, then calls batchFrame). Once BATCH_BYTES
 * wait, the batch is written at once.
 */
export function addToBatch(ws: SessionSocket, framed: Buffer): boolean {
  const b = batches.get(ws);
  if (b === undefined) return false;
  b.frames.push(framed);
  b.bytes += framed.length;
  if (b.bytes >= BATCH_BYTES) {
    batches.delete(ws);
    writeBatch(ws, b);
  }
  return true;
}

/**
 * Begins the batch of `ws` for this tick (addToBatch found none) with a frame made by frameOnce,
 * to be written at the end of the tick; the caller checked canWriteFrames and that ws is OPEN.
 */
export function batchFrame(ws: SessionSocket, framed: Buffer): void {
  if (framed.length >= BATCH_BYTES) return writeBatch(ws, { frames: [framed], bytes: framed.length });
  batches.set(ws, { frames: [framed], bytes: framed.length });
  scheduleFlush();
}

/**
 * Writes what batchFrame holds for `ws` now: before any other frame to it (ordering), and before
 * a close. Frames held for a socket that is no longer open are dropped (ws has sent or received
 * a close frame: nothing may follow it).
 */
export function flushBatch(ws: SessionSocket): void {
  const b = batches.get(ws);
  if (b === undefined) return;
  batches.delete(ws);
  writeBatch(ws, b);
}

function writeBatch(ws: SessionSocket, b: Batch): void {
  const sock = (ws as unknown as WithSender)._socket;
  if (sock === undefined || ws.readyState !== WebSocket.OPEN) return;
  const frames = b.frames;
  let buf: Buffer;
  if (frames.length === 1) buf = frames[0]!;
  else {
    const hit = joined.get(frames[0]!);
    if (hit !== undefined && sameFrames(hit.frames, frames)) buf = hit.buf;
    else {
      buf = Buffer.concat(frames, b.bytes);
      joined.set(frames[0]!, { frames, buf });
    }
  }
  sock.write(buf);
  // A socket also corked this tick (it was answered too) holds at most FLUSH_BYTES.
  if (corked.has(sock)) corkUntilTickEnd(ws);
}

function sameFrames(a: Buffer[], b: Buffer[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
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
  scheduleFlush();
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
function scheduleFlush(): void {
  if (flushScheduled) return;
  flushScheduled = true;
  process.nextTick(flushAll);
}
/** The end of the tick: batches are written (into the cork where there is one), then uncorked. */
function flushAll(): void {
  flushScheduled = false;
  // Each socket leaves its map before it is written or uncorked: should one throw, the rest stay
  // listed and the next frame schedules another flush, so no session is left holding frames.
  try {
    for (const [ws, b] of batches) {
      batches.delete(ws);
      writeBatch(ws, b);
    }
  } finally {
    joined.clear();
    for (const sock of corked.keys()) {
      corked.delete(sock);
      corkedCost.delete(sock);
      sock.uncork();
    }
  }
}

export { WebSocket };
