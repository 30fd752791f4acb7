// wsbridge client SDK: one typed ES module for browsers and Node (it uses the standard WebSocket
// global both have). No imports, so a browser can load it as-is; MessagePack is opt-in by
// passing a codec (for example msgpackr's pack/unpack).
//
//   const c = connect('ws://127.0.0.1:8080/ws');
//   const off = c.subscribe('chat.*', (m) => console.log(m.subject, m.text()));
//   c.publish('chat.lobby', 'hello');
//   const answer = await c.request('svc.time', 'now?', { timeoutMs: 1000 });

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

export interface MsgpackCodec {
  encode(value: unknown): Uint8Array;
  decode(bytes: Uint8Array): unknown;
}

export interface ConnectOptions {
  /** Sent as the `token` query parameter (browsers cannot set handshake headers). */
  token?: string;
  protocol?: 'json' | 'msgpack';
  /** Required with protocol 'msgpack'. */
  msgpack?: MsgpackCodec;
  /** Reconnect with exponential backoff and jitter; false to stay closed after a drop. */
  reconnect?: false | { baseMs?: number; maxMs?: number };
  /** Default timeout of request(). */
  requestTimeoutMs?: number;
  /** Every frame in and out, decoded, for logs and debugging. */
  onFrame?: (direction: 'in' | 'out', frame: Record<string, unknown>) => void;
  /** Told when a resumed subscription could not get everything it missed (the window moved on). */
  onHistoryLost?: (info: { subject: string; since: number; firstSeq: number }) => void;
  /** A WebSocket constructor, where there is no global one. */
  WebSocket?: typeof WebSocket;
}

export interface SessionInfo {
  /** The session id, or null while disconnected. */
  session: string | null;
  replyTo: string | null;
  state: 'connecting' | 'open' | 'reconnecting' | 'closed';
}

export class RequestError extends Error {
  readonly code: string;
  constructor(code: string, message: string) {
    super(message);
    this.name = 'RequestError';
    this.code = code;
  }
}

type Handler = (msg: Message) => void | Promise<void>;

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

const utf8 = new TextEncoder();
const fromUtf8 = new TextDecoder();

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

export class Client {
  readonly url: string;
  #opts: ConnectOptions;
  #ws: WebSocket | undefined;
  #info: SessionInfo = { session: null, replyTo: null, state: 'connecting' };
  #subs = new Map<string, { queue: string | undefined; handlers: Set<Handler>; lastSeq: number | undefined; ack: SubscribeOptions['ack'] }>();
  #pending = new Map<string, { resolve(m: Message): void; reject(e: Error): void; timer: ReturnType<typeof setTimeout> | undefined }>();
  #nextId = 0;
  #attempt = 0;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #outbox: Array<Record<string, unknown>> = [];
  #sessionListeners = new Set<(info: SessionInfo) => void>();
  #direct = new Set<Handler>();
  #closed = false;
  #ready: { promise: Promise<void>; resolve(): void };

  constructor(url: string, opts: ConnectOptions = {}) {
    if (opts.protocol === 'msgpack' && !opts.msgpack) throw new Error("protocol 'msgpack' needs the msgpack codec option");
    this.url = url;
    this.#opts = opts;
    this.#ready = this.#deferred();
    this.#dial();
  }

  #deferred(): { promise: Promise<void>; resolve(): void } {
    let resolve!: () => void;
    const promise = new Promise<void>((r) => (resolve = r));
    return { promise, resolve };
  }

  /** Resolves once the server's welcome frame has arrived (the session exists). */
  ready(): Promise<void> {
    return this.#ready.promise;
  }

  get session(): SessionInfo {
    return { ...this.#info };
  }

  /** Called with the session info whenever it changes (connect, reconnect, close). */
  onSessionChange(listener: (info: SessionInfo) => void): () => void {
    this.#sessionListeners.add(listener);
    return () => this.#sessionListeners.delete(listener);
  }

  #setInfo(info: Partial<SessionInfo>): void {
    this.#info = { ...this.#info, ...info };
    for (const l of this.#sessionListeners) l({ ...this.#info });
  }

  #dial(): void {
    const Ctor = this.#opts.WebSocket ?? globalThis.WebSocket;
    const url = new URL(this.url);
    if (this.#opts.token !== undefined) url.searchParams.set('token', this.#opts.token);
    const proto = this.#opts.protocol === 'msgpack' ? 'wsbridge.v1.msgpack' : 'wsbridge.v1.json';
    const ws = new Ctor(url.toString(), proto);
    ws.binaryType = 'arraybuffer';
    this.#ws = ws;
    ws.onmessage = (ev: MessageEvent) => this.#receive(ev.data as string | ArrayBuffer);
    ws.onclose = () => this.#dropped(ws);
    ws.onerror = () => {}; // a close event follows
  }

  #dropped(ws: WebSocket): void {
    if (this.#ws !== ws) return;
    this.#ws = undefined;
    for (const [id, p] of this.#pending) {
      clearTimeout(p.timer);
      p.reject(new RequestError('disconnected', 'the connection closed before the reply arrived'));
      this.#pending.delete(id);
    }
    if (this.#closed || this.#opts.reconnect === false) {
      this.#setInfo({ session: null, replyTo: null, state: 'closed' });
      return;
    }
    const r = this.#opts.reconnect ?? {};
    const base = r.baseMs ?? 250;
    const max = r.maxMs ?? 10_000;
    const d = Math.min(max, base * 2 ** Math.min(this.#attempt++, 20));
    this.#ready = this.#deferred();
    this.#setInfo({ session: null, replyTo: null, state: 'reconnecting' });
    this.#timer = setTimeout(() => this.#dial(), d / 2 + Math.random() * (d / 2));
  }

  #receive(data: string | ArrayBuffer): void {
    const frame = (typeof data === 'string' ? JSON.parse(data) : this.#opts.msgpack!.decode(new Uint8Array(data))) as Record<string, unknown>;
    this.#opts.onFrame?.('in', frame);
    const op = frame.op;
    if (op === undefined) {
      const msg = message(String(frame.subject), this.#body(frame.body), (frame.reply_to as string | null) ?? null, frame.seq, frame.redelivered);
      let matched = false;
      for (const [pattern, sub] of this.#subs) {
        if (!matches(pattern, msg.subject)) continue;
        matched = true;
        // Remembered for resume: after a reconnect the subscription asks for what came after it.
        if (msg.seq !== undefined && (sub.lastSeq === undefined || msg.seq > sub.lastSeq)) sub.lastSeq = msg.seq;
        if (sub.ack && msg.seq !== undefined) {
          const seq = msg.seq;
          Promise.all([...sub.handlers].map((h) => h(msg))).then(() => this.#send({ op: 'ack', seq }), () => {});
          continue;
        }
        for (const h of sub.handlers) void h(msg);
      }
      // Messages to this session's reply subject, targeted sends and broadcasts.
      if (!matched) for (const h of this.#direct) h(msg);
      return;
    }
    if (op === 'welcome') {
      this.#attempt = 0;
      this.#setInfo({ session: String(frame.session), replyTo: String(frame.reply_to), state: 'open' });
      // Subscriptions outlive connections: say them again, then flush what waited.
      for (const [subject, sub] of this.#subs) {
        this.#send(this.#subFrame(subject, sub));
      }
      for (const f of this.#outbox.splice(0)) this.#send(f);
      this.#ready.resolve();
      return;
    }
    if (op === 'history_lost') {
      this.#opts.onHistoryLost?.({ subject: String(frame.subject), since: Number(frame.since), firstSeq: Number(frame.first_seq) });
      return;
    }
    const id = frame.id as string | undefined;
    const p = id !== undefined ? this.#pending.get(id) : undefined;
    if (!p || id === undefined) return;
    this.#pending.delete(id);
    clearTimeout(p.timer);
    if (op === 'res') p.resolve(message(String(frame.subject), this.#body(frame.body), (frame.reply_to as string | null) ?? null, frame.seq));
    else if (op === 'error') p.reject(new RequestError(String(frame.code), String(frame.message)));
    else p.resolve(message('', new Uint8Array(0), null));
  }

  #body(b: unknown): Uint8Array {
    if (b instanceof Uint8Array) return b;
    return typeof b === 'string' ? fromBase64(b) : new Uint8Array(0);
  }

  #wire(body: Uint8Array): string | Uint8Array {
    return this.#opts.protocol === 'msgpack' ? body : toBase64(body);
  }

  #send(frame: Record<string, unknown>): void {
    const ws = this.#ws;
    if (!ws || ws.readyState !== 1 || this.#info.state !== 'open') {
      this.#outbox.push(frame);
      return;
    }
    this.#opts.onFrame?.('out', frame);
    ws.send(this.#opts.protocol === 'msgpack' ? this.#opts.msgpack!.encode(frame) : JSON.stringify(frame));
  }

  /** Publishes; while disconnected the frame waits and goes out after reconnecting. */
  publish(subject: string, body?: Body, opts: { replyTo?: string } = {}): void {
    this.#send({ subject, body: this.#wire(toBytes(body)), ...(opts.replyTo ? { reply_to: opts.replyTo } : {}) });
  }

  /** Publishes and resolves when the server has accepted the message onto its bus. */
  async publishAck(subject: string, body?: Body, opts: { replyTo?: string } = {}): Promise<void> {
    await this.#call({ subject, body: this.#wire(toBytes(body)), ...(opts.replyTo ? { reply_to: opts.replyTo } : {}) }, this.#opts.requestTimeoutMs ?? 5000);
  }

  /** Messages no subscription matched: answers on this session's reply subject, targeted sends, broadcasts. */
  onDirect(handler: Handler): () => void {
    this.#direct.add(handler);
    return () => this.#direct.delete(handler);
  }

  #subFrame(subject: string, sub: { queue: string | undefined; lastSeq: number | undefined; ack: SubscribeOptions['ack'] }): Record<string, unknown> {
    // An acked subscription resumes through its durable; a plain one with the last seq it saw.
    if (sub.ack) return { op: 'sub', subject, ack: true, durable: sub.ack.durable, ...(sub.ack.ackWaitMs ? { ack_wait_ms: sub.ack.ackWaitMs } : {}) };
    return { op: 'sub', subject, ...(sub.queue ? { queue: sub.queue } : {}), ...(sub.lastSeq !== undefined ? { since: sub.lastSeq } : {}) };
  }

  /** Subscribes `handler` to a pattern (`*`, `>` wildcards); returns the unsubscribe function. */
  subscribe(pattern: string, handler: Handler, opts: SubscribeOptions = {}): () => void {
    let sub = this.#subs.get(pattern);
    if (!sub) {
      sub = { queue: opts.queue, handlers: new Set(), lastSeq: undefined, ack: opts.ack };
      this.#subs.set(pattern, sub);
      if (this.#info.state === 'open') this.#send(this.#subFrame(pattern, sub));
    }
    sub.handlers.add(handler);
    const s = sub;
    return () => {
      s.handlers.delete(handler);
      if (s.handlers.size === 0 && this.#subs.get(pattern) === s) {
        this.#subs.delete(pattern);
        if (this.#info.state === 'open') this.#send({ op: 'unsub', subject: pattern });
      }
    };
  }

  /** Sends a request; resolves with the first reply, rejects with RequestError (code timeout, no_responders, disconnected, …). */
  request(subject: string, body?: Body, opts: { timeoutMs?: number } = {}): Promise<Message> {
    const timeoutMs = opts.timeoutMs ?? this.#opts.requestTimeoutMs ?? 5000;
    return this.#call({ op: 'req', subject, body: this.#wire(toBytes(body)), timeout_ms: timeoutMs }, timeoutMs + 1000);
  }

  #call(frame: Record<string, unknown>, localTimeoutMs: number): Promise<Message> {
    const id = `c${++this.#nextId}`;
    return new Promise<Message>((resolve, reject) => {
      // The server answers timeouts itself; the local timer covers a server that never answers.
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(new RequestError('timeout', `no answer within ${localTimeoutMs} ms`));
      }, localTimeoutMs);
      this.#pending.set(id, { resolve, reject, timer });
      this.#send({ ...frame, id });
    });
  }

  /** Closes for good (no reconnect). */
  close(): void {
    this.#closed = true;
    clearTimeout(this.#timer);
    if (this.#ws) this.#ws.close(1000);
    else this.#setInfo({ session: null, replyTo: null, state: 'closed' });
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

export function connect(url: string, opts?: ConnectOptions): Client {
  return new Client(url, opts);
}
