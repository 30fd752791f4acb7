// Baseline: the thinnest echo and pre-framed broadcast server `ws` allows on the same Node, the
// floor of Node overhead. Any text frame is echoed back as-is, except frames starting with "B",
// which are framed once (one buffer) and the same bytes written to every other client
// with one write each.
import * as WS from 'ws';
import { WebSocketServer, WebSocket } from 'ws';
import { serveStats } from './ipc.ts';

// `Sender.frame` is ws's own frame encoder; @types/ws does not declare it.
const frame = (WS as unknown as { Sender: { frame(data: Buffer, opts: object): Buffer[] } }).Sender.frame;
type Raw = WebSocket & { _socket: { write(b: Buffer): boolean } };

const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false });
wss.on('connection', (ws) => {
  ws.on('message', (data: Buffer, isBinary) => {
    if (!isBinary && data[0] === 0x42 /* B */) {
      const framed = Buffer.concat(frame(data, { fin: true, rsv1: false, opcode: 1, mask: false, readOnly: true }));
      for (const c of wss.clients) if (c !== ws && c.readyState === WebSocket.OPEN) (c as Raw)._socket.write(framed);
      return;
    }
    ws.send(data, { binary: isBinary });
  });
});
wss.on('listening', () => serveStats(`ws://127.0.0.1:${(wss.address() as { port: number }).port}`));
