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
import { ReconnectPolicy } from './backoff.ts';
import type { NextStep } from './backoff.ts';
import { dial } from './dial.ts';
import type { Dialing, DialFailure } from './dial.ts';
import { decodeBase64 } from '../protocol/codec.ts';
import { subjectError, MAX_SUBJECT_LENGTH } from '../protocol/subject.ts';
import { ProtocolError } from '../protocol/errors.ts';
import { isReserved, LINK_REPLY_PREFIX } from '../security/subject-policy.ts';
import type { GrantLimits } from '../security/subject-policy.ts';

export type LinkState = 'connecting' | 'open' | 'reconnecting' | 'failed' | 'closed';

export interface LinkStats {
  connects: number;
  /** Consecutive failed attempts (a connection closed before RECONNECT_STABLE_SEC counts). */
  failures: number;
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
  readonly stats: LinkStats = { connects: 0, failures: 0, received: 0, receivedRaw: 0, sent: 0, droppedOffline: 0 };
  state: LinkState = 'connecting';
  #bus: Bus;
  #log: Logger;
  #ws: WebSocket | undefined;
  #dialing: Dialing | undefined;
  #policy: ReconnectPolicy;
  /** Set once the open connection has lasted RECONNECT_STABLE_SEC. */
  #stable = false;
  #stableTimer: NodeJS.Timeout | undefined;
  #timer: NodeJS.Timeout | undefined;
  /** The subprotocol the server selected on the current connection; null: none. */
  subprotocol: string | null = null;
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
    this.#policy = new ReconnectPolicy(config.reconnect);
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
    this.#log.debug({ failures: this.#policy.failures }, 'dialing');
    this.#dialing = dial({
      uri: c.uri,
      protocols: c.subprotocols,
      headers,
      connectTimeoutMs: c.connectTimeoutMs,
      maxPayload: c.maxMessageBytes,
      requireSubprotocol: false,
    }, (ws, protocol) => this.#opened(ws, protocol), (f) => this.#attemptFailed(f));
  }

  #opened(ws: WebSocket, protocol: string | null): void {
    this.#dialing = undefined;
    this.#ws = ws;
    this.subprotocol = protocol;
    this.state = 'open';
    this.stats.connects++;
    this.#stable = false;
    // Only a connection that stays open this long resets the failure count: a remote that
    // accepts and closes at once (or sends a frame too large) is a failing remote.
    this.#stableTimer = setTimeout(() => {
      this.#stable = true;
      this.#policy.stable();
      this.stats.failures = 0;
    }, this.config.reconnect.stableMs);
    this.#log.info({ protocol }, 'link open');
    ws.on('message', (data: Buffer, isBinary) => this.#receive(data, isBinary));
    ws.on('pong', () => (this.#awaitingPong = false));
    ws.on('error', (err) => {
      this.#log.warn({ err: err.message }, 'link error');
      this.emit('error', err);
    });
    ws.on('close', (code, reason) => this.#closed(ws, code, reason.toString()));
    this.#startKeepalive(ws);
    const queued = this.#offline;
    this.#offline = [];
    for (const frame of queued) this.#write(frame);
    this.emit('open');
  }

  #attemptFailed(f: DialFailure): void {
    this.#dialing = undefined;
    this.#log.warn({ err: f.message, status: f.status, retryAfterMs: f.retryAfterMs }, 'link attempt failed');
    this.emit('error', Object.assign(new Error(f.message), { status: f.status }));
    if (this.state === 'closed') return;
    this.#next(this.#policy.failed(f));
  }

  #closed(ws: WebSocket, code: number, reason: string): void {
    this.#stopKeepalive();
    clearTimeout(this.#stableTimer);
    if (this.#ws !== ws) return;
    this.#ws = undefined;
    this.emit('close', code, reason);
    if (this.state === 'closed') return;
    // 1008 (policy violation): the server refuses this client; like a 401 at the handshake.
    const permanent = code === 1008;
    this.#log.info({ code, reason, stable: this.#stable }, 'link closed');
    this.#next(this.#stable && !permanent ? this.#policy.afterStableClose() : this.#policy.failed({ permanent }));
  }

  #next(step: NextStep): void {
    this.stats.failures = this.#policy.failures;
    if ('giveUp' in step) {
      this.state = 'failed';
      this.#log.error({ failures: this.#policy.failures, why: step.giveUp }, 'link gave up reconnecting');
      this.emit('failed', step.giveUp);
      return;
    }
    this.state = 'reconnecting';
    this.#log.info({ delayMs: step.retryInMs, failures: this.#policy.failures }, 'reconnecting');
    this.emit('reconnecting', step.retryInMs, this.#policy.failures);
    this.#timer = setTimeout(() => this.#connect(), step.retryInMs);
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
    clearTimeout(this.#stableTimer);
    this.#dialing?.abort();
    this.#dialing = undefined;
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
      ws.close(code, reason);
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
