// The guest's event loop, tied to the worker's: wasi:io/poll (`poll`, `pollable.block`) and the
// monotonic clock's subscriptions as JSPI-suspending imports. A guest waiting on a timer or a
// socket suspends (jco's JSPI mode) while the worker's event loop keeps running, instead of
// blocking the thread in Atomics.wait as preview2-shim's poll does.
//
// jco checks every pollable that crosses the boundary with `instanceof` the Pollable class of the
// import object, and streams' subscribe() returns preview2-shim pollables: so wsbridge's pollables
// extend preview2-shim's class and `poll` accepts both kinds.
import { hrtime } from 'node:process';
import * as io from '@bytecodealliance/preview2-shim/io';

interface ShimPollable {
  ready(): boolean;
  block(): void;
}
const ShimPollableClass = (io.poll as unknown as { Pollable: new () => ShimPollable }).Pollable;

/** A pollable whose readiness comes from wsbridge (a timer, an outbound socket's queue). */
export class HostPollable extends ShimPollableClass {
  #ready: () => boolean;
  #wait: () => Promise<void>;
  constructor(ready: () => boolean, wait: () => Promise<void>) {
    super();
    this.#ready = ready;
    this.#wait = wait;
  }
  override ready(): boolean {
    return this.#ready();
  }
  /** Suspends the guest (a promise) until ready; returns at once when it already is. */
  override block(): void {
    if (!this.#ready()) return this.#wait() as unknown as void;
  }
  /** Resolves when readiness may have changed (callers check ready() again). */
  wait(): Promise<void> {
    return this.#wait();
  }
}

// setTimeout fires at once for delays over 2^31-1 ms: longer waits are taken in steps.
const MAX_TIMER_MS = 2 ** 31 - 1;

/** Ready once the monotonic clock reaches `instant` (nanoseconds on process.hrtime's base). */
export function instantPollable(instant: bigint): HostPollable {
  let waiting: Promise<void> | undefined;
  const ready = () => hrtime.bigint() >= instant;
  return new HostPollable(ready, () => {
    // One timer per pollable however often it is polled: StarlingMonkey polls the same timers
    // again on every turn of its loop.
    waiting ??= new Promise<void>((resolve) => {
      const left = Number(instant - hrtime.bigint()) / 1e6;
      setTimeout(() => {
        waiting = undefined;
        resolve();
      }, Math.min(MAX_TIMER_MS, Math.max(0, Math.ceil(left))));
    });
    return waiting;
  });
}

export const monotonicClock = {
  now: (): bigint => hrtime.bigint(),
  resolution: (): bigint => 1n,
  subscribeInstant: (instant: bigint): HostPollable => instantPollable(instant),
  subscribeDuration: (duration: bigint): HostPollable => instantPollable(hrtime.bigint() + BigInt(duration)),
};

// Pollables from preview2-shim (stream subscriptions) have no promise: they are checked again
// on this interval while the guest waits.
const SHIM_POLL_MS = 1;

export const pollInterface = {
  Pollable: ShimPollableClass,
  /** Suspends until at least one pollable is ready; returns the indices of the ready ones. */
  async poll(list: ShimPollable[]): Promise<Uint32Array> {
    if (list.length === 0) throw new Error('wasi:io/poll.poll: empty list');
    for (;;) {
      const ready: number[] = [];
      for (let i = 0; i < list.length; i++) if (list[i]!.ready()) ready.push(i);
      if (ready.length > 0) return new Uint32Array(ready);
      const waits: Array<Promise<void>> = [];
      let shim = false;
      for (const p of list) {
        if (p instanceof HostPollable) waits.push(p.wait());
        else shim = true;
      }
      if (shim) waits.push(new Promise((r) => setTimeout(r, SHIM_POLL_MS)));
      await Promise.race(waits);
    }
  },
};
