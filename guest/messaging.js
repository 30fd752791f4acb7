// Messaging helpers over wasmcloud:messaging@0.2.0: a handler that gives messages as text, JSON or
// bytes and turns whatever it throws into handle-message's `err(string)`, and publish, reply and
// request with checked arguments (a wrong type reaching a WIT import would trap the instance).
import { bound, NO_EVENT_LOOP } from './bindings.js';
import { decodeUtf8 } from './utf8.js';
import { toBytes, describeThrown } from './bodies.js';
import { callInProgress } from './uncaught.js';

/** A failed publish or request; `code` is the gateway's (timeout, no_responders, invalid_subject, …). */
export class MessagingError extends Error {
  constructor(message, code) {
    super(message);
    this.name = 'MessagingError';
    this.code = code;
  }
}

/** A message: the one being handled, or the answer to a request. */
export class Message {
  #text;
  constructor(subject, body, replyTo) {
    /** The subject it was published to. */
    this.subject = subject;
    /** The body, as bytes. */
    this.body = body;
    /** Where answers go, or undefined. */
    this.replyTo = replyTo;
  }
  /** The body as UTF-8 text (ill-formed bytes become U+FFFD). */
  get text() {
    return (this.#text ??= decodeUtf8(this.body));
  }
  /** The body parsed as JSON; a SyntaxError naming the subject when it is not JSON. */
  json() {
    try {
      return JSON.parse(this.text);
    } catch (e) {
      throw new SyntaxError(`the body of a message on ${this.subject} is not JSON (${e instanceof Error ? e.message : String(e)})`);
    }
  }
}

function consumer() {
  const c = bound.consumer;
  if (typeof c === 'string') throw new MessagingError(c, 'not_imported');
  return c;
}

function hostError(e) {
  const text = describeThrown(e);
  const code = /^([a-z][a-z_]*):/.exec(text)?.[1] ?? 'error';
  return new MessagingError(text, code);
}

function checkSubject(what, value) {
  if (typeof value !== 'string' || value.length === 0) throw new TypeError(`${what} must be a non-empty string, got ${value === '' ? 'an empty string' : typeof value}`);
}

/**
 * Publishes `body` to `subject` (a string as UTF-8 text, bytes as they are, anything else as
 * JSON). `options.replyTo` asks for answers there. Throws a MessagingError the gateway refused.
 */
export function publish(subject, body, options = {}) {
  checkSubject('publish: subject', subject);
  const replyTo = options?.replyTo;
  if (replyTo !== undefined) checkSubject('publish: options.replyTo', replyTo);
  const bytes = toBytes(body);
  const c = consumer();
  try {
    c.publish({ subject, body: bytes, replyTo });
  } catch (e) {
    throw hostError(e);
  }
}

/**
 * Answers `msg` on its reply-to. Throws when the message has none (a TypeError naming its
 * subject), so an answer is never dropped without a trace.
 */
export function reply(msg, body) {
  if (msg === null || typeof msg !== 'object' || typeof msg.subject !== 'string') throw new TypeError('reply: the first argument must be the message being answered');
  if (msg.replyTo === undefined || msg.replyTo === null) throw new TypeError(`reply: the message on ${msg.subject} has no reply-to`);
  publish(msg.replyTo, body);
}

const MAX_U32 = 2 ** 32 - 1;

/**
 * Sends a request and resolves with the first answer, a Message. `options.timeoutMs` (default 0:
 * the gateway's REQUEST_TIMEOUT_MS) bounds the wait. Rejects with a MessagingError whose `code`
 * is timeout, no_responders, handler_failed, invalid_subject, …
 */
export function request(subject, body, options = {}) {
  // Refused at once (a promise would never settle there), so a synchronous handler fails loudly.
  if (!bound.eventLoop) throw new MessagingError(`request: ${NO_EVENT_LOOP}`, 'no_event_loop');
  return requestAsync(subject, body, options);
}

async function requestAsync(subject, body, options) {
  checkSubject('request: subject', subject);
  const timeoutMs = options?.timeoutMs ?? 0;
  if (typeof timeoutMs !== 'number' || !Number.isInteger(timeoutMs) || timeoutMs < 0 || timeoutMs > MAX_U32) throw new RangeError(`request: options.timeoutMs must be an integer from 0 to ${MAX_U32}, got ${String(timeoutMs)}`);
  const bytes = toBytes(body);
  const c = consumer();
  let answer;
  try {
    answer = c.request(subject, bytes, timeoutMs);
  } catch (e) {
    throw hostError(e);
  }
  return new Message(answer.subject, answer.body, answer.replyTo ?? undefined);
}

/**
 * Makes the `handler` export from a function called with each Message. The function may be
 * async. What it returns, unless undefined, answers the message (as reply() would). Whatever it
 * throws or rejects with, an Error object, a string, anything, becomes handle-message's
 * `err(string)`: the message fails and the instance carries on. So does an exception that a
 * timer callback or a WebSocket event listener throws while the function's promise is pending.
 *
 *   export const handler = messageHandler(async (msg) => ({ hello: msg.text }));
 */
export function messageHandler(fn) {
  if (typeof fn !== 'function') throw new TypeError('messageHandler: expected a function');
  const answer = (msg, value) => {
    if (value !== undefined) reply(msg, value);
  };
  return {
    handleMessage(raw) {
      let msg;
      let result;
      try {
        msg = new Message(raw.subject, raw.body, raw.replyTo ?? undefined);
        result = fn(msg);
        if (result === null || (typeof result !== 'object' && typeof result !== 'function') || typeof result.then !== 'function') {
          answer(msg, result);
          return;
        }
      } catch (e) {
        throw describeThrown(e);
      }
      // QuickJS: the promise would be dropped unsettled, its answer or its error lost.
      if (!bound.eventLoop) throw describeThrown(new Error(`the handler returned a promise, but ${NO_EVENT_LOOP}`));
      // A promise (or any thenable): settle it in a fresh promise, so a thenable that throws or
      // never calls back is still handled like a rejection. Until it settles, this is the call in
      // progress: an exception a timer or a WebSocket listener throws fails it (uncaught.js), and
      // what the function resolves to afterwards answers nothing.
      return new Promise((resolve, reject) => {
        let settled = false;
        const fail = (e) => {
          if (settled) return;
          settled = true;
          end();
          reject(describeThrown(e));
        };
        const end = callInProgress(fail);
        try {
          result.then(
            (value) => {
              if (settled) return;
              try {
                answer(msg, value);
              } catch (e) {
                fail(e);
                return;
              }
              settled = true;
              end();
              resolve();
            },
            fail,
          );
        } catch (e) {
          fail(e);
        }
      });
    },
  };
}
