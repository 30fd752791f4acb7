// A pool of instances of one component, each in its own worker thread (instance-worker.ts), so
// that no guest, spinning or waiting, can stall the gateway's sockets. An instance runs one call
// at a time and stays busy while suspended in an async import, so concurrency comes from more
// instances, and they run on as many cores as there are.
//
// Calls are dispatched to the instance with the fewest outstanding calls, up to WINDOW per
// instance (beyond that they wait here, up to maxQueue), and sent in batches: one postMessage per
// instance per turn of the event loop. A trap replaces the instance inside its worker. A call past
// its deadline terminates the worker running it (the only way to stop a guest that spins) and a
// fresh worker takes over; the calls queued behind it are sent to the fresh one.
import { Worker } from 'node:worker_threads';
import type { LoadedComponent } from './loader.ts';
import type { WasiGrants } from './wasi.ts';
import type { OutboundPolicy, } from './outbound/policy.ts';
import type { OutboundStats } from './outbound/socket.ts';
import type { BrokerMessage, Result } from '../gateway/messaging.ts';
import { ok, err } from '../gateway/messaging.ts';
import { EVENT, OUTCOME, sharedNow } from './worker-protocol.ts';
import type { FromWorker, ToWorker, WorkerSetup } from './worker-protocol.ts';

/** Calls sent ahead to one instance: enough to batch, few enough to spread the load. */
const WINDOW = 64;
/**
 * Young generation of a worker's heap. jco's glue allocates a few KB per call (task and subtask
 * objects per host import); with V8's default semi-space a worker spent ~15 % of its time in
 * scavenges.
 */
const YOUNG_GENERATION_MB = 48;
/** How long a closing worker may take to close its connections before it is terminated. */
const CLOSE_GRACE_MS = 1000;

const WORKER_URL = new URL(import.meta.url.endsWith('.ts') ? './instance-worker.ts' : './instance-worker.js', import.meta.url);

export interface PoolOptions {
  size: number;
  /** Deadline of one handle-message call, from the moment it starts running. */
  timeoutMs: number;
  /** Calls waiting for an instance; past it a message is refused with an error. */
  maxQueue: number;
}

/** What the workers need from the gateway's thread. */
export interface PoolHost {
  /** Fire-and-forget publish (the worker validated the subjects). */
  publish(msg: BrokerMessage): void;
  publishAcked?(msg: BrokerMessage): Promise<Result<void, string>>;
  request(subject: string, body: Uint8Array, timeoutMs: number): Promise<Result<BrokerMessage, string>>;
  /** The gateway's outbound WebSocket counters, kept up to date from the workers' reports. */
  outbound: OutboundStats;
  grants: WasiGrants;
  policy: OutboundPolicy;
  defaults: { timeoutMs: number; maxMessageBytes: number };
  onWorkerError(message: string): void;
}

export interface PoolStats {
  calls: number;
  errors: number;
  traps: number;
  timeouts: number;
  rejected: number;
  instancesCreated: number;
}

interface Call {
  seq: number;
  msg: BrokerMessage;
  resolve(r: Result<void, string>): void;
}

const NO_STATS = [0, 0, 0, 0];

/** The gateway-side handle of one worker thread and its instance. */
class InstanceWorker {
  readonly worker: Worker;
  readonly state: Float64Array;
  readonly held: Int32Array;
  /** Calls sent and not yet answered, in the order the worker runs them. */
  readonly outstanding = new Map<number, Call>();
  alive = true;
  /** Set once the instance is up; a failure before that is the start's, reported by `ready`. */
  started = false;
  ready: Promise<void>;
  stats: number[] = NO_STATS;
  #calls: unknown[] = [];
  #replies: unknown[] = [];
  #flushQueued = false;

  constructor(setup: Omit<WorkerSetup, 'state' | 'held'>, onMessage: (w: InstanceWorker, m: FromWorker) => void, onExit: (w: InstanceWorker, why: string) => void) {
    const state = new SharedArrayBuffer(16);
    const held = new SharedArrayBuffer(4);
    this.state = new Float64Array(state);
    this.state[1] = -1;
    this.held = new Int32Array(held);
    // stdin: false (the default) gives the worker an empty stdin, never the gateway's.
    this.worker = new Worker(WORKER_URL, { workerData: { ...setup, state, held } satisfies WorkerSetup, stdout: false, stderr: false, resourceLimits: { maxYoungGenerationSizeMb: YOUNG_GENERATION_MB } });
    this.ready = new Promise<void>((resolve, reject) => {
      const first = (m: FromWorker) => {
        if ('ready' in m) {
          this.started = true;
          resolve();
        }
        else if ('failed' in m) reject(new Error(m.failed));
      };
      this.worker.once('message', first);
      this.worker.once('error', (e) => reject(e));
      this.worker.once('exit', (code) => reject(new Error(`worker exited (${code}) while starting`)));
    });
    this.ready.catch(() => {});
    this.worker.on('message', (m: FromWorker) => onMessage(this, m));
    this.worker.on('error', (e) => onExit(this, e.message));
    this.worker.on('exit', (code) => onExit(this, `worker exited (${code})`));
  }

  send(call: Call): void {
    this.outstanding.set(call.seq, call);
    this.#calls.push(call.seq, call.msg.subject, call.msg.body, call.msg.replyTo ?? null);
    this.#schedule();
  }

  reply(rid: number, r: Result<BrokerMessage, string>): void {
    if (!this.alive) return;
    if (r.tag === 'ok') this.#replies.push(rid, 1, r.val.subject, r.val.body, r.val.replyTo ?? null);
    else this.#replies.push(rid, 0, r.val, null, null);
    this.#schedule();
  }

  #schedule(): void {
    if (this.#flushQueued) return;
    this.#flushQueued = true;
    // Everything the gateway hands this instance in the current turn goes in one message.
    queueMicrotask(() => this.#flush());
  }

  #flush(): void {
    this.#flushQueued = false;
    if (!this.alive) return;
    const m: ToWorker = {};
    if (this.#calls.length > 0) m.calls = this.#calls;
    if (this.#replies.length > 0) m.replies = this.#replies;
    this.#calls = [];
    this.#replies = [];
    this.worker.postMessage(m);
  }

  /** Ends the worker now; returns the connection slots it held, for the component's budget. */
  kill(): number {
    this.alive = false;
    void this.worker.terminate();
    return Atomics.exchange(this.held, 0, 0);
  }
}

export class InstancePool {
  readonly stats: PoolStats = { calls: 0, errors: 0, traps: 0, timeouts: 0, rejected: 0, instancesCreated: 0 };
  #component: LoadedComponent;
  #host: PoolHost;
  #opts: PoolOptions;
  #workers: InstanceWorker[] = [];
  #waiting: Call[] = [];
  #waitingHead = 0;
  #seq = 0;
  /** Calls accepted and not yet answered. */
  #pending = 0;
  #closed = false;
  #sweeper: NodeJS.Timeout | undefined;
  #cap = new SharedArrayBuffer(4);
  #capUsed = new Int32Array(this.#cap);
  #setup: Omit<WorkerSetup, 'state' | 'held'>;

  constructor(component: LoadedComponent, host: PoolHost, opts: PoolOptions) {
    this.#component = component;
    this.#host = host;
    this.#opts = opts;
    this.#setup = {
      dir: component.dir,
      modules: [...component.modules],
      imports: component.imports,
      grants: host.grants,
      outbound: { policy: host.policy, defaults: host.defaults },
      publishAcked: host.publishAcked !== undefined,
      cap: this.#cap,
    };
  }

  get size(): number {
    return this.#opts.size;
  }

  /** Calls accepted and not yet answered: running (or sent ahead) on an instance, and waiting here (the admin page's pool use). */
  get load(): { in_flight: number; queued: number } {
    const queued = this.#waiting.length - this.#waitingHead;
    return { in_flight: this.#pending - queued, queued };
  }

  /** Starts every instance; rejects when the component cannot be instantiated. */
  async warm(): Promise<void> {
    for (let i = 0; i < this.#opts.size; i++) this.#workers.push(this.#spawn());
    try {
      await Promise.all(this.#workers.map((w) => w.ready));
    } catch (e) {
      await this.close();
      throw e;
    }
    this.#sweeper = setInterval(() => this.#sweep(), Math.max(5, Math.min(1000, this.#opts.timeoutMs / 4)));
    this.#sweeper.unref();
  }

  #spawn(): InstanceWorker {
    this.stats.instancesCreated++;
    return new InstanceWorker(this.#setup, (w, m) => this.#onMessage(w, m), (w, why) => this.#onExit(w, why));
  }

  /** handle-message on an instance. Never throws: every failure is an err result. */
  call(msg: BrokerMessage): Promise<Result<void, string>> {
    if (this.#closed) return Promise.resolve(err('component is unloaded'));
    this.stats.calls++;
    // Every call not yet finished counts, wherever it waits (here or sent ahead to a worker):
    // one running per instance, maxQueue more.
    if (this.#pending >= this.#opts.size + this.#opts.maxQueue) {
      this.stats.rejected++;
      return Promise.resolve(err('component overloaded: too many queued messages'));
    }
    this.#pending++;
    return new Promise((resolve) => {
      const call: Call = {
        seq: this.#seq++,
        msg,
        resolve: (r) => {
          this.#pending--;
          resolve(r);
        },
      };
      const w = this.#pick();
      if (w) w.send(call);
      else this.#waiting.push(call);
    });
  }

  /** The live instance with the fewest outstanding calls, if one has room. */
  #pick(): InstanceWorker | undefined {
    let best: InstanceWorker | undefined;
    for (const w of this.#workers) {
      if (!w.alive || w.outstanding.size >= WINDOW) continue;
      if (!best || w.outstanding.size < best.outstanding.size) best = w;
      if (best.outstanding.size === 0) break;
    }
    return best;
  }

  #drainWaiting(): void {
    while (this.#waitingHead < this.#waiting.length) {
      const w = this.#pick();
      if (!w) return;
      const call = this.#waiting[this.#waitingHead]!;
      this.#waiting[this.#waitingHead++] = undefined as unknown as Call;
      w.send(call);
    }
    this.#waiting = [];
    this.#waitingHead = 0;
  }

  #onMessage(w: InstanceWorker, m: FromWorker): void {
    if (!w.alive || !w.started) return;
    if ('failed' in m) {
      this.#host.onWorkerError(m.failed);
      this.#replace(w, 'instance failed');
      return;
    }
    if (!('events' in m)) return;
    const ev = m.events;
    for (let i = 0; i < ev.length;) {
      switch (ev[i]) {
        case EVENT.done: {
          const call = w.outstanding.get(ev[i + 1] as number);
          const outcome = ev[i + 2] as number;
          const text = ev[i + 3] as string;
          i += 4;
          if (!call) break;
          w.outstanding.delete(call.seq);
          if (outcome === OUTCOME.ok) call.resolve(ok(undefined));
          else if (outcome === OUTCOME.error) {
            this.stats.errors++;
            call.resolve(err(text));
          } else {
            this.stats.traps++;
            call.resolve(err(`trap: ${text}`));
          }
          break;
        }
        case EVENT.publish:
          this.#host.publish({ subject: ev[i + 1] as string, body: ev[i + 2] as Uint8Array, replyTo: ev[i + 3] as string | null });
          i += 4;
          break;
        case EVENT.request: {
          const rid = ev[i + 1] as number;
          this.#host.request(ev[i + 2] as string, ev[i + 3] as Uint8Array, ev[i + 4] as number).then((r) => w.reply(rid, r));
          i += 5;
          break;
        }
        case EVENT.publishAcked: {
          const rid = ev[i + 1] as number;
          const acked = this.#host.publishAcked!({ subject: ev[i + 2] as string, body: ev[i + 3] as Uint8Array, replyTo: ev[i + 4] as string | null });
          acked.then((r) => w.reply(rid, r.tag === 'ok' ? ok({ subject: '', body: new Uint8Array(), replyTo: null }) : r));
          i += 5;
          break;
        }
        case EVENT.stats: {
          const now = ev.slice(i + 1, i + 5) as number[];
          const o = this.#host.outbound;
          o.open += now[0]! - w.stats[0]!;
          o.opened += now[1]! - w.stats[1]!;
          o.bytesIn += now[2]! - w.stats[2]!;
          o.bytesOut += now[3]! - w.stats[3]!;
          w.stats = now;
          i += 5;
          break;
        }
        default:
          throw new Error(`unknown worker event ${String(ev[i])}`);
      }
    }
    this.#drainWaiting();
  }

  #onExit(w: InstanceWorker, why: string): void {
    if (!w.alive || !w.started || this.#closed) return;
    this.#host.onWorkerError(why);
    this.#replace(w, why);
  }

  /**
   * Ends a worker and starts a fresh one in its place. Its running call (if any) fails with
   * `reason`; calls it had not started go to the other instances or the fresh one.
   */
  #replace(w: InstanceWorker, reason: string, runningSeq = w.state[1]!): void {
    const slots = w.kill();
    Atomics.sub(this.#capUsed, 0, slots);
    // Its connections died with it.
    this.#host.outbound.open -= w.stats[0]!;
    w.stats = NO_STATS;
    const requeue: Call[] = [];
    for (const call of w.outstanding.values()) {
      if (call.seq === runningSeq) call.resolve(err(reason));
      // Finished before the running call started; its result had not been sent yet.
      else if (call.seq < runningSeq) call.resolve(ok(undefined));
      else requeue.push(call);
    }
    w.outstanding.clear();
    const i = this.#workers.indexOf(w);
    if (this.#closed || i < 0) {
      for (const call of requeue) call.resolve(err('component is unloaded'));
      return;
    }
    const fresh = this.#spawn();
    this.#workers[i] = fresh;
    fresh.ready.catch((e: unknown) => {
      this.#host.onWorkerError(`replacement instance failed: ${(e as Error).message}`);
      // Retried after a pause, not in a tight loop of thread starts.
      setTimeout(() => {
        if (fresh.alive && !this.#closed) this.#replace(fresh, 'instance failed');
      }, 1000).unref();
    });
    // Unstarted calls go first, ahead of those waiting here.
    this.#waiting = [...requeue, ...this.#waiting.slice(this.#waitingHead)];
    this.#waitingHead = 0;
    this.#drainWaiting();
  }

  #sweep(): void {
    const now = sharedNow();
    for (const w of this.#workers) {
      if (!w.alive) continue;
      const seq = w.state[1]!;
      if (seq < 0 || now - w.state[0]! < this.#opts.timeoutMs) continue;
      this.stats.timeouts++;
      this.#replace(w, `handle-message exceeded its ${this.#opts.timeoutMs} ms deadline`, seq);
    }
  }

  /** Closes every instance's connections (1001) and ends the workers. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#sweeper);
    for (const call of this.#waiting.slice(this.#waitingHead)) call.resolve(err('component is unloaded'));
    this.#waiting = [];
    await Promise.all(this.#workers.map(async (w) => {
      for (const call of w.outstanding.values()) call.resolve(err('component is unloaded'));
      w.outstanding.clear();
      if (!w.alive) return;
      const exited = new Promise<void>((resolve) => w.worker.once('exit', () => resolve()));
      w.worker.postMessage({ close: true } satisfies ToWorker);
      const timer = setTimeout(() => void w.worker.terminate(), CLOSE_GRACE_MS);
      await exited;
      clearTimeout(timer);
      w.alive = false;
      this.#host.outbound.open -= w.stats[0]!;
      w.stats = NO_STATS;
    }));
    this.#workers = [];
  }
}
