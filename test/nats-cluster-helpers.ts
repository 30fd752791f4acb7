// Real nats-server clusters on loopback for tests: a three-server JetStream cluster (routes,
// one store dir per server), optional TLS, and a hub with a leafnode in its own JetStream domain.
// Every server runs in its own process group (detached), so kill() reaches it and anything it
// spawned; stop() and the cluster's stop() always end with SIGKILL of the group, which also
// ends a server frozen with SIGSTOP.
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import net from 'node:net';
import { Writable } from 'node:stream';
import pino from 'pino';
import type { Logger } from '../src/observability/logger.ts';

/**
 * A free loopback port below the kernel's ephemeral range (32768+): the ports of a cluster are
 * chosen before any server starts, and a port from the ephemeral range could meanwhile become
 * the source port of some outgoing connection (the routes between these very servers).
 */
const handedOut = new Set<number>();
export async function stablePort(): Promise<number> {
  for (let i = 0; i < 200; i++) {
    const port = 20_000 + Math.floor(Math.random() * 12_000);
    if (handedOut.has(port)) continue;
    const free = await new Promise<boolean>((resolve) => {
      const s = net.createServer();
      s.once('error', () => resolve(false));
      s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
    });
    if (free) {
      handedOut.add(port);
      return port;
    }
  }
  throw new Error('no free port in 20000-31999');
}

export interface ClusterServer {
  /** server_name, as JetStream reports leaders and peers. */
  name: string;
  url: string;
  port: number;
  clusterPort: number;
  monitorPort: number;
  leafPort: number | undefined;
  proc: ChildProcess;
  /** Sends a signal to the server's whole process group (SIGKILL, SIGSTOP, SIGCONT). */
  signal(sig: NodeJS.Signals): void;
  /** Starts the server again with the same config and store (after a SIGKILL or stop()). */
  restart(): Promise<void>;
  stop(): Promise<void>;
  running(): boolean;
}

export interface NatsCluster {
  servers: ClusterServer[];
  /** Every client URL, for NATS_URL. */
  urls: string[];
  byName(name: string): ClusterServer;
  /** Resolves when every running server reports JetStream healthy (meta leader known). */
  jetstreamReady(timeoutMs?: number): Promise<void>;
  stop(): Promise<void>;
}

export interface ClusterOptions {
  size?: number;
  /** Cluster name (also the JetStream placement cluster). */
  name?: string;
  /** JetStream domain of the cluster's servers. */
  domain?: string;
  /** Extra config text added to every server's file (tls {...}, accounts, …). */
  extra?: string;
  /** Open a leafnode listener on each server (for leaf servers to dial). */
  leafListen?: boolean;
  /** A client URL scheme other than nats:// (tls:// with a tls block in `extra`). */
  scheme?: string;
}

interface ServerSpec {
  name: string;
  port: number;
  clusterPort: number | undefined;
  monitorPort: number;
  leafPort: number | undefined;
  config: string;
  scheme: string;
}

/** Spawns one server from a config file in its own process group; resolves when it is ready. */
async function launch(spec: ServerSpec, confFile: string): Promise<ChildProcess> {
  const proc = spawn('nats-server', ['-c', confFile], { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  let out = '';
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`nats-server ${spec.name} not ready within 20 s:\n${out}`)), 20_000);
    const onData = (d: Buffer) => {
      out += d.toString();
      if (out.includes('Server is ready')) {
        clearTimeout(timer);
        resolve();
      }
    };
    proc.stdout!.on('data', onData);
    proc.stderr!.on('data', onData);
    proc.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`nats-server ${spec.name} exited (${code}):\n${out}`));
    });
    proc.once('error', reject);
  });
  // Keep draining its output so a chatty server never blocks on a full pipe.
  proc.stdout!.resume();
  proc.stderr!.resume();
  return proc;
}

function groupKill(proc: ChildProcess, sig: NodeJS.Signals): void {
  if (proc.pid === undefined || proc.exitCode !== null || proc.signalCode !== null) return;
  try {
    process.kill(-proc.pid, sig);
  } catch {
    // already gone
  }
}

async function killAndWait(proc: ChildProcess): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  const exited = new Promise((r) => proc.once('exit', r));
  groupKill(proc, 'SIGKILL');
  await exited;
}

async function makeServer(spec: ServerSpec, dir: string): Promise<ClusterServer> {
  const confFile = join(dir, `${spec.name}.conf`);
  writeFileSync(confFile, spec.config);
  const server: ClusterServer = {
    name: spec.name,
    url: `${spec.scheme}://127.0.0.1:${spec.port}`,
    port: spec.port,
    clusterPort: spec.clusterPort ?? 0,
    monitorPort: spec.monitorPort,
    leafPort: spec.leafPort,
    proc: await launch(spec, confFile),
    signal(sig) {
      groupKill(server.proc, sig);
    },
    async restart() {
      await killAndWait(server.proc);
      server.proc = await launch(spec, confFile);
    },
    async stop() {
      await killAndWait(server.proc);
    },
    running() {
      return server.proc.exitCode === null && server.proc.signalCode === null;
    },
  };
  return server;
}

/** GET on a server's monitoring port; undefined while it does not answer (bounded by 2 s). */
export async function monitor(server: ClusterServer, path: string): Promise<{ status: number; body: unknown } | undefined> {
  try {
    const res = await fetch(`http://127.0.0.1:${server.monitorPort}${path}`, { signal: AbortSignal.timeout(2000) });
    return { status: res.status, body: await res.json() };
  } catch {
    return undefined;
  }
}

async function waitHealthy(servers: ClusterServer[], timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (const s of servers) {
    if (!s.running()) continue;
    for (;;) {
      const h = await monitor(s, '/healthz');
      // /healthz is 200 once JetStream on this server is current with the meta leader.
      if (h?.status === 200) break;
      if (Date.now() > deadline) throw new Error(`JetStream on ${s.name} not healthy within ${timeoutMs} ms: ${JSON.stringify(h?.body)}`);
      await new Promise((r) => setTimeout(r, 100)); // polling an external process's state, bounded above
    }
  }
}

/** Starts `size` (default 3) routed nats-servers with JetStream on loopback. */
export async function startCluster(opts: ClusterOptions = {}): Promise<NatsCluster> {
  const size = opts.size ?? 3;
  const name = opts.name ?? 'wsbc';
  const dir = mkdtempSync(join(tmpdir(), 'wsbridge-natsc-'));
  const specs: ServerSpec[] = [];
  for (let i = 0; i < size; i++) {
    specs.push({
      name: `${name}-${i}`,
      port: await stablePort(),
      clusterPort: await stablePort(),
      monitorPort: await stablePort(),
      leafPort: opts.leafListen ? await stablePort() : undefined,
      config: '',
      scheme: opts.scheme ?? 'nats',
    });
  }
  for (const s of specs) {
    const routes = specs.filter((o) => o !== s).map((o) => `nats-route://127.0.0.1:${o.clusterPort}`);
    s.config = [
      `server_name: ${s.name}`,
      `listen: 127.0.0.1:${s.port}`,
      `http: 127.0.0.1:${s.monitorPort}`,
      `jetstream { store_dir: ${JSON.stringify(join(dir, s.name))}${opts.domain ? `, domain: ${opts.domain}` : ''} }`,
      `cluster { name: ${name}, listen: 127.0.0.1:${s.clusterPort}, routes: [${routes.join(', ')}] }`,
      s.leafPort ? `leafnodes { listen: 127.0.0.1:${s.leafPort} }` : '',
      opts.extra ?? '',
    ].join('\n');
  }
  const servers: ClusterServer[] = [];
  try {
    for (const s of specs) servers.push(await makeServer(s, dir));
  } catch (e) {
    await Promise.all(servers.map((s) => s.stop()));
    throw e;
  }
  const cluster: NatsCluster = {
    servers,
    urls: servers.map((s) => s.url),
    byName(n) {
      const s = servers.find((x) => x.name === n);
      if (!s) throw new Error(`no server named ${n}`);
      return s;
    },
    jetstreamReady: (timeoutMs = 30_000) => waitHealthy(servers, timeoutMs),
    async stop() {
      await Promise.all(servers.map((s) => s.stop()));
    },
  };
  return cluster;
}

/** One standalone server with JetStream in its own domain, dialing `hubLeafUrls` as a leafnode. */
export async function startLeaf(opts: { name: string; domain: string; hubLeafUrls: string[]; extra?: string }): Promise<ClusterServer & { dir: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'wsbridge-natsleaf-'));
  const spec: ServerSpec = {
    name: opts.name,
    port: await stablePort(),
    clusterPort: undefined,
    monitorPort: await stablePort(),
    leafPort: undefined,
    config: '',
    scheme: 'nats',
  };
  spec.config = [
    `server_name: ${spec.name}`,
    `listen: 127.0.0.1:${spec.port}`,
    `http: 127.0.0.1:${spec.monitorPort}`,
    `jetstream { store_dir: ${JSON.stringify(join(dir, 'js'))}, domain: ${opts.domain} }`,
    `leafnodes { remotes: [ { urls: [${opts.hubLeafUrls.join(', ')}] } ] }`,
    opts.extra ?? '',
  ].join('\n');
  const s = await makeServer(spec, dir);
  return Object.assign(s, { dir });
}

/** Resolves once `server` reports an established leafnode connection (bounded). */
export async function leafConnected(server: ClusterServer, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const r = await monitor(server, '/leafz');
    if (((r?.body as { leafnodes?: number } | undefined)?.leafnodes ?? 0) > 0) return;
    if (Date.now() > deadline) throw new Error(`${server.name}: no leafnode connection within ${timeoutMs} ms`);
    await new Promise((r2) => setTimeout(r2, 100)); // polling an external process's state, bounded above
  }
}

/** A logger (level info) whose lines the test can read, parsed. */
export function captureLog(): { log: Logger; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString().split('\n')) if (l) lines.push(JSON.parse(l) as Record<string, unknown>);
      cb();
    },
  });
  return { log: pino({ level: 'info' }, sink) as unknown as Logger, lines };
}
