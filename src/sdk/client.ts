// wsbridge client SDK: one typed ES module for browsers and Node (it uses the standard WebSocket
// global both have). No imports, so a browser can load it as-is; MessagePack is opt-in by
// passing a codec (for example msgpackr's pack/unpack). Its types need neither lib "dom" nor
// @types/node: the WebSocket it expects is described structurally below.
//
//   const c = connect('ws://127.0.0.1:8080/ws');   // or several URLs: connect(['ws://a/ws', 'ws://b/ws'])
//   const sub = c.subscribe('chat.*', (m) => console.log(m.subject, m.text()));
//   await sub.ready;                        // rejects with the server's code if refused
//   c.publish('chat.lobby', 'hello');
//   const answer = await c.request('svc.time', 'now?', { timeoutMs: 1000 });
//
// Where WebSocket is broken (a proxy, a middlebox) or missing, the client falls back to the
// gateway's Server-Sent Events + HTTP POST transport (same protocol, same session semantics) and
// says so in `session.transport`.

export interface Message {
  subject: string;
  body: Uint8Array;
  replyTo: string | null;
  /** Stream sequence, on subjects the server keeps history for. */
  seq?: number;
  /** On acknowledged subscriptions: how many times it was delivered before. */
  redelivered?: number;
  /** The body as UTF-8 text. */
  text(): string;
  /** The body parsed as JSON. */
  json<T = unknown>(): T;
}

export type Body = string | Uint8Array;

/** What publishAck resolves with: on subjects with history, where it was stored. */
export interface PublishResult {
  seq?: number;
  /** This id was stored before (within the duplicate window): stored once. */
  duplicate?: boolean;
}

export interface MsgpackCodec {
  encode(value: unknown): Uint8Array;
  decode(bytes: Uint8Array): unknown;
}

/** What the SDK needs of a WebSocket: the standard browser / Node ≥ 22 global satisfies it. */
export interface WebSocketLike {
  readonly readyState: number;
  binaryType: string;
  // Handler parameters are `any` so that both the standard WebSocket and the ws package fit.
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  onmessage: ((ev: any) => void) | null;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  onclose: ((ev: any) => void) | null;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  onerror: ((ev: any) => void) | null;
  send(data: string | Uint8Array): void;
  close(code?: number, reason?: string): void;
}
export type WebSocketConstructor = new (url: string, protocols?: string | string[]) => WebSocketLike;

/** A token, or a function asked for a fresh one before every dial and every in-band refresh. */
export type TokenSource = string | (() => string | Promise<string>);

export interface ConnectOptions {
  /**
   * Sent as the `token` query parameter (browsers cannot set handshake headers). A function is
   * called before every (re)connect; for a JWT with `exp` it is also called `refreshBeforeMs`
   * before expiry and the new token is sent in-band (`{"op":"auth"}`), so the session lives on.
   */
  token?: TokenSource;
  /** With a token function and a JWT: how long before `exp` to refresh it in-band (default 30 000). */
  refreshBeforeMs?: number;
  protocol?: 'json' | 'msgpack';
  /** Required with protocol 'msgpack'. */
  msgpack?: MsgpackCodec;
  /** Reconnect with exponential backoff and jitter; false to stay closed after a drop. */
  reconnect?: false | { baseMs?: number; maxMs?: number };
  /** Default timeout of request() and publishAck(). */
  requestTimeoutMs?: number;
  /** Frames kept while disconnected (publishes, requests); past it new ones are refused with `outbox_full`. Default 1000. */
  outboxMax?: number;
  /** Every frame in and out, decoded, for logs and debugging. */
  onFrame?: (direction: 'in' | 'out', frame: Record<string, unknown>) => void;
  /**
   * Told when a resumed subscription could not get everything it missed: the window moved on
   * (`reason` 'window'), or the server's stream is another one than the position was in (an
   * unknown `epoch`, e.g. after a JetStream reset: 'epoch'). What is still stored follows.
   */
  onHistoryLost?: (info: HistoryLost) => void;
  /** A subscription or onDirect handler threw or rejected. Default: console.error. */
  onHandlerError?: (err: unknown, msg: Message) => void;
  /** A WebSocket constructor, where there is no global one. */
  WebSocket?: WebSocketConstructor;
  /**
   * 'auto' (default): WebSocket, falling back to Server-Sent Events + HTTP POST when a WebSocket
   * attempt ends without a session (or there is no WebSocket at all); once a session opened over
   * the fallback, the client stays on it. 'websocket' or 'sse': that transport only. The fallback
   * speaks JSON: with protocol 'msgpack', 'auto' means WebSocket only.
   */
  transport?: 'auto' | 'websocket' | 'sse';
  /** The fallback's endpoint. Default: `url` with http(s):// and its last path segment `ws` replaced by `sse`. */
  sseUrl?: string;
  /** A fetch function for the fallback, where there is no global one. */
  fetch?: FetchLike;
}

/** What the fallback transport needs of fetch: the standard browser / Node ≥ 22 global satisfies it. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type FetchLike = (url: string, init: { method: string; headers: Record<string, string>; body?: string; signal?: any; cache?: string }) => Promise<any>;

export interface HistoryLost {
  subject: string;
  since: number;
  firstSeq: number;
  /** The stream's epoch now (the subscription continues from positions in it). */
  epoch: string;
  reason: 'window' | 'epoch';
}

export interface SessionInfo {
  /** The gateway URL of the current (or last) connection attempt. */
  url: string;
  /** The session id, or null while disconnected. */
  session: string | null;
  replyTo: string | null;
  state: 'connecting' | 'open' | 'reconnecting' | 'closed';
  /** What the current session sits on: 'websocket', 'sse' (the fallback), or null while there is none. */
  transport: 'websocket' | 'sse' | null;
  /** Close code of the last connection that ended (1006: it never opened or dropped), else null. */
  closeCode: number | null;
  /** Close reason the server gave for it ('' when none). */
  closeReason: string;
}

/** Why a connection attempt failed or a connection dropped (see onConnectError). */
export interface ConnectErrorInfo {
  /** WebSocket close code: 1006 when the server was unreachable or the handshake was refused. */
  code: number;
  reason: string;
  /** Consecutive failed attempts so far. */
  attempt: number;
  /** The transport that failed: with 'auto', a failed WebSocket attempt is followed at once (retryInMs 0) by one over 'sse'. */
  transport: 'websocket' | 'sse';
  /** Whether the client will dial again (and after how long). */
  willRetry: boolean;
  retryInMs: number | null;
}

export class RequestError extends Error {
  readonly code: string;
  constructor(code: string, message: string) {
    super(message);
    this.name = 'RequestError';
    this.code = code;
  }
}

/** ready() rejected: the client is closed. `closeCode`/`closeReason` say why. */
export class ConnectionClosedError extends RequestError {
  readonly closeCode: number;
  readonly closeReason: string;
  constructor(closeCode: number, closeReason: string, message: string) {
    super('closed', message);
    this.name = 'ConnectionClosedError';
    this.closeCode = closeCode;
    this.closeReason = closeReason;
  }
}

type Handler = (msg: Message) => void | Promise<void>;

/** Where the server announces a subject's joins and leaves: `_WSB.P.<subject>`. */
const PRESENCE_PREFIX = '_WSB.P.';

/** A member of a subject: a session subscribed to exactly it. */
export interface PresenceMember {
  session: string;
  /** The JWT `sub` (or a named token's name) the session authenticated with; null without one. */
  user: string | null;
  /** The JWT's `info` claim, when it has one. */
  info?: unknown;
}

export interface PresenceInfo {
  members: PresenceMember[];
  /** More members exist than the server lists (PRESENCE_MAX_MEMBERS). */
  truncated: boolean;
}

/** Told of a join or leave: the member, and the subject (useful with a pattern). */
export type PresenceListener = (member: PresenceMember, subject: string) => void;

/** What onJoin/onLeave return: call it to stop listening; `ready` settles like a subscription's. */
export type PresenceWatch = (() => void) & { readonly ready: Promise<void> };

export interface SubscribeOptions {
  queue?: string;
  /**
   * Acknowledged delivery (subjects with server history): each message is acked once its
   * handler has returned (or its promise resolved); a handler that throws or rejects leaves it
   * unacked, so the server delivers it again after ackWaitMs. `durable` names the server-side
   * cursor: reconnecting with the same name resumes its unacked tail, on any node.
   */
  ack?: { durable: string; ackWaitMs?: number };
}

export type SubscriptionState = 'pending' | 'active' | 'refused' | 'closed';

/**
 * What subscribe() returns: call it to unsubscribe. `ready` resolves when the server accepted
 * the pattern and rejects with a RequestError carrying the server's code (invalid_subject,
 * permission_denied, limit_exceeded, …) when it refused; a refused pattern is forgotten (never
 * re-sent on reconnect). A pattern refused later, on a re-subscribe after reconnecting, goes to
 * state 'refused' and calls onError.
 */
export interface Subscription {
  (): void;
  readonly pattern: string;
  readonly state: SubscriptionState;
  readonly error: RequestError | undefined;
  readonly ready: Promise<void>;
  onError(listener: (err: RequestError) => void): void;
}

interface SubEntry {
  queue: string | undefined;
  ack: SubscribeOptions['ack'];
  handlers: Set<Handler>;
  /** The stream position to resume from (history subjects): the last seq seen, or the ok's. */
  lastSeq: number | undefined;
  epoch: string | undefined;
  /** A re-send after a transient refusal (bus_unavailable…), with its backoff step. */
  retry: ReturnType<typeof setTimeout> | undefined;
  retries: number;
  /** Acked subscriptions: sequences delivered to handlers and not acked yet. */
  inflight: Set<number>;
  state: SubscriptionState;
  error: RequestError | undefined;
  ready: Deferred;
  errorListeners: Set<(err: RequestError) => void>;
}

interface Deferred {
  promise: Promise<void>;
  resolve(): void;
  reject(e: Error): void;
  settled: boolean;
}

interface Pending {
  resolve(m: Message): void;
  reject(e: Error): void;
  timer: ReturnType<typeof setTimeout> | undefined;
  /** Still in the outbox (never sent): rejecting it removes it from there. */
  queued: boolean;
}

const utf8 = new TextEncoder();
const fromUtf8 = new TextDecoder();
const MAX_TIMER_MS = 2 ** 31 - 1;

/** 96 random bits, base64url: unique publish ids (idempotency keys). */
function randomToken(): string {
  const b = new Uint8Array(12);
  globalThis.crypto.getRandomValues(b);
  return toBase64(b).replace(/\+/g, '-').replace(/\//g, '_');
}

function toBytes(body: Body | undefined): Uint8Array {
  if (body === undefined) return new Uint8Array(0);
  return typeof body === 'string' ? utf8.encode(body) : body;
}

function toBase64(bytes: Uint8Array): string {
  let s = '';
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(s);
}

function fromBase64(s: string): Uint8Array {
  const bin = atob(s);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

function message(subject: string, body: Uint8Array, replyTo: string | null, seq?: unknown, redelivered?: unknown): Message {
  return {
    subject,
    body,
    replyTo,
    ...(typeof seq === 'number' ? { seq } : {}),
    ...(typeof redelivered === 'number' ? { redelivered } : {}),
    text: () => fromUtf8.decode(body),
    json: <T>() => JSON.parse(fromUtf8.decode(body)) as T,
  };
}

function deferred(): Deferred {
  let resolve!: () => void;
  let reject!: (e: Error) => void;
  const d = { settled: false } as Deferred;
  d.promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  // Nobody has to listen: an unobserved rejection must not take a Node process down.
  d.promise.catch(() => {});
  d.resolve = () => {
    d.settled = true;
    resolve();
  };
  d.reject = (e) => {
    d.settled = true;
    reject(e);
  };
  return d;
}

/** The `exp` claim (ms since the epoch) of a JWT, or undefined when it is not one. */
function jwtExpiry(token: string): number | undefined {
  const part = token.split('.')[1];
  if (token.split('.').length !== 3 || !part) return undefined;
  try {
    const json = fromUtf8.decode(fromBase64(part.replace(/-/g, '+').replace(/_/g, '/').padEnd(Math.ceil(part.length / 4) * 4, '=')));
    const exp = (JSON.parse(json) as { exp?: unknown }).exp;
    return typeof exp === 'number' ? exp * 1000 : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Refusals of a subscription that say "not now", not "no": the subscription stays pending and
 * is sent again with backoff (and its position, so nothing is skipped).
 */
const TRANSIENT_CODES = new Set(['bus_unavailable', 'rate_limited', 'internal']);

export class Client {
  /** The gateway URLs, tried in turn (from a random one) on every reconnect. */
  readonly urls: readonly string[];
  #urlIndex: number;
  #opts: ConnectOptions;
  #ws: WebSocketLike | undefined;
  #info: SessionInfo;
  /** The transport of the next dial (see ConnectOptions.transport). */
  #onSse: boolean;
  /** The fallback opened a session once: stay on it. */
  #sseWorked = false;
  #subs = new Map<string, SubEntry>();
  /** Sub frames awaiting ok/error, by id. */
  #subAcks = new Map<string, SubEntry>();
  #pending = new Map<string, Pending>();
  #nextId = 0;
  #attempt = 0;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #refreshTimer: ReturnType<typeof setTimeout> | undefined;
  #outbox: Array<{ frame: Record<string, unknown>; id: string | undefined }> = [];
  #sessionListeners = new Set<(info: SessionInfo) => void>();
  #connectErrorListeners = new Set<(e: ConnectErrorInfo) => void>();
  #direct = new Set<Handler>();
  /** onJoin/onLeave listeners by subject, sharing one subscription to its presence events. */
  #presenceWatches = new Map<string, { join: Set<PresenceListener>; leave: Set<PresenceListener>; sub: Subscription }>();
  #closed = false;
  #everOpen = false;
  #token: string | undefined;
  #ready: Deferred;

  constructor(url: string | readonly string[], opts: ConnectOptions = {}) {
    if (opts.protocol === 'msgpack' && !opts.msgpack) throw new Error("protocol 'msgpack' needs the msgpack codec option");
    const hasWs = !!opts.WebSocket || typeof (globalThis as { WebSocket?: unknown }).WebSocket === 'function';
    const hasFetch = !!opts.fetch || typeof (globalThis as { fetch?: unknown }).fetch === 'function';
    const mode = opts.transport ?? 'auto';
    if (mode === 'sse' && opts.protocol === 'msgpack') throw new Error("the SSE transport speaks JSON: protocol 'msgpack' needs transport 'websocket' or 'auto'");
    const sseAllowed = mode === 'sse' || (mode === 'auto' && opts.protocol !== 'msgpack');
    if (mode !== 'sse' && !hasWs && !(sseAllowed && hasFetch)) throw new Error('no WebSocket global here: pass the WebSocket option (for example from the ws package)');
    if (mode === 'sse' && !hasFetch) throw new Error('no fetch global here: pass the fetch option');
    this.#onSse = mode === 'sse' || (!hasWs && sseAllowed);
    const urls = typeof url === 'string' ? [url] : [...url];
    if (urls.length === 0 || urls.some((u) => typeof u !== 'string' || u === '')) throw new Error('connect needs a gateway URL, or a non-empty list of them');
    this.urls = Object.freeze(urls);
    // Clients spread over the gateways: each starts at a random one.
    this.#urlIndex = Math.floor(Math.random() * urls.length);
    this.#info = { url: urls[this.#urlIndex]!, session: null, replyTo: null, state: 'connecting', transport: null, closeCode: null, closeReason: '' };
    this.#opts = opts;
    this.#ready = deferred();
    void this.#dial();
  }

  /**
   * Resolves once the server's welcome frame has arrived (the session exists). Rejects with a
   * ConnectionClosedError (its closeCode and closeReason say why) when the client is closed:
   * close() was called, or the connection ended with `reconnect: false`, or the server refused
   * the credential (1008) and there is no token function to get another. With `timeoutMs`, also
   * rejects with RequestError 'timeout' when no session exists by then (the client keeps trying).
   */
  ready(opts: { timeoutMs?: number } = {}): Promise<void> {
    const p = this.#ready.promise;
    if (opts.timeoutMs === undefined || this.#ready.settled) return p;
    const ms = Math.min(Math.max(0, opts.timeoutMs), MAX_TIMER_MS);
    return new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new RequestError('timeout', `no session within ${ms} ms (state ${this.#info.state})`)), ms);
      p.then(
        () => (clearTimeout(t), resolve()),
        (e: Error) => (clearTimeout(t), reject(e)),
      );
    });
  }

  get session(): SessionInfo {
    return { ...this.#info };
  }

  /** Called with the session info whenever it changes (connect, reconnect, close). */
  onSessionChange(listener: (info: SessionInfo) => void): () => void {
    this.#sessionListeners.add(listener);
    return () => this.#sessionListeners.delete(listener);
  }

  /** Called when a connection attempt fails or a connection drops, with the close code and reason. */
  onConnectError(listener: (e: ConnectErrorInfo) => void): () => void {
    this.#connectErrorListeners.add(listener);
    return () => this.#connectErrorListeners.delete(listener);
  }

  /** The subscriptions this client holds (and re-sends after a reconnect), with their state. */
  get subscriptions(): Array<{ pattern: string; state: SubscriptionState; queue?: string }> {
    return [...this.#subs].map(([pattern, s]) => ({ pattern, state: s.state, ...(s.queue ? { queue: s.queue } : {}) }));
  }

  /** Frames waiting for a connection (publishes, publishAcks, requests), oldest first. */
  get outbox(): Array<Readonly<Record<string, unknown>>> {
    return this.#outbox.map((o) => ({ ...o.frame }));
  }

  /** Drops everything waiting in the outbox; waiting publishAck/request calls reject with `discarded`. Returns how many. */
  discardOutbox(): number {
    const n = this.#outbox.length;
    for (const o of this.#outbox.splice(0)) if (o.id !== undefined) this.#settle(o.id, new RequestError('discarded', 'discarded from the outbox before it was sent'));
    return n;
  }

  #setInfo(info: Partial<SessionInfo>): void {
    this.#info = { ...this.#info, ...info };
    for (const l of this.#sessionListeners) this.#notify(l, { ...this.#info });
  }

  /** Calls an application callback; one that throws is reported and never breaks the client. */
  #notify<T>(listener: (value: T) => void, value: T): void {
    try {
      listener(value);
    } catch (err) {
      console.error('wsbridge: a listener threw:', err);
    }
  }

  /** The gateway URL of the current (or last) connection attempt. */
  get url(): string {
    return this.urls[this.#urlIndex]!;
  }

  async #dial(): Promise<void> {
    const Ctor = this.#opts.WebSocket ?? (globalThis as unknown as { WebSocket: WebSocketConstructor }).WebSocket;
    const onSse = this.#onSse;
    const url = new URL(this.url);
    if (this.#info.url !== this.url) this.#setInfo({ url: this.url });
    const src = this.#opts.token;
    if (src !== undefined) {
      try {
        this.#token = typeof src === 'function' ? await src() : src;
      } catch (err) {
        // Could not get a token: count it as a failed attempt, and retry like any other.
        return this.#dropped(undefined, 1006, `token function failed: ${(err as Error).message}`);
      }
      if (this.#closed) return;
      if (!onSse) url.searchParams.set('token', this.#token);
    }
    const proto = this.#opts.protocol === 'msgpack' ? 'wsbridge.v1.msgpack' : 'wsbridge.v1.json';
    let ws: WebSocketLike;
    try {
      // Called as a method of globalThis: browsers refuse fetch with another `this`.
      const fetchFn: FetchLike = this.#opts.fetch ?? ((u, init) => (globalThis as unknown as { fetch: FetchLike }).fetch(u, init));
      ws = onSse ? new SseLink(this.#opts.sseUrl ?? sseUrlOf(this.url), this.#token, fetchFn) : new Ctor(url.toString(), proto);
    } catch (err) {
      return this.#dropped(undefined, 1006, (err as Error).message);
    }
    ws.binaryType = 'arraybuffer';
    this.#ws = ws;
    ws.onmessage = (ev) => this.#receive(ev.data as string | ArrayBuffer);
    ws.onclose = (ev) => this.#dropped(ws, ev.code, ev.reason);
    ws.onerror = () => {}; // a close event follows
  }

  #dropped(ws: WebSocketLike | undefined, code: number, reason: string): void {
    if (ws !== undefined && this.#ws !== ws) return;
    this.#ws = undefined;
    // 'auto': a WebSocket attempt that ended without a session is followed at once by one over
    // the fallback; if that fails too, the attempt after the backoff tries WebSocket again. Once
    // the fallback opened a session, the client stays on it.
    let fallBack = false;
    const failedOnSse = this.#onSse;
    if ((this.#opts.transport ?? 'auto') === 'auto' && this.#opts.protocol !== 'msgpack' && this.#info.state !== 'open' && !this.#sseWorked && !this.#closed) {
      if (!this.#onSse) fallBack = this.#onSse = true;
      else if (this.#opts.WebSocket || typeof (globalThis as { WebSocket?: unknown }).WebSocket === 'function') this.#onSse = false;
    }
    clearTimeout(this.#refreshTimer);
    // What was sent is lost with the session; what never left stays queued for the next one.
    for (const [id, p] of this.#pending) if (!p.queued) this.#settle(id, new RequestError('disconnected', 'the connection closed before the answer arrived'));
    for (const [id, s] of this.#subAcks) {
      this.#subAcks.delete(id);
      if (s.state === 'pending' || s.state === 'active') s.state = 'pending';
    }
    for (const s of this.#subs.values()) {
      if (s.state === 'active') s.state = 'pending';
      // Re-sent after the next welcome anyway.
      clearTimeout(s.retry);
      s.retry = undefined;
    }
    const failures = this.#attempt++;
    // Several gateways: the next attempt goes to the next one; the backoff grows per full round.
    const n = this.urls.length;
    if (n > 1) this.#urlIndex = (this.#urlIndex + 1) % n;
    // A refused credential with a fixed token will be refused again: stop instead of looping.
    const fatal = code === 1008 && typeof this.#opts.token !== 'function';
    const stop = this.#closed || (!fallBack && (this.#opts.reconnect === false || fatal));
    let delay: number | null = fallBack ? 0 : null;
    if (!stop && !fallBack) {
      const r = this.#opts.reconnect || {};
      const base = r.baseMs ?? 250;
      const max = r.maxMs ?? 10_000;
      const d = Math.min(max, base * 2 ** Math.min(Math.floor(failures / n), 20));
      delay = Math.min(MAX_TIMER_MS, d / 2 + Math.random() * (d / 2));
    }
    if (!this.#closed) {
      const info: ConnectErrorInfo = { code, reason, attempt: this.#attempt, transport: failedOnSse ? 'sse' : 'websocket', willRetry: !stop, retryInMs: delay };
      for (const l of this.#connectErrorListeners) this.#notify(l, info);
    }
    if (stop) {
      this.#shutdown(code, reason);
      return;
    }
    if (this.#ready.settled) this.#ready = deferred();
    // Falling back on the very first connection is still connecting, not reconnecting.
    this.#setInfo({ session: null, replyTo: null, state: fallBack && this.#info.state === 'connecting' ? 'connecting' : 'reconnecting', transport: null, closeCode: code, closeReason: reason });
    this.#timer = setTimeout(() => void this.#dial(), delay!);
  }

  /** Closed for good: everything waiting rejects and is never sent. */
  #shutdown(code: number, reason: string): void {
    this.#closed = true;
    clearTimeout(this.#timer);
    clearTimeout(this.#refreshTimer);
    const detail = `close code ${code}${reason ? `: ${reason}` : ''}`;
    const why = this.#info.state !== 'open' && !this.#everOpen ? `cannot connect to ${this.url} (${detail})` : `connection to ${this.url} closed (${detail})`;
    this.#outbox.length = 0;
    for (const s of this.#subs.values()) clearTimeout(s.retry);
    for (const id of [...this.#pending.keys()]) this.#settle(id, new RequestError('disconnected', why));
    for (const s of this.#subs.values()) if (s.state !== 'refused') s.state = 'closed';
    for (const s of this.#subs.values()) if (!s.ready.settled) s.ready.reject(new ConnectionClosedError(code, reason, why));
    this.#subAcks.clear();
    if (this.#ready.settled) this.#ready = deferred();
    this.#ready.reject(new ConnectionClosedError(code, reason, why));
    this.#setInfo({ session: null, replyTo: null, state: 'closed', transport: null, closeCode: code, closeReason: reason });
  }

  #settle(id: string, outcome: Error | Message): void {
    const p = this.#pending.get(id);
    if (!p) return;
    this.#pending.delete(id);
    clearTimeout(p.timer);
    if (p.queued) {
      const i = this.#outbox.findIndex((o) => o.id === id);
      if (i >= 0) this.#outbox.splice(i, 1);
    }
    if (outcome instanceof Error) p.reject(outcome);
    else p.resolve(outcome);
  }

  #deliver(handlers: Iterable<Handler>, msg: Message): Promise<unknown> {
    const runs: Array<Promise<unknown>> = [];
    for (const h of handlers) {
      let r: unknown;
      try {
        r = h(msg);
      } catch (err) {
        this.#handlerFailed(err, msg);
        runs.push(Promise.reject(err));
        continue;
      }
      const p = Promise.resolve(r);
      p.catch((err: unknown) => this.#handlerFailed(err, msg));
      runs.push(p);
    }
    const all = Promise.all(runs);
    all.catch(() => {});
    return all;
  }

  #handlerFailed(err: unknown, msg: Message): void {
    try {
      if (this.#opts.onHandlerError) this.#opts.onHandlerError(err, msg);
      else console.error(`wsbridge: handler for ${msg.subject} failed:`, err);
    } catch {
      // an error reporter that throws must not take the client down either
    }
  }

  #receive(data: string | ArrayBuffer): void {
    // Whatever a server sends (a malformed frame, a body that is not base64) must not throw out
    // of the socket's event handler: in Node that would take the whole process down.
    try {
      this.#handleFrame(data);
    } catch (err) {
      console.error('wsbridge: dropped a frame the client could not handle:', err);
    }
  }

  #handleFrame(data: string | ArrayBuffer): void {
    let frame: Record<string, unknown>;
    try {
      frame = (typeof data === 'string' ? JSON.parse(data) : this.#opts.msgpack!.decode(new Uint8Array(data))) as Record<string, unknown>;
    } catch {
      return; // not a wsbridge frame
    }
    if (typeof frame !== 'object' || frame === null) return;
    if (this.#opts.onFrame) this.#notify((f: Record<string, unknown>) => this.#opts.onFrame!('in', f), frame);
    const op = frame.op;
    if (op === undefined) {
      const msg = message(String(frame.subject), this.#body(frame.body), (frame.reply_to as string | null) ?? null, frame.seq, frame.redelivered);
      let matched = false;
      // The gateway's own subjects (this session's reply subject) never match a subscription,
      // except presence events (`_WSB.P.<subject>`, subscribed to by onJoin/onLeave).
      if (!msg.subject.startsWith('_WSB.') || msg.subject.startsWith(PRESENCE_PREFIX)) {
        for (const [pattern, sub] of this.#subs) {
          if ((sub.state !== 'active' && sub.state !== 'pending') || !matches(pattern, msg.subject)) continue;
          matched = true;
          // Remembered for resume: after a reconnect the subscription asks for what came after it.
          if (msg.seq !== undefined && (sub.lastSeq === undefined || msg.seq > sub.lastSeq)) sub.lastSeq = msg.seq;
          const done = this.#deliver(sub.handlers, msg);
          if (sub.ack && msg.seq !== undefined) {
            const seq = msg.seq;
            // Until acked, the position to resume an acked subscription from stays below it.
            if (sub.inflight.size < 10_000) sub.inflight.add(seq);
            const s2 = sub;
            done.then(() => {
              s2.inflight.delete(seq);
              this.#send({ op: 'ack', seq }, false);
            }, () => {});
          }
        }
      }
      // Messages to this session's reply subject, targeted sends and broadcasts.
      if (!matched) void this.#deliver(this.#direct, msg);
      return;
    }
    if (op === 'welcome') {
      this.#attempt = 0;
      this.#everOpen = true;
      if (this.#onSse) this.#sseWorked = true;
      this.#setInfo({ session: String(frame.session), replyTo: String(frame.reply_to), state: 'open', transport: this.#onSse ? 'sse' : 'websocket' });
      // Subscriptions outlive connections: say them again, then flush what waited.
      for (const [subject, sub] of this.#subs) if (sub.state === 'pending') this.#sendSub(subject, sub);
      for (const o of this.#outbox.splice(0)) {
        const p = o.id !== undefined ? this.#pending.get(o.id) : undefined;
        if (p) p.queued = false;
        this.#send(o.frame, false);
      }
      this.#scheduleRefresh();
      this.#ready.resolve();
      return;
    }
    if (op === 'presence') {
      // Carried as a Message whose JSON is the answer, through the same pending-call path as res.
      const id = String(frame.id);
      if (this.#pending.has(id)) this.#settle(id, message(String(frame.subject), utf8.encode(JSON.stringify({ members: frame.members, truncated: frame.truncated })), null));
      return;
    }
    if (op === 'history_lost') {
      const lostSub = typeof frame.id === 'string' ? this.#subAcks.get(frame.id) : this.#subs.get(String(frame.subject));
      const epoch = typeof frame.epoch === 'string' ? frame.epoch : '';
      // Another stream: positions from the old one mean nothing in it; start over from what follows.
      if (lostSub && frame.reason === 'epoch') {
        lostSub.epoch = epoch;
        lostSub.lastSeq = undefined;
        lostSub.inflight.clear();
      }
      const reason = frame.reason === 'epoch' ? 'epoch' : 'window';
      if (this.#opts.onHistoryLost) this.#notify(this.#opts.onHistoryLost, { subject: String(frame.subject), since: Number(frame.since), firstSeq: Number(frame.first_seq), epoch, reason });
      return;
    }
    const id = frame.id as string | undefined;
    if (id === undefined) {
      // A subscription the server ended by itself (its durable went away, a refreshed token no
      // longer allows it): the same as a refusal, transient ones asked again.
      if (op === 'error' && typeof frame.subject === 'string') {
        const ended = this.#subs.get(frame.subject);
        if (ended && ended.state === 'active') {
          ended.state = 'pending';
          this.#subAnswered(ended, new RequestError(String(frame.code), String(frame.message)));
        }
      }
      return;
    }
    const sub = this.#subAcks.get(id);
    if (sub) {
      this.#subAcks.delete(id);
      if (op !== 'error' && typeof frame.seq === 'number' && typeof frame.epoch === 'string') {
        // The position the subscription starts after: resume from here even if no message comes.
        // Messages may have come before it (same stream): keep the later of the two. Another epoch
        // without history_lost (it cannot be compared): the stream's position it is.
        if (sub.epoch !== undefined && sub.epoch !== frame.epoch) sub.lastSeq = frame.seq;
        else if (sub.lastSeq === undefined || frame.seq > sub.lastSeq) sub.lastSeq = frame.seq;
        sub.epoch = frame.epoch;
      }
      this.#subAnswered(sub, op === 'error' ? new RequestError(String(frame.code), String(frame.message)) : undefined);
      return;
    }
    if (!this.#pending.has(id)) return;
    if (op === 'res') this.#settle(id, message(String(frame.subject), this.#body(frame.body), (frame.reply_to as string | null) ?? null, frame.seq));
    else if (op === 'error') this.#settle(id, new RequestError(String(frame.code), String(frame.message)));
    else this.#settle(id, Object.assign(message('', new Uint8Array(0), null, frame.seq), frame.duplicate === true ? { duplicate: true } : {}));
  }

  #subAnswered(sub: SubEntry, err: RequestError | undefined): void {
    if (!err) {
      sub.retries = 0;
      sub.error = undefined;
      if (sub.state === 'pending') sub.state = 'active';
      if (!sub.ready.settled) sub.ready.resolve();
      return;
    }
    if (TRANSIENT_CODES.has(err.code) && sub.state === 'pending') {
      // Not now (NATS or JetStream unavailable): stay pending, say so, and ask again with the same
      // position after a backoff. Nothing was subscribed, so nothing moves the position meanwhile.
      sub.error = err;
      for (const l of sub.errorListeners) this.#notify(l, err);
      const d = Math.min(5000, 250 * 2 ** Math.min(sub.retries++, 10));
      clearTimeout(sub.retry);
      sub.retry = setTimeout(() => {
        sub.retry = undefined;
        const pattern = [...this.#subs].find(([, s]) => s === sub)?.[0];
        if (pattern !== undefined && sub.state === 'pending' && this.#isOpen() && ![...this.#subAcks.values()].includes(sub)) this.#sendSub(pattern, sub);
      }, d / 2 + Math.random() * (d / 2));
      return;
    }
    // Refused: forget the pattern so it is never re-sent, and say so.
    sub.state = 'refused';
    sub.error = err;
    clearTimeout(sub.retry);
    for (const [pattern, s] of this.#subs) if (s === sub) this.#subs.delete(pattern);
    if (!sub.ready.settled) sub.ready.reject(err);
    for (const l of sub.errorListeners) this.#notify(l, err);
  }

  #body(b: unknown): Uint8Array {
    if (b instanceof Uint8Array) return b;
    return typeof b === 'string' ? fromBase64(b) : new Uint8Array(0);
  }

  #wire(body: Uint8Array): string | Uint8Array {
    return this.#opts.protocol === 'msgpack' ? body : toBase64(body);
  }

  #isOpen(): boolean {
    return this.#ws !== undefined && this.#ws.readyState === 1 && this.#info.state === 'open';
  }

  /** Sends now, or (when `queue`) keeps the frame in the bounded outbox until the next session. */
  #send(frame: Record<string, unknown>, queue: boolean, id?: string): boolean {
    if (!this.#isOpen()) {
      if (!queue || this.#closed) return false;
      if (this.#outbox.length >= (this.#opts.outboxMax ?? 1000)) throw new RequestError('outbox_full', `${this.#outbox.length} frames already wait for a connection (outboxMax)`);
      this.#outbox.push({ frame, id });
      return true;
    }
    if (this.#opts.onFrame) this.#notify((f: Record<string, unknown>) => this.#opts.onFrame!('out', f), frame);
    this.#ws!.send(this.#opts.protocol === 'msgpack' ? this.#opts.msgpack!.encode(frame) : JSON.stringify(frame));
    return true;
  }

  /**
   * Publishes; while disconnected the frame waits in the outbox and goes out after reconnecting.
   * Throws RequestError 'outbox_full' when outboxMax frames already wait, 'closed' after close().
   */
  publish(subject: string, body?: Body, opts: { replyTo?: string } = {}): void {
    if (this.#closed) throw new RequestError('closed', 'the client is closed');
    this.#send({ subject, body: this.#wire(toBytes(body)), ...(opts.replyTo ? { reply_to: opts.replyTo } : {}) }, true);
  }

  /** Publishes and resolves when the server has accepted the message onto its bus. */
  /**
   * Publishes and resolves when the server has accepted the message onto its bus: on subjects with
   * history, stored, with its `seq` (and `duplicate: true` when this id was stored before). The
   * frame's id is the message's idempotency key on history subjects (scoped by the server to the
   * principal): random unless `opts.id` is given; publishing again with the same `id` after a
   * `disconnected`, `timeout` or `unconfirmed` rejection stores it once (within the server's
   * duplicate window, 2 minutes). Rejects with RequestError: `bus_unavailable` (not accepted),
   * `unconfirmed` (unknown whether it was: retry with the same id), `disconnected`, `timeout`, …
   */
  async publishAck(subject: string, body?: Body, opts: { replyTo?: string; timeoutMs?: number; id?: string } = {}): Promise<PublishResult> {
    if (opts.id !== undefined && (typeof opts.id !== 'string' || opts.id.length === 0 || opts.id.length > 64)) throw new RequestError('bad_request', 'id must be a string of 1 to 64 characters');
    const m = await this.#call({ subject, body: this.#wire(toBytes(body)), ...(opts.replyTo ? { reply_to: opts.replyTo } : {}) }, opts.timeoutMs ?? this.#opts.requestTimeoutMs ?? 5000, true, opts.id ?? `p${randomToken()}`);
    return { ...(m.seq !== undefined ? { seq: m.seq } : {}), ...((m as { duplicate?: boolean }).duplicate ? { duplicate: true } : {}) };
  }

  /** Messages no subscription matched: answers on this session's reply subject, targeted sends, broadcasts. */
  onDirect(handler: Handler): () => void {
    this.#direct.add(handler);
    return () => this.#direct.delete(handler);
  }

  #sendSub(subject: string, sub: SubEntry): void {
    const id = `s${++this.#nextId}`;
    // An acked subscription resumes through its durable; a plain one with the last seq it saw.
    // The position: for an acked one, below the first message its handlers have not finished (a
    // durable made again starts there; one that still exists ignores it).
    const since = sub.ack && sub.inflight.size > 0 ? Math.min(...sub.inflight) - 1 : sub.lastSeq;
    const position = since !== undefined ? { since, ...(sub.epoch !== undefined ? { epoch: sub.epoch } : {}) } : {};
    const frame = sub.ack
      ? { op: 'sub', subject, ack: true, durable: sub.ack.durable, ...(sub.ack.ackWaitMs ? { ack_wait_ms: sub.ack.ackWaitMs } : {}), ...position, id }
      : { op: 'sub', subject, ...(sub.queue ? { queue: sub.queue } : {}), ...position, id };
    if (this.#send(frame, false)) this.#subAcks.set(id, sub);
  }

  /**
   * Subscribes `handler` to a pattern (`*`, `>` wildcards). Returns a Subscription: call it to
   * unsubscribe; `await sub.ready` to know the server accepted it (it rejects with the server's
   * error code when refused, and the pattern is forgotten).
   */
  subscribe(pattern: string, handler: Handler, opts: SubscribeOptions = {}): Subscription {
    if (this.#closed) throw new RequestError('closed', 'the client is closed');
    let sub = this.#subs.get(pattern);
    if (!sub) {
      sub = { queue: opts.queue, ack: opts.ack, handlers: new Set(), lastSeq: undefined, epoch: undefined, retry: undefined, retries: 0, inflight: new Set(), state: 'pending', error: undefined, ready: deferred(), errorListeners: new Set() };
      this.#subs.set(pattern, sub);
      if (this.#isOpen()) this.#sendSub(pattern, sub);
    }
    sub.handlers.add(handler);
    const s = sub;
    const unsubscribe = () => {
      s.handlers.delete(handler);
      if (s.handlers.size === 0 && this.#subs.get(pattern) === s) {
        this.#subs.delete(pattern);
        // Sent (answered or not): the server holds it, so tell it.
        const sent = s.state === 'active' || [...this.#subAcks.values()].includes(s);
        s.state = 'closed';
        clearTimeout(s.retry);
        if (!s.ready.settled) s.ready.reject(new RequestError('unsubscribed', `unsubscribed from ${pattern} before the server answered`));
        if (sent) this.#send({ op: 'unsub', subject: pattern }, false);
      }
    };
    return Object.defineProperties(unsubscribe, {
      pattern: { value: pattern, enumerable: true },
      state: { get: () => s.state, enumerable: true },
      error: { get: () => s.error, enumerable: true },
      ready: { get: () => s.ready.promise, enumerable: true },
      onError: { value: (l: (err: RequestError) => void) => void s.errorListeners.add(l) },
    }) as unknown as Subscription;
  }

  /** Sends a request; resolves with the first reply, rejects with RequestError (code timeout, no_responders, disconnected, outbox_full, …). */
  request(subject: string, body?: Body, opts: { timeoutMs?: number } = {}): Promise<Message> {
    const timeoutMs = opts.timeoutMs ?? this.#opts.requestTimeoutMs ?? 5000;
    return this.#call({ op: 'req', subject, body: this.#wire(toBytes(body)), timeout_ms: timeoutMs }, timeoutMs + 1000);
  }

  /**
   * Who is subscribed to exactly `subject`, on every node (the server must keep presence for it:
   * PRESENCE_SUBJECTS). Rejects with RequestError: presence_unavailable, permission_denied (the
   * session may not subscribe to it), invalid_subject, or as request() does.
   */
  async presence(subject: string, opts: { timeoutMs?: number } = {}): Promise<PresenceInfo> {
    const timeoutMs = opts.timeoutMs ?? this.#opts.requestTimeoutMs ?? 5000;
    return (await this.#call({ op: 'presence', subject }, timeoutMs)).json<PresenceInfo>();
  }

  /**
   * Calls `listener` when a session starts a subscription to exactly `subject` (or, for a pattern,
   * to any subject it matches), on any node. The returned function stops listening; `ready`
   * rejects with the server's code (presence_unavailable, permission_denied, …). Events missed
   * while disconnected are not replayed: call presence() again after a reconnect.
   */
  onJoin(subject: string, listener: PresenceListener): PresenceWatch {
    return this.#watchPresence(subject, 'join', listener);
  }

  /** Calls `listener` when a member leaves `subject`: it unsubscribed, or its session ended (its node too). */
  onLeave(subject: string, listener: PresenceListener): PresenceWatch {
    return this.#watchPresence(subject, 'leave', listener);
  }

  #watchPresence(subject: string, kind: 'join' | 'leave', listener: PresenceListener): PresenceWatch {
    let w = this.#presenceWatches.get(subject);
    if (!w) {
      const watch = { join: new Set<PresenceListener>(), leave: new Set<PresenceListener>(), sub: undefined as unknown as Subscription };
      watch.sub = this.subscribe(PRESENCE_PREFIX + subject, (m) => {
        const ev = m.json<{ event?: unknown; subject?: unknown; member?: PresenceMember }>();
        if ((ev.event !== 'join' && ev.event !== 'leave') || !ev.member) return;
        for (const l of [...watch[ev.event]]) l(ev.member, String(ev.subject));
      });
      this.#presenceWatches.set(subject, (w = watch));
    }
    const watch = w;
    watch[kind].add(listener);
    const stop = () => {
      watch[kind].delete(listener);
      if (watch.join.size === 0 && watch.leave.size === 0 && this.#presenceWatches.get(subject) === watch) {
        this.#presenceWatches.delete(subject);
        watch.sub();
      }
    };
    return Object.defineProperty(stop, 'ready', { get: () => watch.sub.ready, enumerable: true }) as PresenceWatch;
  }

  /**
   * Replaces the session's credential in-band (`{"op":"auth"}`): resolves on the server's ok,
   * rejects with 'unauthorized' (the old identity stays). The token is also used on reconnects
   * unless the token option is a function.
   */
  async auth(token: string): Promise<void> {
    await this.#call({ op: 'auth', token }, this.#opts.requestTimeoutMs ?? 5000, false);
    this.#token = token;
    if (typeof this.#opts.token !== 'function') this.#opts = { ...this.#opts, token };
    this.#scheduleRefresh();
  }

  #scheduleRefresh(): void {
    clearTimeout(this.#refreshTimer);
    const src = this.#opts.token;
    const exp = this.#token !== undefined ? jwtExpiry(this.#token) : undefined;
    if (typeof src !== 'function' || exp === undefined) return;
    const left = exp - Date.now();
    if (left <= 0) return; // the server closes it; the reconnect asks the function again
    const at = Math.min(MAX_TIMER_MS, Math.max(0, left - Math.min(this.#opts.refreshBeforeMs ?? 30_000, left / 2)));
    this.#refreshTimer = setTimeout(() => {
      void (async () => {
        const old = this.#token;
        let next: string;
        try {
          next = await src();
        } catch {
          return; // no new token: the server closes at exp, and the reconnect asks again
        }
        if (next === old || this.#closed || !this.#isOpen()) return;
        try {
          await this.auth(next);
        } catch {
          // refused or disconnected: the reconnect path handles both
        }
      })();
    }, at);
  }

  #call(frame: Record<string, unknown>, localTimeoutMs: number, queue = true, callId?: string): Promise<Message> {
    if (this.#closed) return Promise.reject(new RequestError('closed', 'the client is closed'));
    const id = callId ?? `c${++this.#nextId}`;
    if (this.#pending.has(id)) return Promise.reject(new RequestError('bad_request', `a call with id ${id} is already waiting`));
    return new Promise<Message>((resolve, reject) => {
      const p: Pending = { resolve, reject, timer: undefined, queued: false };
      this.#pending.set(id, p);
      try {
        p.queued = !this.#isOpen();
        if (!this.#send({ ...frame, id }, queue, id)) {
          this.#pending.delete(id);
          reject(new RequestError('disconnected', 'not connected'));
          return;
        }
      } catch (err) {
        this.#pending.delete(id);
        reject(err as Error);
        return;
      }
      // The server answers timeouts itself; the local timer covers a server that never answers
      // and a frame that waited in the outbox for too long (it is then removed, never sent).
      p.timer = setTimeout(() => this.#settle(id, new RequestError('timeout', `no answer within ${localTimeoutMs} ms`)), Math.min(localTimeoutMs, MAX_TIMER_MS));
    });
  }

  /** Closes for good (no reconnect): ready() and everything waiting reject; nothing queued is sent. */
  close(): void {
    if (this.#closed) return;
    const ws = this.#ws;
    this.#ws = undefined;
    if (ws) {
      ws.onclose = null;
      ws.close(1000);
    }
    this.#shutdown(1000, 'closed by the client');
  }
}

/** NATS-style subject matching, for routing messages to local handlers. */
export function matches(pattern: string, subject: string): boolean {
  const p = pattern.split('.');
  const s = subject.split('.');
  for (let i = 0; i < p.length; i++) {
    if (p[i] === '>') return s.length > i;
    if (i >= s.length || (p[i] !== '*' && p[i] !== s[i])) return false;
  }
  return p.length === s.length;
}

/** The fallback's endpoint for a WebSocket URL: http(s)://, last path segment `ws` → `sse`, no query. */
export function sseUrlOf(wsUrl: string): string {
  const u = new URL(wsUrl);
  u.protocol = u.protocol === 'wss:' || u.protocol === 'https:' ? 'https:' : 'http:';
  u.pathname = `${u.pathname.replace(/\/ws\/?$/, '').replace(/\/$/, '')}/sse`;
  u.search = '';
  u.hash = '';
  return u.toString();
}

/** HTTP answers to the POST that opens a fallback session, as the close codes a WebSocket would give. */
function closeCodeOf(status: number): number {
  if (status === 401 || status === 403) return 1008;
  if (status === 429 || status === 503) return 1013;
  return 1006;
}

/**
 * The fallback transport, shaped like a WebSocket for the Client: a POST to `<sse url>` opens the
 * session and answers with a Server-Sent Events stream (read with fetch, so the credential goes in
 * the Authorization header, never in a URL); frames go out as POSTs to `<sse url>/send`, one at a
 * time, each carrying every frame queued meanwhile (one JSON frame per line).
 */
class SseLink implements WebSocketLike {
  readyState = 0;
  binaryType = 'arraybuffer';
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  onmessage: ((ev: any) => void) | null = null;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  onclose: ((ev: any) => void) | null = null;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  onerror: ((ev: any) => void) | null = null;
  #url: string;
  #fetch: FetchLike;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  #abort: any = new (globalThis as any).AbortController();
  #sendToken = '';
  #queue: string[] = [];
  #posting = false;
  /** The server pinged: the next POST (an empty one if nothing waits) answers it. */
  #pongDue = false;
  #closeInfo: { code: number; reason: string } | undefined;

  constructor(url: string, token: string | undefined, fetchFn: FetchLike) {
    this.#url = url;
    this.#fetch = fetchFn;
    void this.#run(token);
  }

  async #run(token: string | undefined): Promise<void> {
    try {
      const res = await this.#fetch(this.#url, { method: 'POST', headers: token !== undefined ? { authorization: `Bearer ${token}` } : {}, signal: this.#abort.signal, cache: 'no-store' });
      if (res.status !== 200 || !res.body) {
        let reason = `HTTP ${res.status}`;
        try {
          const e = (await res.json()) as { error?: { code?: string } };
          if (e.error?.code) reason = e.error.code;
        } catch {
          // no JSON error body
        }
        return this.#end(closeCodeOf(res.status), reason);
      }
      const reader = res.body.getReader();
      const dec = new TextDecoder();
      let buf = '';
      let event = '';
      let data: string[] = [];
      for (;;) {
        const { value, done } = (await reader.read()) as { value?: Uint8Array; done: boolean };
        if (done) break;
        buf += dec.decode(value, { stream: true });
        let nl: number;
        while ((nl = buf.search(/\r\n|\r|\n/)) >= 0) {
          const line = buf.slice(0, nl);
          buf = buf.slice(nl + (buf[nl] === '\r' && buf[nl + 1] === '\n' ? 2 : 1));
          if (line === '') {
            if (data.length > 0 || event !== '') this.#event(event || 'message', data.join('\n'));
            event = '';
            data = [];
          } else if (line.startsWith('data:')) data.push(line.slice(line[5] === ' ' ? 6 : 5));
          else if (line.startsWith('event:')) event = line.slice(line[6] === ' ' ? 7 : 6);
          // comments (":…"), id and retry fields: nothing to do
        }
      }
      this.#end(this.#closeInfo?.code ?? 1006, this.#closeInfo?.reason ?? 'stream ended');
    } catch (err) {
      this.#end(this.#closeInfo?.code ?? 1006, this.#closeInfo?.reason ?? (err as Error).message);
    }
  }

  #event(type: string, data: string): void {
    if (this.readyState === 3) return;
    if (type === 'message') this.onmessage?.({ data });
    else if (type === 'open') {
      this.#sendToken = String((JSON.parse(data) as { send_token?: unknown }).send_token);
      this.readyState = 1;
    } else if (type === 'ping') {
      this.#pongDue = true;
      this.#flush();
    } else if (type === 'close') {
      const c = JSON.parse(data) as { code?: unknown; reason?: unknown };
      this.#closeInfo = { code: Number(c.code) || 1006, reason: String(c.reason ?? '') };
    }
  }

  send(data: string | Uint8Array): void {
    if (this.readyState !== 1) return;
    this.#queue.push(typeof data === 'string' ? data : new TextDecoder().decode(data));
    this.#flush();
  }

  #flush(): void {
    if (this.#posting || this.readyState !== 1 || (this.#queue.length === 0 && !this.#pongDue)) return;
    this.#posting = true;
    this.#pongDue = false;
    const body = this.#queue.splice(0).join('\n');
    this.#fetch(`${this.#url}/send`, { method: 'POST', headers: { authorization: `Bearer ${this.#sendToken}`, 'content-type': 'text/plain;charset=utf-8' }, body, signal: this.#abort.signal, cache: 'no-store' }).then(
      (res: { status: number }) => {
        this.#posting = false;
        // Anything but 204: the session is gone (its stream says why) or the frames were refused.
        if (res.status !== 204) return this.#end(this.#closeInfo?.code ?? 1006, this.#closeInfo?.reason ?? `send answered HTTP ${res.status}`);
        this.#flush();
      },
      (err: Error) => {
        this.#posting = false;
        this.#end(this.#closeInfo?.code ?? 1006, this.#closeInfo?.reason ?? err.message);
      },
    );
  }

  close(code = 1000, reason = ''): void {
    this.#end(code, reason);
  }

  #end(code: number, reason: string): void {
    if (this.readyState === 3) return;
    this.readyState = 3;
    this.#queue.length = 0;
    this.#abort.abort();
    const cb = this.onclose;
    if (cb) queueMicrotask(() => cb({ code, reason }));
  }
}

/** Connects to a gateway; with several URLs, reconnects go to the next one in turn (failover). */
export function connect(url: string | readonly string[], opts?: ConnectOptions): Client {
  return new Client(url, opts);
}
