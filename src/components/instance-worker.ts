// A worker thread running one instance of a component. Calls arrive in batches and run one at a
// time (an instance is single-threaded, also while suspended in an async import); results and the
// instance's publishes and requests go back in batches. The instance's outbound WebSockets live in
// this thread, so they end with it. A trap replaces the instance inside the worker; a call past
// its deadline is ended by the gateway terminating the whole worker (a spinning guest cannot be
// interrupted any other way), which it sees from the call's start time in shared memory.
import { parentPort, workerData } from 'node:worker_threads';
import { pathToFileURL } from 'node:url';
import { join } from 'node:path';
import { consumerImports } from './host-imports.ts';
import type { InstanceGuard, MessagingHost } from './host-imports.ts';
import { wasiImports } from './wasi.ts';
import { ComponentSockets } from './outbound/context.ts';
import type { ConnectionCap } from './outbound/context.ts';
import { wasmcloudWebsocketImports } from './outbound/wasmcloud-websocket.ts';
import { golemWebsocketImports } from './outbound/golem-websocket.ts';
import type { OutboundStats } from './outbound/socket.ts';
import { EVENT, OUTCOME, sharedNow } from './worker-protocol.ts';
import type { FromWorker, ToWorker, WorkerSetup } from './worker-protocol.ts';
import { subjectError } from '../protocol/subject.ts';
import { ok, err } from '../gateway/messaging.ts';
import type { BrokerMessage, Result } from '../gateway/messaging.ts';

type Instantiate = (getCoreModule: (name: string) => WebAssembly.Module, imports: Record<string, unknown>) => Promise<Record<string, unknown>>;
interface Handler {
  handleMessage(msg: { subject: string; body: Uint8Array; replyTo?: string | undefined }): unknown;
}

const port = parentPort!;
const setup = workerData as WorkerSetup;
const modules = new Map(setup.modules);
const state = new Float64Array(setup.state);
const capUsed = new Int32Array(setup.cap);
const held = new Int32Array(setup.held);
state[1] = -1;

// ── events to the gateway, batched ──────────────────────────────────────────────────────────
let events: unknown[] = [];
let flushScheduled = false;
let lastFlush = 0;
function flush(): void {
  flushScheduled = false;
  if (events.length === 0) return;
  const batch = events;
  events = [];
  lastFlush = performance.now();
  port.postMessage({ events: batch } satisfies FromWorker);
}
function emit(...items: unknown[]): void {
  for (const i of items) events.push(i);
  if (events.length >= 96) flush(); // part of a long batch goes early: the gateway refills meanwhile
  else if (!flushScheduled) {
    flushScheduled = true;
    // After the calls queued now have run (they chain through microtasks): one message per burst.
    setImmediate(flush);
  }
}

// ── the gateway's services, proxied ─────────────────────────────────────────────────────────
const pending = new Map<number, (r: Result<BrokerMessage, string>) => void>();
let nextRid = 0;
function ask(kind: number, ...args: unknown[]): Promise<Result<BrokerMessage, string>> {
  const rid = nextRid++;
  emit(kind, rid, ...args);
  flush(); // the instance is about to suspend on the answer
  return new Promise((resolve) => pending.set(rid, resolve));
}

const host: MessagingHost = {
  publish(m) {
    const e = subjectError(m.subject, false) ?? (m.replyTo ? subjectError(m.replyTo, false) : null);
    if (e) return err(`invalid subject: ${e}`);
    emit(EVENT.publish, m.subject, m.body, m.replyTo ?? null);
    return ok(undefined);
  },
  request: (subject, body, timeoutMs) => ask(EVENT.request, subject, body, timeoutMs),
};
if (setup.publishAcked) {
  host.publishAcked = async (m) => {
    const r = await ask(EVENT.publishAcked, m.subject, m.body, m.replyTo ?? null);
    return r.tag === 'ok' ? ok(undefined) : r;
  };
}

// The component's connection budget is shared by its workers through shared memory.
const cap: ConnectionCap = {
  tryAcquire() {
    for (;;) {
      const used = Atomics.load(capUsed, 0);
      if (used >= setup.outbound.policy.maxConnections) return false;
      if (Atomics.compareExchange(capUsed, 0, used, used + 1) === used) {
        Atomics.add(held, 0, 1);
        return true;
      }
    }
  },
  release() {
    Atomics.sub(capUsed, 0, 1);
    Atomics.sub(held, 0, 1);
  },
};
const outboundStats: OutboundStats = { open: 0, opened: 0, bytesIn: 0, bytesOut: 0 };
const sockets = new ComponentSockets(setup.outbound.policy, outboundStats, setup.outbound.defaults, cap);
let reported = '';
/** Sends the socket counters when they changed: after every call, and every 200 ms. */
function reportStats(): void {
  const now = `${outboundStats.open},${outboundStats.opened},${outboundStats.bytesIn},${outboundStats.bytesOut}`;
  if (now === reported) return;
  reported = now;
  emit(EVENT.stats, outboundStats.open, outboundStats.opened, outboundStats.bytesIn, outboundStats.bytesOut);
}
setInterval(reportStats, 200).unref();

// ── the instance ────────────────────────────────────────────────────────────────────────────
const names = new Set(setup.imports.map((i) => i.slice(0, i.indexOf('@') >>> 0)));
const { instantiate } = (await import(pathToFileURL(join(setup.dir, 'component.js')).href)) as { instantiate: Instantiate };
let guard: InstanceGuard;
let handler: Handler;

async function createInstance(): Promise<void> {
  const g: InstanceGuard = { retired: false, resources: new Set() };
  const outbound = sockets.forInstance(g.resources, () => g.retired);
  const exports = await instantiate((name) => modules.get(name)!, {
    ...wasiImports(setup.grants),
    ...consumerImports(host, g),
    ...(names.has('wasmcloud:websocket/client') ? wasmcloudWebsocketImports(outbound) : {}),
    ...(names.has('golem:websocket/client') ? golemWebsocketImports(outbound) : {}),
  });
  const h = (exports['wasmcloud:messaging/handler@0.2.0'] ?? exports.handler) as Handler | undefined;
  if (!h || typeof h.handleMessage !== 'function') throw new Error('the component exports no handle-message');
  guard = g;
  handler = h;
}

function retire(): void {
  guard.retired = true;
  for (const r of guard.resources) r.destroy();
  guard.resources.clear();
}

const instanceReady = createInstance();

// ── calls ───────────────────────────────────────────────────────────────────────────────────
const queue: unknown[] = []; // seq, subject, body, replyTo, repeated
let head = 0;
let running = false;

async function run(): Promise<void> {
  running = true;
  await instanceReady;
  while (head < queue.length) {
    const seq = queue[head] as number;
    const msg = { subject: queue[head + 1] as string, body: queue[head + 2] as Uint8Array, replyTo: (queue[head + 3] as string | null) ?? undefined };
    queue[head + 1] = queue[head + 2] = undefined;
    head += 4;
    if (head > 4096 && head * 2 > queue.length) {
      queue.splice(0, head);
      head = 0;
    }
    // Results finished a while ago go out before the next call: if that call never ends, the
    // gateway still has them (it terminates this thread at the deadline).
    if (events.length > 0 && performance.now() - lastFlush > 1) flush();
    state[0] = sharedNow();
    state[1] = seq;
    let outcome: number = OUTCOME.ok;
    let text = '';
    try {
      await handler.handleMessage(msg);
    } catch (e) {
      if (e !== null && typeof e === 'object' && 'payload' in e) {
        outcome = OUTCOME.error; // the guest returned err(...): the instance is healthy
        text = String((e as { payload: unknown }).payload);
      } else {
        outcome = OUTCOME.trap;
        text = e instanceof Error ? e.message : String(e);
      }
    }
    state[1] = -1;
    reportStats();
    emit(EVENT.done, seq, outcome, text);
    if (outcome === OUTCOME.trap) {
      // Its memory may be inconsistent: a fresh instance takes over, in this same thread.
      retire();
      await createInstance();
    }
  }
  queue.length = 0;
  head = 0;
  running = false;
}

port.on('message', (m: ToWorker) => {
  if (m.replies) {
    const r = m.replies;
    for (let i = 0; i < r.length; i += 5) {
      const resolve = pending.get(r[i] as number);
      if (!resolve) continue;
      pending.delete(r[i] as number);
      resolve(r[i + 1] ? ok({ subject: r[i + 2] as string, body: r[i + 3] as Uint8Array, replyTo: r[i + 4] as string | null }) : err(r[i + 2] as string));
    }
  }
  if (m.calls) {
    for (const c of m.calls) queue.push(c);
    if (!running) {
      run().catch((e: unknown) => {
        flush(); // the results of the calls before, first
        port.postMessage({ failed: `instance replacement failed: ${e instanceof Error ? e.message : String(e)}` } satisfies FromWorker);
      });
    }
  }
  if (m.close) {
    retire();
    flush();
    // Leave time for the close frames to be written, then end the thread.
    setTimeout(() => process.exit(0), 50);
  }
});

instanceReady.then(
  () => port.postMessage({ ready: true } satisfies FromWorker),
  (e: unknown) => port.postMessage({ failed: e instanceof Error ? e.message : String(e) } satisfies FromWorker),
);
