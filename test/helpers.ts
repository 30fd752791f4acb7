// Test helpers: real gateways on loopback, WebSocket clients that wait on frames (never sleeps),
// and a spawned CLI process.
import { once as eventsOnce } from 'node:events';
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import type { EventEmitter } from 'node:events';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';
import { Gateway } from '../src/gateway/gateway.ts';
import { loadConfig } from '../src/config/load.ts';
import { unpack } from 'msgpackr';

export const ROOT = fileURLToPath(new URL('..', import.meta.url));
export const CLI = fileURLToPath(new URL('../src/cli/main.ts', import.meta.url));

/** Starts an in-process server-mode gateway on a random loopback port. */
export async function startGateway(settings: Record<string, string> = {}): Promise<Gateway> {
  const config = loadConfig({ flags: { MODE: 'server', LISTEN: '127.0.0.1:0', ...settings }, env: {} });
  return Gateway.start(config);
}

/** Runs `fn` against a fresh in-process gateway and shuts it down afterwards, pass or fail. */
export async function withGateway(settings: Record<string, string>, fn: (gw: Gateway) => Promise<void>): Promise<void> {
  const gw = await startGateway(settings);
  try {
    await fn(gw);
  } finally {
    await gw.shutdown();
  }
}

/** Every wait in the tests has a bound: `p`, or an error naming what did not happen within `ms`. */
export function bounded<T>(p: Promise<T>, what: string, ms = 30_000): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms);
    timer.unref();
  });
  return Promise.race([p, deadline]).finally(() => clearTimeout(timer));
}

/** events.once with a bound (default 30 s). */
export function once(emitter: EventEmitter, name: string, ms = 30_000): Promise<unknown[]> {
  return bounded(eventsOnce(emitter, name), `the '${name}' event`, ms);
}

export type Frame = Record<string, unknown>;

/** A WebSocket client that queues decoded frames and lets a test await the next matching one. */
export class TestClient {
  readonly ws: WebSocket;
  readonly frames: Frame[] = [];
  #waiters: Array<{ pred: (f: Frame) => boolean; resolve: (f: Frame) => void }> = [];
  readonly #closed: Promise<{ code: number; reason: string }>;
  welcome!: Frame;

  /** The close code and reason; rejects if the socket is not closed within 30 s of asking. */
  get closed(): Promise<{ code: number; reason: string }> {
    return bounded(this.#closed, 'the socket closing');
  }

  constructor(url: string, protocols?: string | string[], opts?: WebSocket.ClientOptions) {
    this.ws = new WebSocket(url, protocols, opts);
    this.ws.on('message', (data: Buffer, isBinary) => {
      const f = (isBinary ? unpack(data) : JSON.parse(data.toString())) as Frame;
      const i = this.#waiters.findIndex((w) => w.pred(f));
      if (i >= 0) this.#waiters.splice(i, 1)[0]!.resolve(f);
      else this.frames.push(f);
    });
    this.ws.on('error', () => {});
    this.#closed = new Promise((resolve) => this.ws.on('close', (code, reason) => resolve({ code, reason: reason.toString() })));
  }

  static async connect(gw: Gateway | string, protocols?: string | string[], opts?: WebSocket.ClientOptions): Promise<TestClient> {
    const url = typeof gw === 'string' ? gw : gw.server!.url;
    const c = new TestClient(url, protocols, opts);
    c.welcome = await c.next((f) => f.op === 'welcome');
    return c;
  }

  /** Resolves with the first queued or future frame matching `pred`. */
  next(pred: (f: Frame) => boolean = () => true, timeoutMs = 5000): Promise<Frame> {
    const i = this.frames.findIndex(pred);
    if (i >= 0) return Promise.resolve(this.frames.splice(i, 1)[0]!);
    return new Promise((resolve, reject) => {
      const w = {
        pred,
        resolve: (f: Frame) => {
          clearTimeout(t);
          resolve(f);
        },
      };
      const t = setTimeout(() => {
        this.#waiters.splice(this.#waiters.indexOf(w), 1);
        reject(new Error(`no matching frame within ${timeoutMs} ms; queued: ${JSON.stringify(this.frames).slice(0, 500)}`));
      }, timeoutMs);
      this.#waiters.push(w);
    });
  }

  send(frame: unknown): void {
    this.ws.send(typeof frame === 'string' ? frame : JSON.stringify(frame));
  }

  /** Sends a frame with an id and waits for its ok or error answer. */
  async call(frame: Frame): Promise<Frame> {
    this.send(frame);
    return this.next((f) => (f.op === 'ok' || f.op === 'error' || f.op === 'res' || f.op === 'pong') && f.id === frame.id);
  }

  close(): void {
    this.ws.close();
  }
}

export const b64 = (s: string): string => Buffer.from(s).toString('base64');
export const unb64 = (s: unknown): string => Buffer.from(String(s), 'base64').toString();

/** A spawned `wsbridge` process; resolves once it printed a line matching `ready`. */
export async function spawnCli(args: string[], env: Record<string, string> = {}, ready: RegExp | null = /listening on (ws:\/\/\S+)/): Promise<{ proc: ChildProcess; match: RegExpMatchArray | null; output: () => string; exit: Promise<{ code: number | null; signal: string | null }> }> {
  const proc = spawn(process.execPath, [CLI, ...args], { env: { PATH: process.env.PATH ?? '', LOG_LEVEL: 'warn', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exit = new Promise<{ code: number | null; signal: string | null }>((resolve) => proc.on('exit', (code, signal) => resolve({ code, signal })));
  let match: RegExpMatchArray | null = null;
  if (ready) {
    match = await new Promise<RegExpMatchArray>((resolve, reject) => {
      const check = () => {
        const m = out.match(ready);
        if (m) resolve(m);
      };
      proc.stdout!.on('data', check);
      proc.stderr!.on('data', check);
      void exit.then(({ code }) => reject(new Error(`wsbridge exited (${code}) before ready:\n${out}`)));
    });
  }
  return { proc, match, output: () => out, exit };
}

