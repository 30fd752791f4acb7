// Exceptions nothing catches: thrown by a timer callback, a queueMicrotask callback or a WebSocket
// event listener. Left alone, StarlingMonkey either ends the call with "event loop error" (a timer,
// and the instance traps) or prints the exception and goes on (a listener), leaving a call that
// awaits what the listener was to do hanging until its deadline, when the worker is terminated.
// The kit catches them (timers.js, websocket.js) and fails the messageHandler call in progress
// with them, as if its function had thrown: the message gets err(string) and the instance carries
// on. Outside such a call they are printed to stderr, as a browser reports them.
import { describeThrown } from './bodies.js';

/** Fails the messageHandler call in progress, if there is one. */
let failCall;

export function reportUncaught(error) {
  if (failCall) failCall(error);
  else if (typeof console === 'object') console.error(`wsbridge/guest: uncaught ${describeThrown(error)}`);
}

/** Marks a messageHandler call as in progress (one at a time per instance); returns its end. */
export function callInProgress(fail) {
  failCall = fail;
  return () => {
    if (failCall === fail) failCall = undefined;
  };
}

/** `fn` with what it throws reported instead of thrown. */
export function guarded(fn) {
  return function (...args) {
    try {
      return fn.apply(this, args);
    } catch (e) {
      reportUncaught(e);
    }
  };
}
