// Benchmark: cross-node vs same-node round trips (p50/p99) and throughput, broadcast
// deliveries/s with 2 nodes vs 1, presence at scale (sessions spread over three nodes, held by
// client processes of at most --presence-per-process sockets each), the cost of one presence
// update, and echo throughput across two nodes against one node (target ≥ 0.5×). Starts its own
// nats-server and wsbridge nodes as separate processes on loopback; the load generator is this
// process. Bounded by counts and deadlines.
//   node bench/cluster.ts [--round-trips N] [--sessions N] [--presence-sessions N]
//                         [--presence-per-process N] [--echo-messages N]
import { writeFileSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import os from 'node:os';
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import WebSocket from 'ws';
import { ROOT } from '../scripts/build-components.ts';
import { spawnCli } from '../test/helpers.ts';
import { startNats } from '../test/nats-helpers.ts';
import { sessionEntry } from '../src/cluster/presence.ts';
import { start as startTarget, pinGenerator, setPinning, isPinned } from './peers/harness.ts';
import { wsbridge as wsbridgeClient } from './peers/clients.ts';
import { echo as echoScenario } from './peers/scenarios.ts';

const arg = (name: string, def: number) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? Number(process.argv[i + 1]) : def;
};
const ROUND_TRIPS = arg('--round-trips', 5000);
const SESSIONS = arg('--sessions', 200);
const BROADCASTS = arg('--broadcasts', 200);
const PRESENCE_SESSIONS = arg('--presence-sessions', 50_000);
const PER_PROCESS = arg('--presence-per-process', 17_000);
const ECHO_MESSAGES = arg('--echo-messages', 20_000);

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

process.stderr.write(`presence with ${PRESENCE_SESSIONS} sessions over 3 nodes…\n`);
const presence = await presenceAtScale(PRESENCE_SESSIONS);
process.stderr.write('cost of one presence update…\n');
const update = await presenceUpdateCost();
process.stderr.write('echo, one node and two nodes…\n');
const echoes = await echoComparison();

const machine = `${os.cpus()[0]?.model ?? 'cpu'} ×${os.cpus().length}, Node ${process.versions.node}, nats-server 2.9`;
console.log(`\nCluster over NATS (${machine}); sequential requests, 16-byte bodies\n`);
console.log('| path | round trips/s | p50 | p99 |\n|---|---|---|---|');
console.log(`| same node | ${same.round_trips_per_s} | ${same.p50_ms} ms | ${same.p99_ms} ms |`);
console.log(`| across nodes | ${cross.round_trips_per_s} | ${cross.p50_ms} ms | ${cross.p99_ms} ms |`);
console.log(`\n| broadcast | sessions | deliveries/s |\n|---|---|---|`);
console.log(`| 1 node | ${b1.sessions} | ${b1.deliveries_per_s} |`);
console.log(`| 2 nodes | ${b2.sessions} | ${b2.deliveries_per_s} |`);
console.log(`\n| presence, ${presence.sessions} sessions over 3 nodes | |\n|---|---|`);
console.log(`| all sessions connected (client processes: ${presence.client_processes}) | ${presence.connect_s} s |`);
console.log(`| all listed by GET /api/sessions on one node | ${presence.listed_s} s after the last connected |`);
console.log(`| GET /api/sessions at ${presence.sessions} (p50 of 3) | ${presence.list_ms} ms, ${presence.list_mib} MiB |`);
console.log(`| send-to-session to another node's session (p50 / p99 of ${presence.sends}) | ${presence.send_p50_ms} / ${presence.send_p99_ms} ms, all ${presence.send_status} |`);
console.log(`| bucket wsbridge_sessions | ${presence.kv_entries} entries, ${presence.kv_bytes_per_entry} bytes each |`);
console.log(`| presence writes while connecting | ${presence.writes_per_s} /s (${presence.write_failures} failed) |`);
console.log(`| node RSS | ${presence.node_rss_mib.join(' / ')} MiB |`);
console.log(`\n| one presence update | bytes written | p50 latency (one at a time) | updates/s (256 in flight) |\n|---|---|---|---|`);
console.log(`| per-session entry (now) | ${update.entry_bytes} | ${update.entry_p50_ms} ms | ${update.entry_per_s} |`);
console.log(`| whole-node value at 2,000 sessions (before) | ${update.node_value_bytes} | ${update.node_value_p50_ms} ms | – |`);
console.log(`\n| echo 64 B (${echoes.clients} clients × window ${echoes.window}, TS handler) | msgs/s | p50 / p99 ms | server CPU µs/msg |\n|---|---|---|---|`);
console.log(`| one node | ${echoes.single.msgs_per_s} | ${echoes.single.p50_ms} / ${echoes.single.p99_ms} | ${echoes.single.cpu} |`);
console.log(`| two nodes over NATS (client on A, handler on B) | ${echoes.cluster.msgs_per_s} | ${echoes.cluster.p50_ms} / ${echoes.cluster.p99_ms} | ${echoes.cluster.cpu} |`);
const ratio = Math.round((echoes.cluster.msgs_per_s / echoes.single.msgs_per_s) * 100) / 100;
console.log(`\n- ${ratio >= 0.5 ? '✅' : '❌'} cluster echo ≥ 0.5× single-node echo: ${ratio}×${echoes.pinned ? ' (pinned: every server process on CPU 0)' : ''}`);
mkdirSync(join(ROOT, 'bench/results'), { recursive: true });
writeFileSync(join(ROOT, 'bench/results/cluster.json'), JSON.stringify({ date: new Date().toISOString(), machine, same, cross, broadcast: [b1, b2], presence, presence_update: update, echo: { ...echoes, ratio } }, null, 2) + '\n');

/** Sessions over three nodes, held by client processes; how presence copes. */
async function presenceAtScale(total: number) {
  const n = await startNats();
  const token = 'bench';
  const gws = await Promise.all([0, 1, 2].map(() => spawnCli(['serve', '--listen', '127.0.0.1:0', '--nats', n.url, '--admin-token', token], { LOG_LEVEL: 'error' })));
  const gwUrls = gws.map((g) => g.match![1]!);
  const http = (i: number) => gwUrls[i]!.replace('ws://', 'http://').replace(/\/ws$/, '');
  const api = async (i: number, path: string, init: RequestInit = {}) => fetch(http(i) + path, { ...init, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, signal: AbortSignal.timeout(120_000) });
  const clients: ChildProcess[] = [];
  try {
    // Sessions split evenly over the nodes; each node's share over as many processes as it takes.
    const t0 = performance.now();
    const starts: Array<Promise<void>> = [];
    for (let node = 0; node < 3; node++) {
      let left = Math.floor(total / 3) + (node < total % 3 ? 1 : 0);
      while (left > 0) {
        const count = Math.min(PER_PROCESS, left);
        left -= count;
        const c = spawn(process.execPath, [join(ROOT, 'bench/presence-clients.ts'), gwUrls[node]!, String(count)], { stdio: ['pipe', 'pipe', 'inherit'] });
        clients.push(c);
        starts.push(new Promise<void>((resolve, reject) => {
          let out = '';
          c.stdout!.on('data', (d: Buffer) => { out += d.toString(); if (out.includes('ready')) resolve(); });
          c.once('exit', (code) => reject(new Error(`a client process exited (${code}) before its sessions were open`)));
        }));
      }
    }
    await Promise.all(starts);
    const connected = performance.now();
    const writesAt = async () => (await Promise.all([0, 1, 2].map(async (i) => metric(await (await fetch(`${http(i)}/metrics`)).text(), 'wsbridge_presence_writes_total')))).reduce((a, b) => a + b, 0);
    const failuresAt = async () => (await Promise.all([0, 1, 2].map(async (i) => metric(await (await fetch(`${http(i)}/metrics`)).text(), 'wsbridge_presence_write_failures_total')))).reduce((a, b) => a + b, 0);
    let listed = 0;
    let sessions: Array<{ id: string; node: string }> = [];
    const deadline = Date.now() + 300_000;
    while (listed === 0) {
      const l = (await (await api(0, '/api/sessions')).json()) as { sessions: Array<{ id: string; node: string }>; partial: boolean };
      if (l.sessions.length >= total && !l.partial) {
        listed = performance.now();
        sessions = l.sessions;
      } else if (Date.now() > deadline) throw new Error(`only ${l.sessions.length} of ${total} sessions listed after 5 minutes`);
      else await new Promise((r) => setTimeout(r, 500)); // polling the cluster's state, bounded above
    }
    const writes = await writesAt();
    const listTimes: number[] = [];
    let bytes = 0;
    for (let i = 0; i < 3; i++) {
      const s0 = performance.now();
      const body = await (await api(0, '/api/sessions')).arrayBuffer();
      listTimes.push(performance.now() - s0);
      bytes = body.byteLength;
    }
    listTimes.sort((x, y) => x - y);
    // Send to sessions on the other nodes, from node 0.
    const self = ((await (await api(0, '/api/nodes')).json()) as { nodes: Array<{ node: string; listen: string }> }).nodes.find((x) => x.listen === gwUrls[0])!.node;
    const remote = sessions.filter((x) => x.node !== self);
    const sendLat: number[] = [];
    const statuses = new Set<number>();
    const SENDS = 200;
    for (let i = 0; i < SENDS; i++) {
      const target = remote[Math.floor(Math.random() * remote.length)]!;
      const s0 = performance.now();
      const r = await api(0, `/api/sessions/${target.id}/messages`, { method: 'POST', body: JSON.stringify({ subject: 'bench.direct', text: 'x' }) });
      await r.arrayBuffer();
      sendLat.push(performance.now() - s0);
      statuses.add(r.status);
    }
    sendLat.sort((x, y) => x - y);
    const { connect } = await import('@nats-io/transport-node');
    const { jetstreamManager } = await import('@nats-io/jetstream');
    const nc = await connect({ servers: n.url });
    const kv = (await (await jetstreamManager(nc)).streams.info('KV_wsbridge_sessions')).state;
    await nc.close();
    const rss = gws.map((g) => Math.round(Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${g.proc.pid}/status`, 'utf8'))![1]) / 1024));
    const ms = (x: number) => Math.round(x * 10) / 10;
    return {
      sessions: total,
      client_processes: clients.length,
      connect_s: Math.round((connected - t0) / 100) / 10,
      listed_s: Math.round((listed - connected) / 100) / 10,
      list_ms: ms(listTimes[1]!),
      list_mib: Math.round((bytes / 2 ** 20) * 10) / 10,
      sends: SENDS,
      send_p50_ms: ms(sendLat[Math.floor(SENDS / 2)]!),
      send_p99_ms: ms(sendLat[Math.floor(SENDS * 0.99)]!),
      send_status: [...statuses].join(','),
      kv_entries: kv.messages,
      kv_bytes_per_entry: Math.round(kv.bytes / Math.max(1, kv.messages)),
      writes_per_s: Math.round(writes / ((listed - t0) / 1000)),
      write_failures: await failuresAt(),
      node_rss_mib: rss,
    };
  } finally {
    for (const c of clients) c.kill('SIGTERM');
    await Promise.all(clients.map((c) => (c.exitCode !== null ? undefined : new Promise((r) => c.once('exit', r)))));
    for (const g of gws) g.proc.kill('SIGTERM');
    await Promise.all(gws.map((g) => g.exit));
    await n.stop();
  }
}

/** One presence update now (a session's own entry) against before (a node's whole value at 2,000 sessions). */
async function presenceUpdateCost() {
  const n = await startNats();
  const { connect } = await import('@nats-io/transport-node');
  const { jetstream } = await import('@nats-io/jetstream');
  const { Kvm } = await import('@nats-io/kv');
  const nc = await connect({ servers: n.url });
  try {
    const kv = await new Kvm(jetstream(nc)).create('bench_presence', { history: 1 });
    const info = (i: number) => ({ id: `s${i}`.padEnd(22, 'x'), reply_to: `_WSB.S.node1234567.${'t'.repeat(22)}`, remote_address: '127.0.0.1:54321', connected_at: new Date().toISOString(), protocol: 'json', subscriptions: ['chat.lobby', 'news.>'], counters: { messagesIn: 12, messagesOut: 34, bytesIn: 567, bytesOut: 890, dropped: 0, errors: 0 }, queued_bytes: 0, transport: 'websocket' as const });
    const entry = sessionEntry(info(1), 'node1234567');
    const lat: number[] = [];
    for (let i = 0; i < 1000; i++) {
      const s0 = performance.now();
      await kv.put(`s${i}`, sessionEntry(info(i), 'node1234567'));
      lat.push(performance.now() - s0);
    }
    lat.sort((x, y) => x - y);
    const t0 = performance.now();
    let next = 0;
    const PUTS = 10_000;
    await Promise.all(Array.from({ length: 256 }, async () => {
      while (next < PUTS) {
        const i = next++;
        await kv.put(`c${i}`, sessionEntry(info(i), 'node1234567'));
      }
    }));
    const perS = Math.round(PUTS / ((performance.now() - t0) / 1000));
    // The design this replaced: one value per node listing all its sessions, rewritten on every change.
    const whole = new TextEncoder().encode(JSON.stringify({ node: 'node1234567', at: Date.now(), sessions: Array.from({ length: 2000 }, (_, i) => info(i)) }));
    const wlat: number[] = [];
    for (let i = 0; i < 50; i++) {
      const s0 = performance.now();
      await kv.put('node1234567', whole);
      wlat.push(performance.now() - s0);
    }
    wlat.sort((x, y) => x - y);
    const ms = (x: number) => Math.round(x * 100) / 100;
    return { entry_bytes: entry.length, entry_p50_ms: ms(lat[500]!), entry_per_s: perS, node_value_bytes: whole.length, node_value_p50_ms: ms(wlat[25]!) };
  } finally {
    await nc.close();
    await n.stop();
  }
}

/** Echo through a TypeScript handler: on one node, and across two nodes over NATS (peers harness). */
async function echoComparison() {
  setPinning(true);
  pinGenerator();
  const o = { clients: 16, window: 8, messages: ECHO_MESSAGES, size: 64 };
  const measure = async (id: 'wsbridge' | 'wsbridge-cluster', label: string) => {
    const sut = await startTarget(id);
    try {
      const r = await echoScenario(wsbridgeClient, sut, { ...o, label });
      return { msgs_per_s: r.msgs_per_s, p50_ms: Math.round(r.p50_us / 10) / 100, p99_ms: Math.round(r.p99_us / 10) / 100, cpu: r.server_cpu_us_per_msg };
    } finally {
      await sut.stop();
    }
  };
  const single = await measure('wsbridge', 'echo, one node');
  const cluster = await measure('wsbridge-cluster', 'echo, two nodes');
  return { clients: o.clients, window: o.window, messages: o.messages, pinned: isPinned(), single, cluster };
}

function metric(text: string, name: string): number {
  return Number(new RegExp(`^${name} (\\d+)`, 'm').exec(text)?.[1] ?? 0);
}
