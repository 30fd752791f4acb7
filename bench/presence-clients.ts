// A load-generator child for the presence benchmark: holds `count` idle WebSocket sessions to
// one gateway (a process may hold at most 20,000 sockets here, so the benchmark spreads its
// sessions over several of these). Prints "ready <n>" once every welcome arrived; exits on
// SIGTERM or when its stdin closes.
//   node bench/presence-clients.ts <ws url> <count>
import WebSocket from 'ws';

const [url, countArg] = process.argv.slice(2);
const count = Number(countArg);
if (!url || !Number.isInteger(count) || count < 1) {
  console.error('usage: presence-clients.ts <ws url> <count>');
  process.exit(2);
}
const sockets: WebSocket[] = [];
const open = () => new Promise<void>((resolve, reject) => {
  const ws = new WebSocket(url, { perMessageDeflate: false });
  const t = setTimeout(() => reject(new Error('no welcome within 30 s')), 30_000);
  ws.once('error', (e) => { clearTimeout(t); reject(e); });
  ws.once('message', () => { clearTimeout(t); resolve(); });
  sockets.push(ws);
});
for (let i = 0; i < count; i += 250) await Promise.all(Array.from({ length: Math.min(250, count - i) }, open));
process.stdout.write(`ready ${sockets.length}\n`);
const quit = () => {
  for (const s of sockets) s.terminate();
  process.exit(0);
};
process.on('SIGTERM', quit);
process.stdin.on('end', quit);
process.stdin.resume();
