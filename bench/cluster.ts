// Benchmark: cross-node vs same-node round trips (p50/p99) and throughput, and broadcast
// deliveries/s with 2 nodes vs 1. Starts its own nats-server and wsbridge nodes as separate
// processes on loopback; the load generator is this process. Bounded by counts.
//   node bench/cluster.ts [--round-trips N] [--sessions N]
import { writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import os from 'node:os';
import WebSocket from 'ws';
import { ROOT } from '../scripts/build-components.ts';
import { spawnCli } from '../test/helpers.ts';
import { startNats } from '../test/nats-helpers.ts';

const arg = (name: string, def: number) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? Number(process.argv[i + 1]) : def;
};
const ROUND_TRIPS = arg('--round-trips', 5000);
const SESSIONS = arg('--sessions', 200);
const BROADCASTS = arg('--broadcasts', 200);

const nats = await startNats();
const nodes = await Promise.all([0, 1].map(() => spawnCli(['serve', '--listen', '127.0.0.1:0', '--nats', nats.url, '--admin-token', 'bench'], { LOG_LEVEL: 'error', SLOW_CONSUMER_POLICY: 'drop', MAX_BUFFERED_BYTES: String(64 << 20) })));
const urls = nodes.map((n) => n.match![1]!);

function open(url: string): Promise<{ ws: WebSocket; replyTo: string }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url);
    ws.once('error', reject);
    ws.once('message', (d) => resolve({ ws, replyTo: (JSON.parse(d.toString()) as { reply_to: string }).reply_to }));
  });
}

/** Echo responder on `subject`; requester sends ROUND_TRIPS requests one after another. */
async function roundTrips(requesterUrl: string, responderUrl: string, subject: string) {
  const responder = await open(responderUrl);
  responder.ws.send(JSON.stringify({ op: 'sub', subject, id: 's' }));
  responder.ws.on('message', (d) => {
    const f = JSON.parse(d.toString()) as { subject?: string; reply_to?: string; body?: string };
    if (f.subject === subject) responder.ws.send(JSON.stringify({ subject: f.reply_to, body: f.body }));
  });
  const requester = await open(requesterUrl);
  const pending = new Map<string, (f: Record<string, unknown>) => void>();
  requester.ws.on('message', (d) => {
    const f = JSON.parse(d.toString()) as Record<string, unknown>;
    if (typeof f.id === 'string') pending.get(f.id)?.(f);
  });
  const req = (id: string) => new Promise<Record<string, unknown>>((resolve) => {
    pending.set(id, resolve);
    requester.ws.send(JSON.stringify({ op: 'req', id, subject, body: 'AAAAAAAAAAAAAAAAAAAAAA==', timeout_ms: 2000 }));
  });
  // Warm up until the responder's interest has reached every node.
  for (let i = 0; ; i++) {
    if ((await req(`w${i}`)).op === 'res') break;
    if (i > 200) throw new Error('responder never became reachable');
  }
  const lat: number[] = [];
  const t0 = performance.now();
  for (let i = 0; i < ROUND_TRIPS; i++) {
    const s = performance.now();
    const r = await req(`r${i}`);
    if (r.op !== 'res') throw new Error(`request failed: ${JSON.stringify(r)}`);
    lat.push(performance.now() - s);
  }
  const secs = (performance.now() - t0) / 1000;
  lat.sort((x, y) => x - y);
  responder.ws.close();
  requester.ws.close();
  const pct = (p: number) => Math.round(lat[Math.min(lat.length - 1, Math.floor(lat.length * p))]! * 1000) / 1000;
  return { round_trips_per_s: Math.round(ROUND_TRIPS / secs), p50_ms: pct(0.5), p99_ms: pct(0.99) };
}

async function broadcast(nodeUrls: string[]) {
  const clients = await Promise.all(Array.from({ length: SESSIONS }, (_, i) => open(nodeUrls[i % nodeUrls.length]!)));
  let delivered = 0;
  let done: () => void = () => {};
  const target = SESSIONS * BROADCASTS;
  const finished = new Promise<void>((r) => (done = r));
  for (const c of clients) c.ws.on('message', () => { if (++delivered === target) done(); });
  const api = nodeUrls[0]!.replace('ws://', 'http://').replace(/\/ws$/, '');
  const t0 = performance.now();
  for (let i = 0; i < BROADCASTS; i++) {
    await fetch(`${api}/api/broadcast`, { method: 'POST', headers: { authorization: 'Bearer bench' }, body: JSON.stringify({ subject: 'bench.all', body: 'AAAAAAAAAAAAAAAAAAAAAA==' }) });
  }
  await finished;
  const secs = (performance.now() - t0) / 1000;
  for (const c of clients) c.ws.close();
  return { nodes: nodeUrls.length, sessions: SESSIONS, broadcasts: BROADCASTS, deliveries_per_s: Math.round(target / secs) };
}

process.stderr.write('same-node round trips…\n');
const same = await roundTrips(urls[0]!, urls[0]!, 'bench.same');
process.stderr.write('cross-node round trips…\n');
const cross = await roundTrips(urls[0]!, urls[1]!, 'bench.cross');
process.stderr.write('broadcast, 1 node…\n');
const b1 = await broadcast([urls[0]!]);
process.stderr.write('broadcast, 2 nodes…\n');
const b2 = await broadcast(urls);

for (const n of nodes) n.proc.kill('SIGTERM');
await Promise.all(nodes.map((n) => n.exit));
await nats.stop();

const machine = `${os.cpus()[0]?.model ?? 'cpu'} ×${os.cpus().length}, Node ${process.versions.node}, nats-server 2.9`;
console.log(`\nCluster over NATS (${machine}); sequential requests, 16-byte bodies\n`);
console.log('| path | round trips/s | p50 | p99 |\n|---|---|---|---|');
console.log(`| same node | ${same.round_trips_per_s} | ${same.p50_ms} ms | ${same.p99_ms} ms |`);
console.log(`| across nodes | ${cross.round_trips_per_s} | ${cross.p50_ms} ms | ${cross.p99_ms} ms |`);
console.log(`\n| broadcast | sessions | deliveries/s |\n|---|---|---|`);
console.log(`| 1 node | ${b1.sessions} | ${b1.deliveries_per_s} |`);
console.log(`| 2 nodes | ${b2.sessions} | ${b2.deliveries_per_s} |`);
mkdirSync(join(ROOT, 'bench/results'), { recursive: true });
writeFileSync(join(ROOT, 'bench/results/cluster.json'), JSON.stringify({ date: new Date().toISOString(), machine, same, cross, broadcast: [b1, b2] }, null, 2) + '\n');
