// A pool of instances of one component. An instance runs one call at a time and stays busy
// while suspended in an async host import (JSPI), so concurrency comes from more instances.
// A call that traps or misses its deadline retires its instance; the next call gets a fresh one.
import type { LoadedComponent } from './loader.ts';
import type { InstanceGuard } from './host-imports.ts';
import type { BrokerMessage, Result } from '../gateway/messaging.ts';
import { ok, err } from '../gateway/messaging.ts';

interface Handler {
  handleMessage(msg: { subject: string; body: Uint8Array; replyTo?: string | undefined }): unknown;
}

interface Instance {
  guard: InstanceGuard;
  handler: Handler;
  /** The call in progress: when it started and how to finish it from the deadline sweeper. */
  startedAt: number;
  finish: ((r: Result<void, string>) => void) | undefined;
}

export interface PoolOptions {
  size: number;
  /** Deadline of one handle-message call. */
  timeoutMs: number;
  /** Calls waiting for a free instance; past it a message is refused with an error. */
  maxQueue: number;
}

export interface PoolStats {
  calls: number;
  errors: number;
  traps: number;
  timeouts: number;
  rejected: number;
  instancesCreated: number;
}

export class InstancePool {
  readonly stats: PoolStats = { calls: 0, errors: 0, traps: 0, timeouts: 0, rejected: 0, instancesCreated: 0 };
  #component: LoadedComponent;
  #makeImports: (guard: InstanceGuard) => Record<string, unknown>;
  #opts: PoolOptions;
  #idle: Instance[] = [];
  #live = 0; // instances created and not retired (idle + busy + being created)
  #waiters = new Fifo<(inst: Instance | Error) => void>();
  #closed = false;
  #busy = new Set<Instance>();
  #all = new Set<Instance>();
  #sweeper: NodeJS.Timeout | undefined;

  constructor(component: LoadedComponent, makeImports: (guard: InstanceGuard) => Record<string, unknown>, opts: PoolOptions) {
    this.#component = component;
    this.#makeImports = makeImports;
    this.#opts = opts;
  }

  get size(): number {
    return this.#opts.size;
  }

  /** Creates one instance ahead of traffic, so a bad component fails at load time. */
  async warm(): Promise<void> {
    this.#release(await this.#create());
  }

  async #create(): Promise<Instance> {
    this.#live++;
    try {
      const guard: InstanceGuard = { retired: false, resources: new Set() };
      const exports = await this.#component.instantiate(this.#makeImports(guard));
      const handler = (exports.handler ?? exports['wasmcloud:messaging/handler@0.2.0']) as Handler | undefined;
      if (!handler || typeof handler.handleMessage !== 'function') throw new Error('component does not export wasmcloud:messaging/handler');
      this.stats.instancesCreated++;
      const inst: Instance = { guard, handler, startedAt: 0, finish: undefined };
      this.#all.add(inst);
      return inst;
    } catch (e) {
      this.#live--;
      throw e;
    }
  }

  #acquire(): Promise<Instance> {
    const idle = this.#idle.pop();
    if (idle) return Promise.resolve(idle);
    if (this.#live < this.#opts.size) return this.#create();
    if (this.#waiters.size >= this.#opts.maxQueue) return Promise.reject(new PoolFullError());
    return new Promise((resolve, reject) => this.#waiters.push((i) => (i instanceof Error ? reject(i) : resolve(i))));
  }

  #release(inst: Instance): void {
    const waiter = this.#waiters.shift();
    if (waiter) waiter(inst);
    else this.#idle.push(inst);
  }

  /** Gives an instance up; a waiter, if any, gets a fresh one. */
  #retire(inst: Instance): void {
    dispose(inst);
    this.#all.delete(inst);
    this.#live--;
    const waiter = this.#waiters.shift();
    if (waiter) this.#create().then(waiter, (e: unknown) => waiter(e instanceof Error ? e : new Error(String(e))));
  }

  /** handle-message on a free instance. Never throws: every failure is an err result. */
  call(msg: BrokerMessage): Promise<Result<void, string>> {
    if (this.#closed) return Promise.resolve(err('component is unloaded'));
    this.stats.calls++;
    // Fast path: a free instance runs the call now, without a hop through the microtask queue.
    const idle = this.#idle.pop();
    if (idle) return this.#run(idle, msg);
    return this.#acquire().then(
      (inst) => this.#run(inst, msg),
      (e: unknown) => {
        this.stats.rejected++;
        return err(e instanceof PoolFullError ? 'component overloaded: too many queued messages' : `instantiation failed: ${(e as Error).message}`);
      },
    );
  }

  #run(inst: Instance, msg: BrokerMessage): Promise<Result<void, string>> {
    // No timer per call: one sweeper per pool checks the busy instances' start times.
    this.#sweeper ??= setInterval(() => this.#sweep(), Math.max(5, Math.min(1000, this.#opts.timeoutMs / 4))).unref();
    return new Promise<Result<void, string>>((resolve) => {
      inst.startedAt = performance.now();
      inst.finish = resolve;
      this.#busy.add(inst);
      let pending: unknown;
      try {
        pending = inst.handler.handleMessage({ subject: msg.subject, body: msg.body, replyTo: msg.replyTo ?? undefined });
      } catch (e) {
        this.#failed(inst, e);
        return;
      }
      if (pending instanceof Promise) pending.then(() => this.#succeeded(inst), (e: unknown) => this.#failed(inst, e));
      else this.#succeeded(inst);
    });
  }

  #succeeded(inst: Instance): void {
    const finish = inst.finish;
    if (!finish) return; // the deadline sweeper already answered and retired it
    inst.finish = undefined;
    this.#busy.delete(inst);
    this.#release(inst);
    finish(ok(undefined));
  }

  #failed(inst: Instance, e: unknown): void {
    const finish = inst.finish;
    if (!finish) return;
    inst.finish = undefined;
    this.#busy.delete(inst);
    if (e !== null && typeof e === 'object' && 'payload' in e) {
      // The guest returned err(...): the instance is healthy.
      this.stats.errors++;
      this.#release(inst);
      finish(err(String((e as { payload: unknown }).payload)));
      return;
    }
    // Anything else unwound the instance (a trap, or a host-side failure inside it): its memory
    // may be inconsistent, so it is replaced.
    this.stats.traps++;
    this.#retire(inst);
    finish(err(`trap: ${e instanceof Error ? e.message : String(e)}`));
  }

  #sweep(): void {
    const now = performance.now();
    for (const inst of this.#busy) {
      if (now - inst.startedAt < this.#opts.timeoutMs) continue;
      const finish = inst.finish!;
      inst.finish = undefined;
      this.#busy.delete(inst);
      // The instance is still suspended in a host import; it cannot be reused.
      this.stats.timeouts++;
      this.#retire(inst);
      finish(err(`handle-message exceeded its ${this.#opts.timeoutMs} ms deadline`));
    }
  }

  close(): void {
    this.#closed = true;
    clearInterval(this.#sweeper);
    for (const i of this.#all) dispose(i);
    this.#all.clear();
    this.#idle = [];
    for (let w = this.#waiters.shift(); w; w = this.#waiters.shift()) w(new Error('component is unloaded'));
  }
}

class PoolFullError extends Error {}

/** Marks an instance dead and releases what it holds (its outbound connections). */
function dispose(inst: Instance): void {
  inst.guard.retired = true;
  for (const r of inst.guard.resources) r.destroy();
  inst.guard.resources.clear();
}

/** A FIFO queue with O(1) shift (Array#shift copies the array, which hurts at 10k waiters). */
class Fifo<T> {
  #items: Array<T | undefined> = [];
  #head = 0;
  get size(): number {
    return this.#items.length - this.#head;
  }
  push(item: T): void {
    this.#items.push(item);
  }
  shift(): T | undefined {
    if (this.#head === this.#items.length) return undefined;
    const item = this.#items[this.#head];
    this.#items[this.#head++] = undefined;
    if (this.#head > 1024 && this.#head * 2 > this.#items.length) {
      this.#items = this.#items.slice(this.#head);
      this.#head = 0;
    }
    return item;
  }
}
