// Client mode: one outbound WebSocket to a remote server, shared by every link to the same URL
// and handshake settings. Frames from the remote become bus messages (v1 envelopes by their
// subject, anything else on RAW_SUBJECT); local publishes matching FORWARD go out as v1
// envelopes. Reconnects with backoff, detects dead peers with pings, never echoes a message back
// to the server it came from.
import { EventEmitter } from 'node:events';
import { randomBytes } from 'node:crypto';
import WebSocket from 'ws';
import type { Bus, BusMessage, BusSubscription } from '../bus/bus.ts';
import type { LinkConfig } from '../config/load.ts';
import type { Logger } from '../observability/logger.ts';
import { backoffDelay } from './backoff.ts';
import { decodeBase64 } from '../protocol/codec.ts';
import { subjectError, MAX_SUBJECT_LENGTH } from '../protocol/subject.ts';
import { ProtocolError } from '../protocol/errors.ts';
import { isReserved, LINK_REPLY_PREFIX } from '../security/subject-policy.ts';
import type { GrantLimits } from '../security/subject-policy.ts';

export type LinkState = 'connecting' | 'open' | 'reconnecting' | 'failed' | 'closed';

export interface LinkStats {
  connects: number;
  received: number;
  receivedRaw: number;
  sent: number;
  droppedOffline: number;
}

/** Prefix of the opaque reply_to aliases a link shows its remote (FORWARD_REPLIES). */
export const LINK_ALIAS_PREFIX = '_WSB.LR.';

const DEFAULT_GRANTS: GrantLimits = { ttlMs: 60_000, maxReplies: 1, maxGrants: 256 };

export class RemoteLink extends EventEmitter {
  readonly id = randomBytes(6).toString('base64url');
  readonly config: LinkConfig;
  readonly stats: LinkStats = { connects: 0, received: 0, receivedRaw: 0, sent: 0, droppedOffline: 0 };
  state: LinkState = 'connecting';
  #bus: Bus;
  #log: Logger;
  #ws: WebSocket | undefined;
  #attempt = 0;
  #timer: NodeJS.Timeout | undefined;
  #keepalive: NodeJS.Timeout | undefined;
  #awaitingPong = false;
  #offline: string[] = [];
  #subs: BusSubscription[] = [];
  /** `_WSB.L.<128 random bits>.`: local reply subjects that lead back to the remote's reply_to. */
  #replyPrefix: string;
  /** reply_to aliases shown to the remote → the local reply subject each stands for (bounded). */
  #aliases = new Map<string, { target: string; expires: number; left: number }>();
  #grants: GrantLimits;

  constructor(config: LinkConfig, bus: Bus, log: Logger, grants: GrantLimits = DEFAULT_GRANTS) {
    super();
    this.config = config;
    this.#bus = bus;
    this.#grants = grants;
    this.#log = log.child({ link: this.id, url: redactUrl(config.uri) });
    this.#replyPrefix = `${LINK_REPLY_PREFIX}${randomBytes(16).toString('base64url')}.`;
  }

  start(): void {
    for (const pattern of this.config.forward) {
      this.#subs.push(this.#bus.subscribe(pattern, (msg) => {
        // Reserved subjects never reach this subscription (the bus filters them); messages from
        // this remote never go back to it.
        if (msg.origin === this.id) return;
        this.#send(msg.subject, msg);
      }));
    }
    this.#subs.push(this.#bus.subscribe(`${this.#replyPrefix}>`, (msg) => {
      // An error reply (handler_failed) has no envelope form: the remote's request times out.
      if (msg.errorCode !== undefined) return;
      this.#send(msg.subject.slice(this.#replyPrefix.length), msg);
    }));
    this.#connect();
  }

  #connect(): void {
    const c = this.config;
    const headers: Record<string, string> = { ...c.headers };
    if (c.authToken !== undefined) headers.Authorization = `Bearer ${c.authToken}`;
    this.#log.debug({ attempt: this.#attempt }, 'dialing');
    const ws = new WebSocket(c.uri, c.subprotocols, {
      headers,
      handshakeTimeout: c.connectTimeoutMs,
      maxPayload: c.maxMessageBytes,
      perMessageDeflate: false,
    });
    this.#ws = ws;
    ws.on('open', () => {
      this.#attempt = 0;
      this.state = 'open';
      this.stats.connects++;
      this.#log.info({ protocol: ws.protocol || undefined }, 'link open');
      this.#startKeepalive(ws);
      const queued = this.#offline;
      this.#offline = [];
      for (const frame of queued) this.#write(frame);
      this.emit('open');
    });
    ws.on('message', (data: Buffer, isBinary) => this.#receive(data, isBinary));
    ws.on('pong', () => (this.#awaitingPong = false));
    // A refused handshake (401, 403, 404 …) arrives as an error naming the status; ws then closes.
    ws.on('error', (err) => {
      this.#log.warn({ err: err.message }, 'link error');
      this.emit('error', err);
    });
    ws.on('close', (code, reason) => {
      this.#stopKeepalive();
      if (this.#ws !== ws) return;
      this.#ws = undefined;
      this.emit('close', code, reason.toString());
      if (this.state === 'closed') return;
      this.#scheduleReconnect();
    });
  }

  #scheduleReconnect(): void {
    const r = this.config.reconnect;
    if (r.maxAttempts > 0 && this.#attempt >= r.maxAttempts) {
      this.state = 'failed';
      this.#log.error({ attempts: this.#attempt }, 'link gave up reconnecting');
      this.emit('failed');
      return;
    }
    const delay = backoffDelay(this.#attempt, r.baseMs, r.maxMs);
    this.#attempt++;
    this.state = 'reconnecting';
    this.#log.info({ delayMs: delay, attempt: this.#attempt }, 'reconnecting');
    this.emit('reconnecting', delay, this.#attempt);
    this.#timer = setTimeout(() => this.#connect(), delay);
  }

  #startKeepalive(ws: WebSocket): void {
    const every = this.config.keepaliveIntervalMs;
    if (every <= 0) return;
    this.#awaitingPong = false;
    this.#keepalive = setInterval(() => {
      if (this.#awaitingPong) {
        // No pong since the last ping: the peer or the path is dead. terminate() skips the
        // close handshake, which a dead peer would never finish.
        this.#log.warn('keepalive: no pong, reconnecting');
        this.emit('dead-peer');
        ws.terminate();
        return;
      }
      this.#awaitingPong = true;
      ws.ping();
    }, every);
  }

  #stopKeepalive(): void {
    if (this.#keepalive) clearInterval(this.#keepalive);
    this.#keepalive = undefined;
  }

  #receive(data: Buffer, isBinary: boolean): void {
    let msg = this.#asEnvelope(data, isBinary);
    if (msg && isReserved(msg.subject)) {
      // The remote answers a reply_to alias it was shown: the answer goes to the local reply
      // subject behind it, once. Any other reserved subject is not the remote's to use: the
      // frame is treated as raw.
      const target = this.#useAlias(msg.subject);
      msg = target === undefined ? null : { subject: target, body: msg.body, replyTo: null };
    }
    if (msg) this.stats.received++;
    else this.stats.receivedRaw++;
    const out: BusMessage = msg ?? { subject: this.config.rawSubject, body: data, replyTo: null };
    out.origin = this.id;
    try {
      this.#bus.publish(out);
    } catch (err) {
      this.#log.warn({ err: (err as Error).message, subject: out.subject }, 'dropped inbound message');
    }
  }

  /** A v1 message envelope from the remote, or null when the frame is anything else. */
  #asEnvelope(data: Buffer, isBinary: boolean): BusMessage | null {
    if (isBinary || data.length === 0 || data[0] !== 0x7b /* { */) return null;
    let o: Record<string, unknown>;
    try {
      o = JSON.parse(data.toString('utf8'));
    } catch {
      return null;
    }
    if (typeof o !== 'object' || o === null || (o.op !== undefined && o.op !== 'pub')) return null;
    if (typeof o.subject !== 'string' || subjectError(o.subject, false) !== null) return null;
    let body: Uint8Array;
    try {
      if (typeof o.body === 'string') body = decodeBase64(o.body, undefined);
      else if (typeof o.text === 'string') body = Buffer.from(o.text, 'utf8');
      else if (o.body === undefined || o.body === null) body = Buffer.alloc(0);
      else return null;
    } catch (err) {
      if (err instanceof ProtocolError) return null;
      throw err;
    }
    let replyTo: string | null = null;
    if (typeof o.reply_to === 'string' && subjectError(o.reply_to, false) === null && this.#replyPrefix.length + o.reply_to.length <= MAX_SUBJECT_LENGTH) {
      // Answers to this reply subject must travel back over this link, whatever handler sends
      // them; local responders are handed it like any reply subject (a grant).
      replyTo = this.#replyPrefix + o.reply_to;
    }
    return { subject: o.subject, body, replyTo };
  }

  /**
   * What the remote sees as reply_to: nothing by default (local reply subjects are not shown to
   * remotes); with FORWARD_REPLIES, an opaque alias answerable like a grant (REPLY_GRANT_*).
   */
  #replyAlias(replyTo: string | null | undefined): string | null {
    if (!replyTo || !this.config.forwardReplies) return null;
    const g = this.#grants;
    const now = Date.now();
    if (this.#aliases.size >= g.maxGrants) {
      for (const [k, v] of this.#aliases) if (v.expires < now) this.#aliases.delete(k);
      if (this.#aliases.size >= g.maxGrants) this.#aliases.delete(this.#aliases.keys().next().value!);
    }
    const alias = LINK_ALIAS_PREFIX + randomBytes(16).toString('base64url');
    this.#aliases.set(alias, { target: replyTo, expires: now + g.ttlMs, left: g.maxReplies });
    return alias;
  }

  #useAlias(subject: string): string | undefined {
    const a = this.#aliases.get(subject);
    if (!a) return undefined;
    if (a.expires < Date.now() || --a.left <= 0) this.#aliases.delete(subject);
    return a.expires < Date.now() ? undefined : a.target;
  }

  #send(subject: string, msg: BusMessage): void {
    const body = Buffer.isBuffer(msg.body) ? msg.body : Buffer.from(msg.body.buffer, msg.body.byteOffset, msg.body.byteLength);
    const frame = JSON.stringify({ subject, body: body.toString('base64'), reply_to: this.#replyAlias(msg.replyTo) });
    if (this.#ws?.readyState === WebSocket.OPEN) {
      this.#write(frame);
      return;
    }
    if (this.config.offlineQueueMax === 0) {
      this.stats.droppedOffline++;
      return;
    }
    if (this.#offline.length >= this.config.offlineQueueMax) {
      this.#offline.shift();
      this.stats.droppedOffline++;
    }
    this.#offline.push(frame);
  }

  #write(frame: string): void {
    this.#ws!.send(frame);
    this.stats.sent++;
  }

  /** Closes the link for good: no reconnect. */
  async close(code = 1001, reason = 'gateway shutting down'): Promise<void> {
    this.state = 'closed';
    if (this.#timer) clearTimeout(this.#timer);
    this.#stopKeepalive();
    for (const s of this.#subs) s.unsubscribe();
    this.#subs = [];
    this.#aliases.clear();
    const ws = this.#ws;
    if (!ws || ws.readyState === WebSocket.CLOSED) return;
    await new Promise<void>((resolve) => {
      const t = setTimeout(() => {
        ws.terminate();
        resolve();
      }, 2000);
      ws.once('close', () => {
        clearTimeout(t);
        resolve();
      });
      if (ws.readyState === WebSocket.CONNECTING) ws.terminate();
      else ws.close(code, reason);
    });
  }
}

function redactUrl(uri: string): string {
  try {
    const u = new URL(uri);
    u.username = '';
    u.password = '';
    u.search = '';
    return u.toString();
  } catch {
    return '<invalid url>';
  }
}

/** A key that makes links with the same URL and handshake share one connection. */
export function linkKey(c: LinkConfig): string {
  return JSON.stringify([c.uri, c.authToken ?? null, Object.entries(c.headers).sort(), c.subprotocols]);
}
