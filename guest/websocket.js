// The WHATWG WebSocket class for components, on golem:websocket/client or
// wasmcloud:websocket/client (whichever the world imports; golem.js, wasmcloud.js). It behaves as
// a browser's: the constructor returns at once and connects in a later task; open, message, error
// and close are events fired in tasks of the guest's event loop, one message per task, so they
// fire while a handle-message call awaits them; close codes and reasons are the server's; a message
// that arrives once close() was called is dropped. A connection cut without a close frame ends
// with close (1006, not clean); a connection that fails (refused, a protocol error, an oversized
// message, closed while connecting) with error, then close (1006). What a listener throws fails
// the messageHandler call in progress (uncaught.js) where a browser would only report it.
//
// The pump: one task looks at every open connection and fires at most one event. With golem,
// when nothing is ready it suspends the instance in wasi:io/poll until a message arrives or the
// component's next timer is due; with wasmcloud (whose receive never waits) it looks again after
// 1, 2, 4 … 16 ms, and at once after any activity.
import { bound } from './bindings.js';
import { utf8Length } from './utf8.js';
import { kitSetTimeout, nextTimerDue } from './timers.js';
import { reportUncaught } from './uncaught.js';

// QuickJS builds have neither Event nor EventTarget nor DOMException: the module must still load
// there (the kit's messaging half works on QuickJS), and the constructor says why it cannot run.
const EventBase = typeof Event === 'function' ? Event : class {};
const EventTargetBase = typeof EventTarget === 'function' ? EventTarget : class {};

const CONNECTING = 0;
const OPEN = 1;
const CLOSING = 2;
const CLOSED = 3;
const MAX_IDLE_MS = 16;

/** A message event (the engine has Event and EventTarget, not MessageEvent). */
export class MessageEvent extends EventBase {
  #data;
  #origin;
  #lastEventId;
  constructor(type, init = {}) {
    super(type, init);
    this.#data = init.data === undefined ? null : init.data;
    this.#origin = init.origin === undefined ? '' : String(init.origin);
    this.#lastEventId = init.lastEventId === undefined ? '' : String(init.lastEventId);
  }
  get data() {
    return this.#data;
  }
  get origin() {
    return this.#origin;
  }
  get lastEventId() {
    return this.#lastEventId;
  }
  get source() {
    return null;
  }
  get ports() {
    return [];
  }
}

export class CloseEvent extends EventBase {
  #wasClean;
  #code;
  #reason;
  constructor(type, init = {}) {
    super(type, init);
    this.#wasClean = Boolean(init.wasClean);
    this.#code = init.code === undefined ? 0 : Number(init.code) & 0xffff;
    this.#reason = init.reason === undefined ? '' : String(init.reason);
  }
  get wasClean() {
    return this.#wasClean;
  }
  get code() {
    return this.#code;
  }
  get reason() {
    return this.#reason;
  }
}

/** The `error` event: a browser's plain Event, plus the reason in `message` (as Node's WebSocket). */
export class ErrorEvent extends EventBase {
  #message;
  #error;
  constructor(type, init = {}) {
    super(type, init);
    this.#message = init.message === undefined ? '' : String(init.message);
    this.#error = init.error;
  }
  get message() {
    return this.#message;
  }
  get error() {
    return this.#error;
  }
}

// ── the pump ─────────────────────────────────────────────────────────────────────────────────

/** Sockets with a connection (OPEN or CLOSING), in the order they are looked at. */
const live = new Set();
let pumpQueued = false;
let idleMs = 0;
/** Sockets whose connect task has not run yet: the pump must not wait in poll before it does. */
let connectsQueued = 0;

function schedulePump(delayMs) {
  if (pumpQueued) return;
  pumpQueued = true;
  kitSetTimeout(pump, delayMs);
}

/** Activity (a send, an event): the next look comes at once. */
function wake() {
  idleMs = 0;
}

function pump() {
  pumpQueued = false;
  if (live.size === 0) return;
  for (const ws of live) {
    // Round robin: a socket that had its turn goes to the back.
    const got = ws[internal].take();
    if (got) {
      live.delete(ws);
      if (ws.readyState !== CLOSED) live.add(ws);
      wake();
      schedulePump(0);
      return;
    }
  }
  const transport = bound.websocket;
  if (typeof transport.wait === 'function') {
    // Wait no longer than the component's next timer: it cannot fire while the instance waits.
    // Not at all while a socket's connect task is queued (a socket opened in a later call, while
    // one left open earlier is silent): it could not run either.
    const due = nextTimerDue();
    const timeoutMs = connectsQueued > 0 ? 0 : due === undefined ? undefined : due - performance.now();
    try {
      if (timeoutMs === undefined || timeoutMs > 0) transport.wait([...live].map((ws) => ws[internal].conn), timeoutMs);
      schedulePump(0);
    } catch {
      schedulePump(MAX_IDLE_MS); // cannot wait here: look again later instead
    }
  } else {
    idleMs = Math.min(Math.max(1, idleMs * 2), MAX_IDLE_MS);
    schedulePump(idleMs);
  }
}

// ── the class ────────────────────────────────────────────────────────────────────────────────

const internal = Symbol('wsbridge.websocket');
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

function domError(message, name) {
  if (typeof DOMException === 'function') return new DOMException(message, name);
  const e = new Error(message);
  e.name = name;
  return e;
}

/** WebIDL [Clamp] unsigned short. */
function clampCode(value) {
  const n = Number(value);
  if (Number.isNaN(n)) return 0;
  const c = Math.min(Math.max(n, 0), 0xffff);
  const f = Math.floor(c);
  const diff = c - f;
  return diff > 0.5 || (diff === 0.5 && f % 2 === 1) ? f + 1 : f;
}

/** WebIDL USVString: lone surrogates become U+FFFD (a symbol is a TypeError, as in WebIDL). */
function usv(value) {
  const s = `${value}`;
  return typeof s.toWellFormed === 'function' ? s.toWellFormed() : s.replace(/[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g, '\ufffd');
}

function byteSize(data) {
  if (typeof data === 'string') return utf8Length(data);
  if (typeof Blob === 'function' && data instanceof Blob) return data.size;
  return data.byteLength;
}

class Internal {
  constructor(ws, url, protocols) {
    this.ws = ws;
    this.url = url;
    this.origin = new URL(url).origin;
    this.protocols = protocols;
    this.readyState = CONNECTING;
    this.protocol = '';
    this.binaryType = 'blob';
    this.buffered = 0;
    this.conn = undefined;
    /** Sends waiting for a Blob before them to be read (order is kept). */
    this.outbox = [];
    this.handlers = new Map();
  }

  connect() {
    if (this.readyState !== CONNECTING) return this.fail('the WebSocket was closed before the connection was established');
    try {
      this.conn = bound.websocket.connect(this.url, this.protocols);
    } catch (e) {
      return this.fail(e instanceof Error ? e.message : String(e));
    }
    if (this.readyState !== CONNECTING) {
      // close() cannot run while connect suspends the instance, but keep the state machine whole.
      this.conn.dispose();
      this.conn = undefined;
      return this.fail('the WebSocket was closed before the connection was established');
    }
    this.protocol = this.conn.protocol;
    this.readyState = OPEN;
    live.add(this.ws);
    schedulePump(0);
    this.ws.dispatchEvent(new Event('open'));
  }

  /** Takes one event from the connection and fires it; false when there was none. */
  take() {
    let e;
    try {
      e = this.conn.next();
    } catch (err) {
      e = { kind: 'fail', message: err instanceof Error ? err.message : String(err) };
    }
    if (e === undefined) return false;
    switch (e.kind) {
      case 'skipped':
        return true;
      case 'text':
        // A message that arrives once close() was called is dropped, as the standard says.
        if (this.readyState !== OPEN) return true;
        this.ws.dispatchEvent(new MessageEvent('message', { data: e.data, origin: this.origin }));
        return true;
      case 'binary': {
        if (this.readyState !== OPEN) return true;
        const bytes = e.data;
        const data = this.binaryType === 'arraybuffer' ? bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) : new Blob([bytes]);
        this.ws.dispatchEvent(new MessageEvent('message', { data, origin: this.origin }));
        return true;
      }
      case 'close':
        this.finish(true, e.code, e.reason, undefined);
        return true;
      case 'lost':
        this.finish(false, 1006, '', undefined, false);
        return true;
      default:
        this.finish(false, 1006, '', e.message);
        return true;
    }
  }

  /** The connection never opened (refused, failed, or closed while connecting). */
  fail(message) {
    this.readyState = CLOSED;
    this.ws.dispatchEvent(new ErrorEvent('error', { message }));
    this.ws.dispatchEvent(new CloseEvent('close', { wasClean: false, code: 1006, reason: '' }));
  }

  finish(clean, code, reason, message, error = !clean) {
    this.readyState = CLOSED;
    live.delete(this.ws);
    this.outbox.length = 0;
    const conn = this.conn;
    this.conn = undefined;
    try {
      conn?.dispose();
    } catch {
      // already gone with the instance's connections
    }
    if (error) this.ws.dispatchEvent(new ErrorEvent('error', { message }));
    this.ws.dispatchEvent(new CloseEvent('close', { wasClean: clean, code, reason }));
  }

  transmit(data) {
    try {
      if (typeof data === 'string') this.conn.sendText(data);
      else this.conn.sendBinary(data);
    } catch {
      // The connection has just ended: the pump fires close (a browser's send does not throw).
    }
    wake();
  }

  flushOutbox() {
    while (this.outbox.length > 0) {
      const head = this.outbox[0];
      if (head.pending) return;
      this.outbox.shift();
      this.buffered -= head.size;
      if (this.readyState === OPEN && this.conn) this.transmit(head.data);
    }
  }
}

export class WebSocket extends EventTargetBase {
  constructor(url, protocols = []) {
    super();
    if (arguments.length < 1) throw new TypeError("Failed to construct 'WebSocket': 1 argument required, but only 0 present.");
    const transport = bound.websocket;
    if (typeof transport === 'string') throw domError(`WebSocket: ${transport}`, 'NotSupportedError');
    let parsed;
    try {
      parsed = new URL(`${url}`);
    } catch {
      throw domError(`Failed to construct 'WebSocket': The URL '${url}' is invalid.`, 'SyntaxError');
    }
    if (parsed.protocol === 'http:') parsed.protocol = 'ws:';
    else if (parsed.protocol === 'https:') parsed.protocol = 'wss:';
    if (parsed.protocol !== 'ws:' && parsed.protocol !== 'wss:') throw domError(`Failed to construct 'WebSocket': The URL's scheme must be either 'http', 'https', 'ws', or 'wss'. '${parsed.protocol}' is not allowed.`, 'SyntaxError');
    if (parsed.hash !== '' || parsed.href.endsWith('#')) throw domError(`Failed to construct 'WebSocket': The URL contains a fragment identifier ('${parsed.hash}'). Fragment identifiers are not allowed in WebSocket URLs.`, 'SyntaxError');
    // WebIDL (DOMString or sequence<DOMString>): an iterable object is a list, anything else one string.
    const list = protocols !== null && typeof protocols === 'object' && typeof protocols[Symbol.iterator] === 'function' ? Array.from(protocols, (p) => `${p}`) : [`${protocols}`];
    const seen = new Set();
    for (const p of list) {
      if (!TOKEN.test(p)) throw domError(`Failed to construct 'WebSocket': The subprotocol '${p}' is invalid.`, 'SyntaxError');
      // Case-sensitive, as in browsers: 'chat' and 'Chat' are two subprotocols.
      if (seen.has(p)) throw domError(`Failed to construct 'WebSocket': The subprotocol '${p}' is duplicated.`, 'SyntaxError');
      seen.add(p);
    }
    if (list.length > 0 && !transport.subprotocols) throw domError(`WebSocket: subprotocols need wasmcloud:websocket/client@0.1.1-draft; ${transport.name} cannot offer them`, 'NotSupportedError');
    const self = new Internal(this, parsed.href, list);
    Object.defineProperty(this, internal, { value: self });
    connectsQueued++;
    kitSetTimeout(() => {
      connectsQueued--;
      self.connect();
    }, 0);
  }

  get url() {
    return this[internal].url;
  }
  get readyState() {
    return this[internal].readyState;
  }
  get bufferedAmount() {
    return this[internal].buffered;
  }
  get extensions() {
    return '';
  }
  get protocol() {
    return this[internal].protocol;
  }
  get binaryType() {
    return this[internal].binaryType;
  }
  set binaryType(value) {
    // An enumerated attribute: other values are ignored, as in a browser.
    if (value === 'blob' || value === 'arraybuffer') this[internal].binaryType = value;
  }

  send(data) {
    if (arguments.length < 1) throw new TypeError("Failed to execute 'send' on 'WebSocket': 1 argument required, but only 0 present.");
    const self = this[internal];
    if (self.readyState === CONNECTING) throw domError("Failed to execute 'send' on 'WebSocket': Still in CONNECTING state.", 'InvalidStateError');
    let payload;
    if (typeof data === 'string') payload = data;
    else if (data instanceof ArrayBuffer) payload = new Uint8Array(data.slice(0));
    else if (ArrayBuffer.isView(data)) payload = new Uint8Array(data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength));
    else if (typeof Blob === 'function' && data instanceof Blob) payload = data;
    else payload = usv(data);
    if (typeof payload === 'string') payload = usv(payload);
    const size = byteSize(payload);
    if (self.readyState !== OPEN) {
      // CLOSING or CLOSED: discarded, but counted, as the standard says.
      self.buffered += size;
      return;
    }
    if (typeof Blob === 'function' && payload instanceof Blob) {
      const entry = { pending: true, size, data: undefined };
      self.outbox.push(entry);
      self.buffered += size;
      payload.arrayBuffer().then(
        (buf) => {
          entry.pending = false;
          entry.data = new Uint8Array(buf);
          self.flushOutbox();
        },
        () => {
          entry.pending = false;
          entry.data = new Uint8Array(0);
          self.flushOutbox();
        },
      );
      return;
    }
    if (self.outbox.length > 0) {
      self.outbox.push({ pending: false, size, data: payload });
      self.buffered += size;
      return;
    }
    self.transmit(payload);
  }

  close(code = undefined, reason = undefined) {
    const self = this[internal];
    if (code !== undefined) {
      code = clampCode(code);
      if (code !== 1000 && (code < 3000 || code > 4999)) throw domError(`Failed to execute 'close' on 'WebSocket': The close code must be either 1000, or between 3000 and 4999. ${code} is neither.`, 'InvalidAccessError');
    }
    if (reason !== undefined) {
      reason = usv(reason);
      if (utf8Length(reason) > 123) throw domError(`Failed to execute 'close' on 'WebSocket': The close reason must not be greater than 123 UTF-8 bytes.`, 'SyntaxError');
    }
    if (self.readyState === CLOSING || self.readyState === CLOSED) return;
    if (self.readyState === CONNECTING) {
      // Fails the connection: the connect task fires error, then close (1006).
      self.readyState = CLOSING;
      return;
    }
    self.readyState = CLOSING;
    try {
      // A reason without a code goes out with 1000, as a browser sends it.
      self.conn.close(code ?? (reason ? 1000 : undefined), reason);
    } catch {
      // Ended meanwhile: the pump fires close.
    }
    wake();
  }

  addEventListener(type, listener, options) {
    super.addEventListener(type, guardOf(listener, type, options), options);
  }

  removeEventListener(type, listener, options) {
    super.removeEventListener(type, guardOf(listener, type, options, false), options);
  }

  get onopen() {
    return handler(this, 'open');
  }
  set onopen(fn) {
    setHandler(this, 'open', fn);
  }
  get onmessage() {
    return handler(this, 'message');
  }
  set onmessage(fn) {
    setHandler(this, 'message', fn);
  }
  get onerror() {
    return handler(this, 'error');
  }
  set onerror(fn) {
    setHandler(this, 'error', fn);
  }
  get onclose() {
    return handler(this, 'close');
  }
  set onclose(fn) {
    setHandler(this, 'close', fn);
  }
}

for (const [name, value] of Object.entries({ CONNECTING, OPEN, CLOSING, CLOSED })) {
  Object.defineProperty(WebSocket, name, { value, enumerable: true });
  Object.defineProperty(WebSocket.prototype, name, { value, enumerable: true });
}

/** listener → (capture and type → the function registered in its place). */
const guards = new WeakMap();

/**
 * What is registered for a listener: a function that calls it (or its handleEvent) and reports
 * what it throws (uncaught.js) instead of letting it escape into the engine, which would print it
 * and leave a call that awaits this socket hanging until its deadline. One per listener, capture
 * flag and type, so adding twice registers once and removing finds it.
 */
function guardOf(listener, type, options, create = true) {
  if (listener === null || (typeof listener !== 'function' && typeof listener !== 'object')) return listener;
  const capture = typeof options === 'boolean' ? options : Boolean(options?.capture);
  const key = `${capture}:${type}`;
  let byKey = guards.get(listener);
  if (!byKey) {
    if (!create) return listener;
    guards.set(listener, (byKey = new Map()));
  }
  let guard = byKey.get(key);
  if (!guard && create) {
    guard = function (event) {
      try {
        if (typeof listener === 'function') return listener.call(this, event);
        return listener.handleEvent(event);
      } catch (e) {
        reportUncaught(e);
      }
    };
    byKey.set(key, guard);
  }
  return guard ?? listener;
}

function handler(ws, type) {
  return ws[internal].handlers.get(type)?.fn ?? null;
}

/**
 * An event handler attribute, as in HTML: set, it is one listener in the order it was first set;
 * null removes it; setting it again replaces the function in place.
 */
function setHandler(ws, type, fn) {
  const handlers = ws[internal].handlers;
  const slot = handlers.get(type);
  if (typeof fn !== 'function') {
    if (slot) {
      ws.removeEventListener(type, slot.listener);
      handlers.delete(type);
    }
    return;
  }
  if (slot) {
    slot.fn = fn;
    return;
  }
  const s = { fn, listener: (event) => s.fn.call(ws, event) };
  handlers.set(type, s);
  ws.addEventListener(type, s.listener);
}
