// Client-mode test helpers: a local WebSocket server playing the remote, a recording handler, and
// waits on link events. Every wait has a bound.
import net from 'node:net';
import type { IncomingMessage } from 'node:http';
import type { EventEmitter } from 'node:events';
import { WebSocketServer } from 'ws';
import type WebSocket from 'ws';
import { Gateway } from '../src/gateway/gateway.ts';
import { loadConfig } from '../src/config/load.ts';
import { ok } from '../src/gateway/messaging.ts';
import type { BrokerMessage } from '../src/gateway/messaging.ts';
import { once, bounded } from './helpers.ts';

/** Like events.once, but for 'error' too (events.once rejects on 'error'). */
export function nextEvent<T extends unknown[]>(em: EventEmitter, name: string, ms = 30_000): Promise<T> {
  return bounded(new Promise((resolve) => em.once(name, (...args: unknown[]) => resolve(args as T))), `the '${name}' event`, ms);
}

export interface RemoteConn {
  ws: WebSocket;
  req: IncomingMessage;
  received: Array<{ data: Buffer; isBinary: boolean }>;
}

export interface Remote {
  wss: WebSocketServer;
  port: number;
  url: string;
  conns: RemoteConn[];
  nextConn(): Promise<RemoteConn>;
  /** The next frame the remote received on `conn` (as text). */
  nextFrame(conn: RemoteConn): Promise<string>;
  /** The next frame with its type. */
  nextRaw(conn: RemoteConn): Promise<{ data: Buffer; isBinary: boolean }>;
  close(): Promise<void>;
}

export async function remoteServer(port = 0, opts: ConstructorParameters<typeof WebSocketServer>[0] = {}): Promise<Remote> {
  const wss = new WebSocketServer({ port, host: '127.0.0.1', ...opts });
  await once(wss, 'listening');
  const p = (wss.address() as net.AddressInfo).port;
  const conns: RemoteConn[] = [];
  const waiting: Array<(c: RemoteConn) => void> = [];
  wss.on('connection', (ws, req) => {
    const c: RemoteConn = { ws, req, received: [] };
    ws.on('message', (data: Buffer, isBinary) => c.received.push({ data, isBinary }));
    ws.on('error', () => {});
    conns.push(c);
    waiting.shift()?.(c);
  });
  const nextRaw = (conn: RemoteConn) => conn.received.length > 0
    ? Promise.resolve(conn.received.shift()!)
    : bounded(new Promise<{ data: Buffer; isBinary: boolean }>((resolve) => conn.ws.once('message', () => resolve(conn.received.shift()!))), 'a frame at the remote server');
  return {
    wss, port: p, url: `ws://127.0.0.1:${p}/feed`, conns,
    nextConn: () => bounded(new Promise((resolve) => waiting.push(resolve)), 'a connection to the remote server'),
    nextFrame: async (conn) => (await nextRaw(conn)).data.toString(),
    nextRaw,
    close: () => {
      for (const c of wss.clients) c.terminate();
      return bounded(new Promise<void>((r) => wss.close(() => r())), 'the remote server closing');
    },
  };
}

export async function clientGateway(settings: Record<string, string>): Promise<Gateway> {
  return Gateway.start(loadConfig({ flags: { MODE: 'client', ...settings }, env: {} }));
}

/** A handler that records messages and lets the test await them. */
export function recorder() {
  const got: BrokerMessage[] = [];
  const waiters: Array<() => void> = [];
  return {
    got,
    handler: { handleMessage: (m: BrokerMessage) => { got.push(m); waiters.splice(0).forEach((w) => w()); return ok(undefined); } },
    async waitFor(n: number) {
      while (got.length < n) await bounded(new Promise<void>((r) => waiters.push(r)), `message ${got.length + 1} of ${n}`);
    },
  };
}

/** A raw TCP server; `onSocket` gets each connection. Closing it destroys every socket. */
export async function tcpServer(onSocket: (s: net.Socket) => void): Promise<{ port: number; sockets: net.Socket[]; close(): void }> {
  const sockets: net.Socket[] = [];
  const server = net.createServer((s) => {
    sockets.push(s);
    s.on('error', () => {});
    onSocket(s);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    port: (server.address() as net.AddressInfo).port,
    sockets,
    close() {
      server.close();
      for (const s of sockets) s.destroy();
    },
  };
}

/**
 * A `wsbridge` process killed (as a group) when the test ends, pass or fail; `ready` is awaited
 * with a bound, so a gateway that never prints it fails the test instead of holding the run.
 */
export async function cliProcess(t: { after(fn: () => unknown): void }, args: string[], env: Record<string, string> = {}, ready: RegExp | null = null, ms = 30_000) {
  const { spawn } = await import('node:child_process');
  const { CLI } = await import('./helpers.ts');
  const proc = spawn(process.execPath, [CLI, ...args], { env: { PATH: process.env.PATH ?? '', LOG_LEVEL: 'warn', ...env }, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  t.after(() => {
    try {
      process.kill(-proc.pid!, 'SIGKILL');
    } catch { /* already gone */ }
  });
  let out = '';
  const seen: Array<() => void> = [];
  const onData = (d: Buffer) => {
    out += d.toString();
    seen.splice(0).forEach((f) => f());
  };
  proc.stdout!.on('data', onData);
  proc.stderr!.on('data', onData);
  const exit = new Promise<{ code: number | null; signal: string | null }>((resolve) => proc.on('exit', (code, signal) => resolve({ code, signal })));
  /** Resolves with the first match of `re` in the output so far or to come. */
  const waitFor = (re: RegExp, what = String(re), bound = ms): Promise<RegExpMatchArray> => bounded(new Promise<RegExpMatchArray>((resolve, reject) => {
    const check = () => {
      const m = out.match(re);
      if (m) resolve(m);
      else seen.push(check);
    };
    void exit.then(({ code }) => setImmediate(() => reject(new Error(`wsbridge exited (${code}) before ${what}:\n${out}`))));
    check();
  }), `${what} in the output:\n${out}`, bound);
  const match = ready ? await waitFor(ready) : null;
  return { proc, match, output: () => out, exit: bounded(exit, 'the wsbridge process exiting', 60_000), waitFor };
}
