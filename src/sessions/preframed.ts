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

type FrameFn = (data: Buffer, opts: { fin: boolean; rsv1: boolean; opcode: number; mask: boolean; readOnly: boolean }) => Buffer[];
const frame = (wsModule as unknown as { Sender: { frame: FrameFn } }).Sender.frame;

interface CorkableSocket { cork(): void; uncork(): void; readonly writableLength: number }
interface WithSender { _sender: { sendFrame(list: Buffer[], cb?: () => void): void }; _socket: CorkableSocket | undefined }

/** One unmasked, final frame holding `payload` (text or binary), as a single buffer. */
export function frameOnce(payload: Buffer, binary: boolean): Buffer {
  const parts = frame(payload, { fin: true, rsv1: false, opcode: binary ? 2 : 1, mask: false, readOnly: true });
  return parts.length === 1 ? parts[0]! : Buffer.concat(parts);
}

/** Whether pre-framed bytes may go straight to this socket (no compression queue in ws). */
export function canWriteFrames(ws: WebSocket): boolean {
  return ws.extensions === '' && typeof (ws as unknown as Partial<WithSender>)._sender?.sendFrame === 'function';
}

/** Writes a frame made by frameOnce; the caller checked canWriteFrames and that ws is OPEN. */
export function writeFrame(ws: WebSocket, framed: Buffer): void {
  (ws as unknown as WithSender)._sender.sendFrame([framed]);
}

/**
 * Corks the socket until the current tick ends, so that a burst of frames to the same session
 * (a publisher's frames arrive and are routed in one tick; a client's pipelined requests are
 * answered in one tick) leaves in one writev instead of one syscall each. A lone frame still
 * leaves before the next I/O turn: this batches, it never delays. Once FLUSH_BYTES are held the
 * batch is written at once, so corking never holds back more than that: the kernel keeps
 * absorbing a burst as it would without it, and bufferedAmount (the slow-consumer measure)
 * only grows for a client that really reads too slowly.
 */
export function corkUntilTickEnd(ws: WebSocket): void {
  const sock = (ws as unknown as WithSender)._socket;
  if (!sock) return;
  if (corked.has(sock)) {
    if (sock.writableLength >= FLUSH_BYTES) {
      sock.uncork();
      sock.cork();
    }
    return;
  }
  sock.cork();
  corked.add(sock);
  if (!flushScheduled) {
    flushScheduled = true;
    process.nextTick(uncorkAll);
  }
}

const FLUSH_BYTES = 16 * 1024;
const corked = new Set<CorkableSocket>();
let flushScheduled = false;
function uncorkAll(): void {
  flushScheduled = false;
  // Each socket leaves the set before its uncork: should one throw, the rest stay listed and
  // the next cork schedules another flush, so no session is left corked.
  for (const sock of corked) {
    corked.delete(sock);
    sock.uncork();
  }
}

export { WebSocket };
