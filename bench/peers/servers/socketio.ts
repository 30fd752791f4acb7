// Baseline: Socket.IO as its users write it: echo with an acknowledgement, and a broadcast to
// every other socket (`socket.broadcast.emit`). WebSocket transport only, no compression.
import { createServer } from 'node:http';
import { Server } from 'socket.io';
import { serveStats } from './ipc.ts';

const http = createServer();
const io = new Server(http, { transports: ['websocket'], perMessageDeflate: false, serveClient: false });
io.on('connection', (socket) => {
  socket.on('echo', (data: string, ack: (d: string) => void) => ack(data));
  socket.on('B', (data: string) => socket.broadcast.emit('fan', data));
});
http.listen(0, '127.0.0.1', () => serveStats(`http://127.0.0.1:${(http.address() as { port: number }).port}`));
