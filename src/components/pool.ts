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
  #waiters: Array<(inst: Instance | Error) => void> = [];
  #closed = false;

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
      const guard: InstanceGuard = { retired: false };
      const exports = await this.#component.instantiate(this.#makeImports(guard));
      const handler = (exports.handler ?? exports['wasmcloud:messaging/handler@0.2.0']) as Handler | undefined;
      if (!handler || typeof handler.handleMessage !== 'function') throw new Error('component does not export wasmcloud:messaging/handler');
      this.stats.instancesCreated++;
      return { guard, handler };
    } catch (e) {
      this.#live--;
      throw e;
    }
  }

  #acquire(): Promise<Instance> {
    const idle = this.#idle.pop();
    if (idle) return Promise.resolve(idle);
    if (this.#live < this.#opts.size) return this.#create();
    if (this.#waiters.length >= this.#opts.maxQueue) return Promise.reject(new PoolFullError());
    return new Promise((resolve, reject) => this.#waiters.push((i) => (i instanceof Error ? reject(i) : resolve(i))));
  }

  #release(inst: Instance): void {
    const waiter = this.#waiters.shift();
    if (waiter) waiter(inst);
    else this.#idle.push(inst);
  }

  /** Gives an instance up; a waiter, if any, gets a fresh one. */
  #retire(inst: Instance): void {
    inst.guard.retired = true;
    this.#live--;
    const waiter = this.#waiters.shift();
    if (waiter) this.#create().then(waiter, (e: unknown) => waiter(e instanceof Error ? e : new Error(String(e))));
  }

  /** handle-message on a free instance. Never throws: every failure is an err result. */
  async call(msg: BrokerMessage): Promise<Result<void, string>> {
    if (this.#closed) return err('component is unloaded');
    this.stats.calls++;
    let inst: Instance;
    try {
      inst = await this.#acquire();
    } catch (e) {
      this.stats.rejected++;
      return err(e instanceof PoolFullError ? 'component overloaded: too many queued messages' : `instantiation failed: ${(e as Error).message}`);
    }
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<'deadline'>((resolve) => (timer = setTimeout(() => resolve('deadline'), this.#opts.timeoutMs)));
    try {
      const call = Promise.resolve().then(() => inst.handler.handleMessage({ subject: msg.subject, body: msg.body, replyTo: msg.replyTo ?? undefined }));
      const outcome = await Promise.race([call, deadline]);
      if (outcome === 'deadline') {
        // The instance is still suspended in a host import; it cannot be reused.
        call.catch(() => {});
        this.stats.timeouts++;
        this.#retire(inst);
        return err(`handle-message exceeded its ${this.#opts.timeoutMs} ms deadline`);
      }
      this.#release(inst);
      return ok(undefined);
    } catch (e) {
      if (e !== null && typeof e === 'object' && 'payload' in e) {
        // The guest returned err(...): the instance is healthy.
        this.stats.errors++;
        this.#release(inst);
        return err(String((e as { payload: unknown }).payload));
      }
      // Anything else unwound the instance (a trap, or a host-side failure inside it): its
      // memory may be inconsistent, so it is replaced.
      this.stats.traps++;
      this.#retire(inst);
      return err(`trap: ${e instanceof Error ? e.message : String(e)}`);
    } finally {
      clearTimeout(timer);
    }
  }

  close(): void {
    this.#closed = true;
    for (const i of this.#idle) i.guard.retired = true;
    this.#idle = [];
    for (const w of this.#waiters.splice(0)) w(new Error('component is unloaded'));
  }
}

class PoolFullError extends Error {}
