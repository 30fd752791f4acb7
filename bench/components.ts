// Benchmark: the echo component, both engines, measured in-process (no load generator competing
// for the cores):
//   - direct: the transpiled export called in a loop on this thread (the engine's per-call cost);
//   - pool ×1 / ×2: pool.call through worker threads (one instance each), many in flight; the
//     worker hop is what pool ×1 costs over direct, per message;
//   - gateway: published on the gateway's bus, answered on a subscribed reply subject (pool ×1).
// Bounded by count. Usage: node bench/components.ts [--messages N] [--cpu-prof DIR]
import { writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import os from 'node:os';
import { Session } from 'node:inspector/promises';
import { buildComponent, ROOT } from '../scripts/build-components.ts';
import { loadComponent } from '../src/components/loader.ts';
import { InstancePool } from '../src/components/pool.ts';
import { wasiImports } from '../src/components/wasi.ts';
import { Gateway } from '../src/gateway/gateway.ts';
import { loadConfig } from '../src/config/load.ts';
import { ok } from '../src/gateway/messaging.ts';
import type { LoadedComponent } from '../src/components/loader.ts';

const arg = (name: string) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? process.argv[i + 1] : undefined;
};
const N = Number(arg('--messages') ?? 20_000);
const PROF = arg('--cpu-prof');
const CACHE = join(ROOT, 'build/cache');
const body = new Uint8Array(16);
const msg = { subject: 'echo.b', body, replyTo: 'r' };
// CPU time (all threads of this process) per message: unlike wall time it does not count the time
// other processes hold the cores, so the worker hop is measured as CPU(pool ×1) − CPU(direct).
let lastCpuUs = 0;
const cpuPerMsg = (since: NodeJS.CpuUsage): number => {
  const d = process.cpuUsage(since);
  return (d.user + d.system) / N;
};

async function direct(c: LoadedComponent, engine: string): Promise<number> {
  const consumer = { publish() {}, async request() { throw { payload: 'unused' }; } };
  const inst = await c.instantiate({ ...wasiImports({ env: {}, preopens: {} }), 'wasmcloud:messaging/consumer': consumer, 'wasmcloud:messaging/consumer@0.2.0': consumer });
  const h = (inst['wasmcloud:messaging/handler@0.2.0'] ?? inst.handler) as { handleMessage(m: unknown): Promise<void> };
  for (let i = 0; i < 2000; i++) await h.handleMessage(msg);
  let session: Session | undefined;
  if (PROF) {
    session = new Session();
    session.connect();
    await session.post('Profiler.enable');
    await session.post('Profiler.start');
  }
  const t0 = performance.now();
  const cpu0 = process.cpuUsage();
  for (let i = 0; i < N; i++) await h.handleMessage(msg);
  const rate = N / ((performance.now() - t0) / 1000);
  lastCpuUs = cpuPerMsg(cpu0);
  if (session) {
    const { profile } = await session.post('Profiler.stop');
    mkdirSync(PROF!, { recursive: true });
    writeFileSync(join(PROF!, `direct-${engine}.cpuprofile`), JSON.stringify(profile));
    session.disconnect();
  }
  return rate;
}

async function throughPool(c: LoadedComponent, size: number): Promise<number> {
  let published = 0;
  const pool = new InstancePool(c, {
    publish: () => void published++,
    request: async () => ({ tag: 'err', val: 'unused' }),
    outbound: { open: 0, opened: 0, bytesIn: 0, bytesOut: 0 },
    grants: { env: {}, preopens: {} },
    policy: { allow: [], maxConnections: 1, receiveQueue: 1 },
    defaults: { timeoutMs: 1000, maxMessageBytes: 1 << 20 },
    onWorkerError: (m) => process.stderr.write(`worker: ${m}\n`),
  }, { size, timeoutMs: 30_000, maxQueue: N + 10_000 });
  await pool.warm();
  // Many in flight, as a busy gateway has: a window of 256 outstanding calls.
  const run = async (count: number) => {
    let sent = 0;
    const next = (): Promise<void> | undefined => (sent++ < count ? pool.call(msg).then(next) : undefined);
    await Promise.all(Array.from({ length: 256 }, next));
  };
  await run(2000);
  const t0 = performance.now();
  const cpu0 = process.cpuUsage();
  await run(N);
  const rate = N / ((performance.now() - t0) / 1000);
  lastCpuUs = cpuPerMsg(cpu0);
  await pool.close();
  if (published < N) throw new Error(`only ${published} replies`);
  return rate;
}

async function throughGateway(path: string): Promise<number> {
  const gw = await Gateway.start(loadConfig({ flags: { MODE: 'server', LISTEN: '127.0.0.1:0', COMPONENT_CACHE_DIR: CACHE }, env: {} }));
  await gw.addComponent({ id: 'echo', path, subscriptions: [{ subject: 'echo.>', queue: undefined }], poolSize: 1, timeoutMs: 30_000, maxQueue: N + 1000, env: {}, preopens: {} });
  let replies = 0;
  let target = 0;
  let done: () => void = () => {};
  gw.linkSource('sink', { handleMessage() { if (++replies === target) done(); return ok(undefined); } }, ['bench.reply']);
  const burst = async (count: number) => {
    replies = 0;
    target = count;
    const finished = new Promise<void>((r) => (done = r));
    for (let i = 0; i < count; i++) gw.publish({ subject: 'echo.b', body, replyTo: 'bench.reply' });
    await finished;
  };
  await burst(2000);
  const t0 = performance.now();
  await burst(N);
  const rate = N / ((performance.now() - t0) / 1000);
  await gw.shutdown();
  return rate;
}

const rows: Array<Record<string, string | number>> = [];
for (const engine of ['starlingmonkey', 'quickjs'] as const) {
  const { path } = await buildComponent(join(ROOT, 'examples/components/echo'), { engine });
  const c = await loadComponent(path, CACHE);
  process.stderr.write(`echo (${engine}): direct…\n`);
  const d = await direct(c, engine);
  const directCpu = lastCpuUs;
  process.stderr.write(`echo (${engine}): pool ×1…\n`);
  const p1 = await throughPool(c, 1);
  const poolCpu = lastCpuUs;
  process.stderr.write(`echo (${engine}): pool ×2…\n`);
  const p2 = await throughPool(c, 2);
  const pool2Cpu = lastCpuUs;
  process.stderr.write(`echo (${engine}): through the gateway…\n`);
  const g = await throughGateway(path);
  rows.push({
    engine,
    messages: N,
    direct_us_per_call: Math.round((1e6 / d) * 10) / 10,
    direct_msgs_per_s: Math.round(d),
    pool1_msgs_per_s: Math.round(p1),
    pool2_msgs_per_s: Math.round(p2),
    scaling_2_over_1: Math.round((p2 / p1) * 100) / 100,
    pool2_cpu_us_per_msg: Math.round(pool2Cpu * 10) / 10,
    direct_cpu_us_per_call: Math.round(directCpu * 10) / 10,
    pool1_cpu_us_per_msg: Math.round(poolCpu * 10) / 10,
    hop_cpu_us_per_msg: Math.round((poolCpu - directCpu) * 10) / 10,
    gateway_msgs_per_s: Math.round(g),
  });
}

const machine = `${os.cpus()[0]?.model ?? 'cpu'} ×${os.cpus().length}, Node ${process.versions.node}, load average ${os.loadavg()[0]!.toFixed(1)}`;
console.log(`\nComponent echo, 16-byte body (${machine})\n`);
console.log('| engine | direct µs/call (CPU) | direct calls/s | pool ×1 msgs/s | pool ×1 CPU µs/msg | worker hop CPU µs/msg | pool ×2 msgs/s | ×2 / ×1 | pool ×2 CPU µs/msg | gateway (×1) msgs/s |');
console.log('|---|---|---|---|---|---|---|---|---|---|');
for (const r of rows) console.log(`| ${r.engine} | ${r.direct_us_per_call} (${r.direct_cpu_us_per_call}) | ${r.direct_msgs_per_s} | ${r.pool1_msgs_per_s} | ${r.pool1_cpu_us_per_msg} | ${r.hop_cpu_us_per_msg} | ${r.pool2_msgs_per_s} | ${r.scaling_2_over_1}× | ${r.pool2_cpu_us_per_msg} | ${r.gateway_msgs_per_s} |`);
mkdirSync(join(ROOT, 'bench/results'), { recursive: true });
writeFileSync(join(ROOT, 'bench/results/components.json'), JSON.stringify({ date: new Date().toISOString(), machine, rows }, null, 2) + '\n');
