// The component's own timers, tracked so the WebSocket pump knows how long it may wait. A guest's
// event loop (StarlingMonkey) only runs tasks between calls into the host: while the pump waits on
// golem:websocket pollables, the guest's timers cannot fire, so it waits no longer than the next
// timer is due. Timer ids and behaviour are the engine's own; only their due times are noted.

const native = {
  setTimeout: globalThis.setTimeout,
  clearTimeout: globalThis.clearTimeout,
  setInterval: globalThis.setInterval,
  clearInterval: globalThis.clearInterval,
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

/** Starts tracking the component's timers (before any of its code runs: the kit is imported first). */
export function trackTimers() {
  if (installed || typeof native.setTimeout !== 'function') return;
  installed = true;
  globalThis.setTimeout = function setTimeout(callback, ms, ...args) {
    const delay = delayOf(ms);
    const id = native.setTimeout(function () {
      due.delete(id);
      if (typeof callback === 'function') return callback.apply(this, args);
    }, delay);
    due.set(id, performance.now() + delay);
    return id;
  };
  globalThis.setInterval = function setInterval(callback, ms, ...args) {
    const delay = delayOf(ms);
    const id = native.setInterval(function () {
      due.set(id, performance.now() + delay);
      if (typeof callback === 'function') return callback.apply(this, args);
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
}

/** When the component's next timer is due (performance.now() ms), or undefined when none is pending. */
export function nextTimerDue() {
  let next;
  for (const t of due.values()) if (next === undefined || t < next) next = t;
  return next;
}
