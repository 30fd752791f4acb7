// Baseline: raw-ws.ts with the write batching wsbridge does, the honest Node floor for fan-out.
// Every socket written to is corked until the end of the tick (process.nextTick), so the frames
// a client gets in one tick (a publisher's back-to-back broadcasts arrive and are relayed in one
// read; pipelined echoes are answered in one read) leave in one writev; past 16 KiB held for one
// socket the batch is written at once. Broadcasts are framed once, the same buffer written to
// every other client. No protocol, no subjects, no bookkeeping: what is left of wsbridge's
// fan-out cost above this is the gateway's own.
import * as WS from 'ws';
import { WebSocketServer, WebSocket } from 'ws';
import type { Socket } from 'node:net';
import { serveStats } from './ipc.ts';

// `Sender.frame` is ws's own frame encoder; @types/ws does not declare it.
const frame = (WS as unknown as { Sender: { frame(data: Buffer, opts: object): Buffer[] } }).Sender.frame;
type Raw = WebSocket & { _socket: Socket };

const FLUSH_BYTES = 16 * 1024;
/** Sockets corked in this tick → their writableLength when corked. */
const corked = new Map<Socket, number>();
let flushScheduled = false;
function flush(): void {
  flushScheduled = false;
  for (const s of corked.keys()) s.uncork();
  corked.clear();
}
function cork(s: Socket): void {
  const before = corked.get(s);
  if (before === undefined) {
    corked.set(s, s.writableLength);
    s.cork();
    if (!flushScheduled) {
      flushScheduled = true;
      process.nextTick(flush);
    }
  } else if (s.writableLength - before >= FLUSH_BYTES) {
    s.uncork();
    corked.set(s, s.writableLength);
    s.cork();
  }
}

const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false });
wss.on('connection', (ws) => {
  ws.on('message', (data: Buffer, isBinary) => {
    if (!isBinary && data[0] === 0x42 /* B */) {
      const framed = Buffer.concat(frame(data, { fin: true, rsv1: false, opcode: 1, mask: false, readOnly: true }));
      for (const c of wss.clients) {
        if (c === ws || c.readyState !== WebSocket.OPEN) continue;
        const s = (c as Raw)._socket;
        cork(s);
        s.write(framed);
      }
      return;
    }
    cork((ws as Raw)._socket);
    ws.send(data, { binary: isBinary });
  });
});
wss.on('listening', () => serveStats(`ws://127.0.0.1:${(wss.address() as { port: number }).port}`));
