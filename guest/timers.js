// The component's own timers (and microtasks), wrapped before any of its code runs (the kit is
// evaluated first):
// - what their callbacks throw is reported (uncaught.js) instead of ending the call with "event
//   loop error", which traps the instance;
// - their due times are noted: a guest's event loop (StarlingMonkey) only runs tasks between calls
//   into the host, so while the WebSocket pump waits on golem:websocket pollables the guest's
//   timers cannot fire; it waits no longer than the next timer is due.
// Timer ids and behaviour are the engine's own.
import { guarded } from './uncaught.js';

const native = {
  setTimeout: globalThis.setTimeout,
  clearTimeout: globalThis.clearTimeout,
  setInterval: globalThis.setInterval,
  clearInterval: globalThis.clearInterval,
  queueMicrotask: globalThis.queueMicrotask,
};

/** The kit's own timers: untracked. */
export const kitSetTimeout = (fn, ms) => native.setTimeout(fn, ms);

/** Timer id → when it is due (performance.now() ms). */
const due = new Map();
let installed = false;

const delayOf = (ms) => {
  const n = Number(ms);
  return Number.isFinite(n) && n > 0 ? n : 0;
};

/** Wraps the component's timers (an engine without timers, QuickJS, is left alone). */
export function installTimers() {
  if (installed || typeof native.setTimeout !== 'function') return;
  installed = true;
  globalThis.setTimeout = function setTimeout(callback, ms, ...args) {
    const delay = delayOf(ms);
    const run = typeof callback === 'function' ? guarded(callback) : undefined;
    const id = native.setTimeout(function () {
      due.delete(id);
      return run?.apply(this, args);
    }, delay);
    due.set(id, performance.now() + delay);
    return id;
  };
  globalThis.setInterval = function setInterval(callback, ms, ...args) {
    const delay = delayOf(ms);
    const run = typeof callback === 'function' ? guarded(callback) : undefined;
    const id = native.setInterval(function () {
      due.set(id, performance.now() + delay);
      return run?.apply(this, args);
    }, delay);
    due.set(id, performance.now() + delay);
    return id;
  };
  globalThis.clearTimeout = function clearTimeout(id) {
    due.delete(id);
    return native.clearTimeout(id);
  };
  globalThis.clearInterval = function clearInterval(id) {
    due.delete(id);
    return native.clearInterval(id);
  };
  if (typeof native.queueMicrotask === 'function') {
    // A non-function still gets the engine's TypeError.
    globalThis.queueMicrotask = (callback) => native.queueMicrotask(typeof callback === 'function' ? guarded(callback) : callback);
  }
}

/** When the component's next timer is due (performance.now() ms), or undefined when none is pending. */
export function nextTimerDue() {
  let next;
  for (const t of due.values()) if (next === undefined || t < next) next = t;
  return next;
}
