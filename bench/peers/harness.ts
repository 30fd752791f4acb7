// Process plumbing for the peers benchmark: starting each system under test in its own
// processes, reading their CPU and memory, a progress line, and bounded waiting.
import { execFileSync, spawn } from 'node:child_process';
import os from 'node:os';
import type { ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT } from '../../scripts/build-components.ts';
import { freePort, startNats } from '../../test/nats-helpers.ts';

export interface Stats {
  rss: number;
  heapUsed: number;
  /** User + system CPU time, µs. */
  cpuUs: number;
  /** Of cpuUs, in the kernel (for a server that writes to sockets: mostly sending). */
  sysUs: number;
  /** Bytes the process handed to write syscalls (/proc/<pid>/io wchar; sockets included), 0 if unknown. */
  writtenBytes: number;
}

/** A running system under test: where clients connect, and its processes' resource use. */
export interface Running {
  url: string;
  /** CPU time of all its processes; with `gc`, memory after a full GC of the Node ones. */
  stats(gc?: boolean): Promise<Stats>;
  /** With --heap-snapshot: writes a heap snapshot of each of its Node processes, named `name`. */
  heapSnapshot(name: string): Promise<void>;
  stop(): Promise<void>;
}

interface Proc { stats(gc: boolean): Promise<Stats>; heapSnapshot?(file: string): Promise<void>; stop(): Promise<void> }

/**
 * CPU pinning: every process of the system under test on CPU 0, the load generator on the others,
 * so each system gets the same one core whatever its threading (nats-server would otherwise take
 * every core) and the generator does not steal from it. Off on a 1-CPU machine or with --no-pin.
 */
let pinning = os.cpus().length >= 2;
export function setPinning(on: boolean): void {
  pinning = on && os.cpus().length >= 2;
}
export function isPinned(): boolean {
  return pinning;
}
export function pinGenerator(): void {
  if (pinning) taskset(process.pid, `1-${os.cpus().length - 1}`);
}
function pinServer(pid: number): void {
  if (pinning) taskset(pid, '0');
}
function taskset(pid: number, cpus: string): void {
  try {
    execFileSync('taskset', ['-a', '-p', '-c', cpus, String(pid)], { stdio: 'ignore' });
  } catch {
    pinning = false; // no taskset here: run unpinned rather than fail
  }
}

let profileDir: string | undefined;
let snapshotDir: string | undefined;
/** Makes the idle scenario write a V8 heap snapshot of every Node server into `dir`, sessions open. */
export function snapshotServersInto(dir: string): void {
  snapshotDir = dir;
}
/** Makes every Node server started from now on write a CPU profile (`--cpu-prof`) into `dir`. */
export function profileServersInto(dir: string): void {
  profileDir = dir;
}

/** A Node server script from bench/peers/servers, ready when it reports its URL over IPC. */
export function nodeServer(script: string, args: string[] = []): Promise<Proc & { url: string }> {
  // With a profile directory, every server process writes a V8 CPU profile there when it stops.
  const prof = profileDir ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`, `--cpu-prof-name=${script.replace('.ts', '')}-${Date.now()}.cpuprofile`] : [];
  return serverProcess(script, process.execPath, ['--expose-gc', ...prof, join(ROOT, 'bench/peers/servers', script), ...args]);
}

/** The `bun` binary of the `bun` devDependency (its postinstall puts the platform build there). */
export const BUN = join(ROOT, 'node_modules/bun/bin/bun.exe');

/**
 * Whether Bun can run here, and if not why (the `bun` package's platform binary is missing, or
 * was installed with --ignore-scripts, which leaves its placeholder): the benchmark then runs
 * without it and says so in the report.
 */
export function bunVersion(): { version: string } | { missing: string } {
  try {
    return { version: execFileSync(BUN, ['--version'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 30_000 }).trim() };
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    return { missing: `${BUN} does not run (${(e.stderr || e.message).trim().split('\n')[0]}); reinstall with scripts enabled: npm ci` };
  }
}

/** A server script from bench/peers/servers run by Bun (Bun speaks Node's IPC channel). */
function bunServer(script: string): Promise<Proc & { url: string }> {
  return serverProcess(script, BUN, [join(ROOT, 'bench/peers/servers', script)]);
}

function serverProcess(script: string, command: string, args: string[]): Promise<Proc & { url: string }> {
  const proc = spawn(command, args, { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], cwd: ROOT });
  return new Promise((resolve, reject) => {
    const onExit = (code: number | null) => reject(new Error(`${script} exited (${code}) before it was ready`));
    proc.once('exit', onExit);
    proc.once('error', reject);
    proc.once('message', (m: { ready?: string }) => {
      proc.off('exit', onExit);
      pinServer(proc.pid!);
      resolve({
        url: m.ready!,
        stats: (gc) => new Promise((res) => {
          proc.once('message', (r: { stats: Stats }) => res({ ...r.stats, writtenBytes: writtenBytes(proc.pid!) }));
          proc.send(gc ? 'stats-gc' : 'stats');
        }),
        heapSnapshot: (file) => new Promise((res) => {
          proc.once('message', () => res());
          proc.send({ heapSnapshot: file });
        }),
        stop: () => stopProc(proc),
      });
    });
  });
}

function stopProc(proc: ChildProcess): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return Promise.resolve();
  return new Promise((r) => { proc.once('exit', () => r()); proc.kill('SIGTERM'); });
}

/** Resource use of a non-Node process (nats-server) from /proc. */
function procStats(pid: number): Stats {
  const rss = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) * 1024;
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  const ticks = Number(f[11]) + Number(f[12]); // utime + stime, in USER_HZ (100/s on Linux)
  return { rss, heapUsed: 0, cpuUs: ticks * 10_000, sysUs: Number(f[12]) * 10_000, writtenBytes: writtenBytes(pid) };
}

/** Bytes `pid` passed to write/writev/send so far (Linux /proc/<pid>/io), 0 where unreadable. */
function writtenBytes(pid: number): number {
  try {
    return Number(/^wchar: (\d+)$/m.exec(readFileSync(`/proc/${pid}/io`, 'utf8'))?.[1] ?? 0);
  } catch {
    return 0;
  }
}

function combine(url: string, procs: Proc[]): Running {
  return {
    url,
    async stats(gc = false) {
      const all = await Promise.all(procs.map((p) => p.stats(gc)));
      return all.reduce((a, s) => ({ rss: a.rss + s.rss, heapUsed: a.heapUsed + s.heapUsed, cpuUs: a.cpuUs + s.cpuUs, sysUs: a.sysUs + s.sysUs, writtenBytes: a.writtenBytes + s.writtenBytes }), { rss: 0, heapUsed: 0, cpuUs: 0, sysUs: 0, writtenBytes: 0 });
    },
    async heapSnapshot(name) {
      if (!snapshotDir) return;
      let i = 0;
      for (const p of procs) if (p.heapSnapshot) await p.heapSnapshot(join(snapshotDir, `${name}-${i++}.heapsnapshot`));
    },
    async stop() { for (const p of procs.reverse()) await p.stop(); },
  };
}

/** nats-server with its WebSocket listener; the `first` process is the one whose memory matters. */
async function natsServer(websocket: boolean): Promise<Proc & { url: string; wsUrl: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'wsbridge-bench-'));
  const wsPort = await freePort();
  const conf = join(dir, 'nats.conf');
  writeFileSync(conf, websocket ? `websocket {\n  listen: "127.0.0.1:${wsPort}"\n  no_tls: true\n}\n` : '');
  const n = await startNats(undefined, dir, ['-c', conf]);
  pinServer(n.proc.pid!);
  return { url: n.url, wsUrl: `ws://127.0.0.1:${wsPort}`, stats: async () => procStats(n.proc.pid!), stop: () => n.stop() };
}

export type TargetId = 'raw-ws' | 'raw-ws-corked' | 'bun' | 'socketio' | 'nats' | 'wsbridge' | 'wsbridge-component' | 'wsbridge-cluster';

export async function start(id: TargetId, componentPath?: string): Promise<Running> {
  switch (id) {
    case 'raw-ws': { const s = await nodeServer('raw-ws.ts'); return combine(s.url, [s]); }
    case 'raw-ws-corked': { const s = await nodeServer('raw-ws-corked.ts'); return combine(s.url, [s]); }
    case 'bun': { const s = await bunServer('bun.ts'); return combine(s.url, [s]); }
    case 'socketio': { const s = await nodeServer('socketio.ts'); return combine(s.url, [s]); }
    case 'wsbridge': { const s = await nodeServer('wsbridge.ts'); return combine(s.url, [s]); }
    case 'wsbridge-component': { const s = await nodeServer('wsbridge.ts', ['--echo', `component:${componentPath}`]); return combine(s.url, [s]); }
    case 'nats': {
      const n = await natsServer(true);
      const responder = await nodeServer('nats-responder.ts', [n.url]);
      return combine(n.wsUrl, [n, responder]);
    }
    case 'wsbridge-cluster': {
      // Clients on node A; the echo handler only on node B; NATS between them.
      const n = await natsServer(false);
      const a = await nodeServer('wsbridge.ts', ['--echo', 'none', '--nats', n.url]);
      const b = await nodeServer('wsbridge.ts', ['--echo', 'ts', '--nats', n.url]);
      return combine(a.url, [a, b, n]);
    }
  }
}

let lastProgress = 0;
/** One progress line on stderr, rewritten in place on a terminal, at most 4 times a second. */
export function progress(text: string, force = false): void {
  const now = performance.now();
  if (!force && now - lastProgress < 250) return;
  lastProgress = now;
  if (process.stderr.isTTY) process.stderr.write(`\r\x1b[K${text}`);
  else process.stderr.write(`${text}\n`);
}
export function progressDone(): void {
  if (process.stderr.isTTY) process.stderr.write('\r\x1b[K');
}

/** A promise resolved by the caller's event handlers, rejected if `ms` pass first (bounded runs). */
export function deadline(ms: number, what: string): { promise: Promise<void>; resolve(): void } {
  let resolve!: () => void;
  const promise = new Promise<void>((res, rej) => {
    const t = setTimeout(() => rej(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
    resolve = () => { clearTimeout(t); res(); };
  });
  return { promise, resolve };
}

/** Runs `task` over `n` items with at most `limit` in flight. */
export async function pooled<T>(n: number, limit: number, task: (i: number) => Promise<T>, onEach?: (done: number) => void): Promise<T[]> {
  const out = new Array<T>(n);
  let next = 0;
  let done = 0;
  const worker = async () => {
    while (next < n) {
      const i = next++;
      out[i] = await task(i);
      onEach?.(++done);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, n) }, worker));
  return out;
}
