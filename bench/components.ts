// Benchmark: messages per second through the echo component, and the host's overhead against
// calling the transpiled export directly in a loop. Runs in-process on loopback-free paths;
// bounded by count. Usage: node bench/components.ts [--messages N]
import { writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import os from 'node:os';
import { buildComponent, ROOT } from '../scripts/build-components.ts';
import { loadComponent } from '../src/components/loader.ts';
import { Gateway } from '../src/gateway/gateway.ts';
import { loadConfig } from '../src/config/load.ts';
import { ok } from '../src/gateway/messaging.ts';

const argN = process.argv.indexOf('--messages');
const N = argN > 0 ? Number(process.argv[argN + 1]) : 20_000;
const CACHE = join(ROOT, 'build/cache');
const body = new Uint8Array(16);

async function direct(path: string): Promise<number> {
  const c = await loadComponent(path, CACHE);
  const consumer = { publish() {}, async request() { throw { payload: 'unused' }; } };
  const inst = await c.instantiate({ 'wasmcloud:messaging/consumer': consumer, 'wasmcloud:messaging/consumer@0.2.0': consumer });
  const h = inst.handler as { handleMessage(m: unknown): Promise<void> };
  for (let i = 0; i < 500; i++) await h.handleMessage({ subject: 'echo.b', body, replyTo: 'r' });
  const t0 = performance.now();
  for (let i = 0; i < N; i++) await h.handleMessage({ subject: 'echo.b', body, replyTo: 'r' });
  return N / ((performance.now() - t0) / 1000);
}

async function throughGateway(path: string, poolSize: number): Promise<number> {
  const gw = await Gateway.start(loadConfig({ flags: { MODE: 'server', LISTEN: '127.0.0.1:0', COMPONENT_CACHE_DIR: CACHE }, env: {} }));
  await gw.addComponent({ id: 'echo', path, subscriptions: [{ subject: 'echo.>', queue: undefined }], poolSize, timeoutMs: 30_000, maxQueue: N + 1000, env: {}, preopens: {} });
  let replies = 0;
  let done: () => void = () => {};
  gw.linkSource('sink', { handleMessage() { if (++replies === target) done(); return ok(undefined); } }, ['bench.reply']);
  let target = 500;
  let finished = new Promise<void>((r) => (done = r));
  for (let i = 0; i < 500; i++) gw.publish({ subject: 'echo.b', body, replyTo: 'bench.reply' });
  await finished;
  replies = 0;
  target = N;
  finished = new Promise<void>((r) => (done = r));
  const t0 = performance.now();
  for (let i = 0; i < N; i++) gw.publish({ subject: 'echo.b', body, replyTo: 'bench.reply' });
  await finished;
  const rate = N / ((performance.now() - t0) / 1000);
  await gw.shutdown();
  return rate;
}

const rows: Array<Record<string, string | number>> = [];
for (const engine of ['starlingmonkey', 'quickjs'] as const) {
  const { path } = await buildComponent(join(ROOT, 'examples/components/echo'), { engine });
  process.stderr.write(`echo (${engine}): direct…\n`);
  const d = await direct(path);
  process.stderr.write(`echo (${engine}): through the gateway…\n`);
  const g = await throughGateway(path, 1);
  rows.push({ engine, messages: N, direct_msgs_per_s: Math.round(d), gateway_msgs_per_s: Math.round(g), host_overhead_pct: Math.round((1 - g / d) * 1000) / 10 });
}

const machine = `${os.cpus()[0]?.model ?? 'cpu'} ×${os.cpus().length}, Node ${process.versions.node}`;
console.log(`\nComponent echo, 16-byte body, one instance (${machine})\n`);
console.log('| engine | direct export calls/s | through the gateway msgs/s | host overhead |');
console.log('|---|---|---|---|');
for (const r of rows) console.log(`| ${r.engine} | ${r.direct_msgs_per_s} | ${r.gateway_msgs_per_s} | ${r.host_overhead_pct}% |`);
mkdirSync(join(ROOT, 'bench/results'), { recursive: true });
writeFileSync(join(ROOT, 'bench/results/components.json'), JSON.stringify({ date: new Date().toISOString(), machine, rows }, null, 2) + '\n');
