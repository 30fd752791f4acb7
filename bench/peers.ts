// Side-by-side benchmark: wsbridge against raw `ws` (with and without per-tick corking), Bun's
// built-in WebSocket server (uWebSockets), Socket.IO and nats-server's WebSocket listener,
// measured in one run on one machine. Every system runs in its own processes; this
// process is the load generator. Loopback only; every phase bounded by counts and a deadline.
//   node bench/peers.ts [--smoke] [--out DIR] [--only id,id] [--clients C] [--window W]
//                       [--messages M] [--fanout N,N] [--idle N] [--paced-seconds S] [--cpu-prof DIR]
//                       [--no-pin] [--heap-snapshot DIR]
// Writes peers.json, peers.md and four SVG plots to DIR (default bench/results; --smoke writes
// only with --out). --cpu-prof DIR: each Node server process writes a V8 CPU profile into DIR
// (open in Chrome DevTools). --heap-snapshot DIR: each Node server writes a V8 heap snapshot into
// DIR with the idle sessions open (after the memory reading). See docs/benchmarks.md for what each figure means.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import os from 'node:os';
import { execFileSync } from 'node:child_process';
import { buildComponent, ROOT } from '../scripts/build-components.ts';
import { natsWs, rawWs, socketIo, wsbridge, wsbridgeMsgpack, wsbridgeReq, type Target } from './peers/clients.ts';
import { bunVersion, isPinned, pinGenerator, profileServersInto, snapshotServersInto, progress, progressDone, setPinning, start, type TargetId } from './peers/harness.ts';
import { echo, fanout, idle, pacedEcho, type EchoResult, type FanoutResult, type IdleResult } from './peers/scenarios.ts';
import { report, type Results } from './peers/report.ts';

const argv = process.argv;
const opt = (name: string) => { const i = argv.indexOf(name); return i > 0 ? argv[i + 1] : undefined; };
const num = (name: string, def: number) => { const v = opt(name); return v === undefined ? def : Number(v); };
const SMOKE = argv.includes('--smoke');
const cfg = {
  clients: num('--clients', SMOKE ? 2 : 16),
  window: num('--window', SMOKE ? 2 : 8),
  messages: num('--messages', SMOKE ? 200 : 20_000),
  pacedSeconds: num('--paced-seconds', SMOKE ? 0.3 : 3),
  fanout: (opt('--fanout') ?? (SMOKE ? '20' : '1000,10000')).split(',').map(Number),
  idle: num('--idle', SMOKE ? 50 : 10_000),
  latencyRounds: SMOKE ? 2 : 10,
};
/** Fan-out messages per burst: about 500k deliveries whatever N is (fewer in a smoke run). */
const fanMessages = (n: number) => (SMOKE ? 5 : Math.max(10, Math.round(500_000 / n)));
const out = opt('--out') ?? (SMOKE ? undefined : join(ROOT, 'bench/results'));

interface Plan { id: TargetId; name: string; client: Target; full: boolean; echo4k?: boolean; component?: 'starlingmonkey' | 'quickjs' }
const plans: Plan[] = [
  { id: 'raw-ws', name: 'raw ws', client: rawWs, full: true },
  // Same wire behaviour as raw ws (echo; "B…" broadcast to everyone else), so the same adapter.
  { id: 'raw-ws-corked', name: 'raw ws, corked', client: rawWs, full: true },
  { id: 'bun', name: 'Bun', client: rawWs, full: true },
  { id: 'wsbridge', name: 'wsbridge', client: wsbridge, full: true },
  { id: 'socketio', name: 'Socket.IO', client: socketIo, full: true },
  { id: 'nats', name: 'NATS (WebSocket)', client: natsWs, full: true },
  { id: 'wsbridge', name: 'wsbridge, req/res', client: wsbridgeReq, full: false },
  { id: 'wsbridge', name: 'wsbridge, MessagePack protocol', client: wsbridgeMsgpack, full: false, echo4k: true },
  { id: 'wsbridge-component', name: 'wsbridge + echo component (StarlingMonkey)', client: wsbridge, full: false, component: 'starlingmonkey' },
  { id: 'wsbridge-component', name: 'wsbridge + echo component (QuickJS)', client: wsbridge, full: false, component: 'quickjs' },
  { id: 'wsbridge-cluster', name: 'wsbridge, 2 nodes over NATS', client: wsbridge, full: false },
];
const only = opt('--only')?.split(',');
const profiles = opt('--cpu-prof');
if (profiles) profileServersInto(resolve(profiles));
const snapshots = opt('--heap-snapshot');
if (snapshots) {
  mkdirSync(resolve(snapshots), { recursive: true });
  snapshotServersInto(resolve(snapshots));
}
setPinning(!argv.includes('--no-pin'));
pinGenerator();
const bun = bunVersion();
const results: Results = { date: new Date().toISOString(), machine: machine(), config: { ...cfg, pinned: isPinned() }, targets: {} };

for (const p of plans) {
  if (only && !only.includes(p.id)) continue;
  if (p.id === 'bun' && 'missing' in bun) {
    (results.skipped ??= {})[p.name] = bun.missing;
    console.error(`Bun skipped: ${bun.missing}`);
    continue;
  }
  const componentPath = p.component ? (await buildComponent(join(ROOT, 'examples/components/echo'), { engine: p.component })).path : undefined;
  const sut = await start(p.id, componentPath);
  const label = (s: string) => `${p.name} · ${s}`;
  const r: Results['targets'][string] = {};
  try {
    // Idle first, on a fresh server, so its memory baseline is clean.
    if (p.full) r.idle = await idle(p.client, sut, { sessions: cfg.idle, label: label(`idle ${cfg.idle}`) }) satisfies IdleResult;
    const messages = p.component === 'starlingmonkey' ? Math.min(cfg.messages, 5000) : cfg.messages;
    r.echo_64 = await echo(p.client, sut, { clients: cfg.clients, window: cfg.window, messages, size: 64, label: label('echo 64 B') }) satisfies EchoResult;
    if (p.full || p.echo4k) r.echo_4k = await echo(p.client, sut, { clients: cfg.clients, window: cfg.window, messages: Math.ceil(messages / 2), size: 4096, label: label('echo 4 KiB') });
    const rate = Math.max(10, Math.round(r.echo_64.msgs_per_s / 2));
    r.paced_64 = await pacedEcho(p.client, sut, { clients: cfg.clients, rate, seconds: cfg.pacedSeconds, size: 64, label: label('echo 64 B at half load') });
    if (p.full) {
      r.fanout = [];
      for (const n of cfg.fanout) r.fanout.push(await fanout(p.client, sut, { subscribers: n, messages: fanMessages(n), latencyRounds: cfg.latencyRounds, label: label(`fan-out ${n}`) }) satisfies FanoutResult);
    }
  } finally {
    await sut.stop();
  }
  results.targets[p.name] = r;
  progress(`${p.name}: done`, true);
}
progressDone();

const { markdown, files } = report(results);
console.log(markdown);
if (out) {
  const dir = resolve(out);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'peers.json'), JSON.stringify(results, null, 2) + '\n');
  writeFileSync(join(dir, 'peers.md'), markdown + '\n');
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
  console.error(`written to ${dir}`);
}

function machine(): Results['machine'] {
  const cpus = os.cpus();
  return { cpu: `${cpus[0]?.model ?? 'unknown'} × ${cpus.length}`, memory_gib: Math.round(os.totalmem() / 2 ** 30), os: `${os.type()} ${os.release()}`, node: process.versions.node, versions: versions() };
}

function versions(): Record<string, string> {
  const v: Record<string, string> = {};
  for (const pkg of ['ws', 'socket.io', 'socket.io-client', '@nats-io/nats-core', 'hdr-histogram-js']) {
    try { v[pkg] = (JSON.parse(readText(join(ROOT, 'node_modules', pkg, 'package.json'))) as { version: string }).version; } catch { /* not installed */ }
  }
  if ('version' in bun) v.bun = bun.version;
  try { v['nats-server'] = execFileSync('nats-server', ['--version'], { encoding: 'utf8' }).trim().replace(/^nats-server: v?/, ''); } catch { /* not installed */ }
  v['wsbridge'] = (JSON.parse(readText(join(ROOT, 'package.json'))) as { version: string }).version;
  return v;
}
function readText(path: string): string { return readFileSync(path, 'utf8'); }
