// Client mode: one link, one outbound WebSocket to a remote server, kept open: dialled (dial.ts),
// redialled after failures (backoff.ts), watched with pings. Frames from the remote become bus
// messages with a reply route back (inbound.ts); local publishes matching FORWARD go out as v1
// envelopes, publishes on RAW_OUT_SUBJECT as bare frames, answers on the link's reply routes in
// the form the remote asked for; all of it under one bound (outbound.ts). A message never goes back
// to the remote it came from.
import { EventEmitter } from 'node:events';
import { randomBytes } from 'node:crypto';
import { isUtf8 } from 'node:buffer';
import { readFileSync } from 'node:fs';
import WebSocket from 'ws';
import type { Bus, BusMessage, BusSubscription } from '../bus/bus.ts';
import type { LinkConfig } from '../config/load.ts';
import type { Logger } from '../observability/logger.ts';
import { ReconnectPolicy } from './backoff.ts';
import type { NextStep } from './backoff.ts';
import { dial } from './dial.ts';
import type { Dialing, DialFailure } from './dial.ts';
import { LinkRoutes } from './inbound.ts';
import { LinkOutbound, outFrame } from './outbound.ts';
import type { OutFrame, OutboundStats } from './outbound.ts';
import type { GrantLimits } from '../security/subject-policy.ts';
import { redactUrl } from './link-sharing.ts';

export { LINK_ALIAS_PREFIX } from './inbound.ts';

export type LinkState = 'connecting' | 'open' | 'reconnecting' | 'failed' | 'closed';

export interface LinkStats extends OutboundStats {
  connects: number;
  /** Failed attempts since the link was made (connections closed before RECONNECT_STABLE_SEC included). */
  failedAttempts: number;
  /** Consecutive failed attempts (a connection closed before RECONNECT_STABLE_SEC counts). */
  failures: number;
  /** Envelopes received (published on their subject). */
  received: number;
  /** Other frames received (published on RAW_SUBJECT). */
  receivedRaw: number;
  bytesIn: number;
  /** RAW_OUT_FORMAT=text publishes dropped for a body that is not UTF-8. */
  droppedNotText: number;
}

const DEFAULT_GRANTS: GrantLimits = { ttlMs: 60_000, maxReplies: 1, maxGrants: 256 };

export class RemoteLink extends EventEmitter {
  /** LINK_NAME, or link-<n>: its name in the operator API, /api/stats, metrics and logs. */
  readonly id: string;
  readonly config: LinkConfig;
  readonly stats: LinkStats = { connects: 0, failedAttempts: 0, failures: 0, received: 0, receivedRaw: 0, bytesIn: 0, droppedNotText: 0, sent: 0, bytesOut: 0, droppedOffline: 0, droppedSlow: 0, slowCloses: 0 };
  state: LinkState = 'connecting';
  /** The subprotocol the server selected on the current connection; null: none. */
  subprotocol: string | null = null;
  #bus: Bus;
  #log: Logger;
  #ws: WebSocket | undefined;
  #dialing: Dialing | undefined;
  #policy: ReconnectPolicy;
  /** Set once the open connection has lasted RECONNECT_STABLE_SEC. */
  #stable = false;
  #stableTimer: NodeJS.Timeout | undefined;
  #timer: NodeJS.Timeout | undefined;
  #keepalive: NodeJS.Timeout | undefined;
  #awaitingPong = false;
  #subs: BusSubscription[] = [];
  #routes: LinkRoutes;
  #out: LinkOutbound;
  /** The bearer token of the current attempt (AUTH_TOKEN, or AUTH_TOKEN_FILE as read for it). */
  #token: string | undefined;

  constructor(config: LinkConfig, bus: Bus, log: Logger, grants: GrantLimits = DEFAULT_GRANTS, id = config.name ?? `link-${randomBytes(4).toString('hex')}`) {
    super();
    this.id = id;
    this.config = config;
    this.#bus = bus;
    this.#log = log.child({ link: this.id, url: redactUrl(config.uri) });
    this.#policy = new ReconnectPolicy(config.reconnect);
    this.#routes = new LinkRoutes(grants);
    this.#out = new LinkOutbound(
      { maxBufferedBytes: config.maxBufferedBytes, policy: config.slowPolicy, offlineQueueMax: config.offlineQueueMax },
      this.stats,
      () => this.#slowClose(),
    );
  }

  /** What the operator API (/api/links, /api/stats) shows of the link. */
  info(): Record<string, unknown> {
    return {
      id: this.id,
      url: redactUrl(this.config.uri),
      state: this.state,
      subprotocol: this.subprotocol,
      held_bytes: this.heldBytes,
      offline_frames: this.#out.offlineFrames,
      ...this.stats,
    };
  }

  /** Bytes held for the remote now (socket and offline queue), as MAX_BUFFERED_BYTES counts them. */
  get heldBytes(): number {
    return this.#out.heldBytes;
  }

  start(): void {
    const c = this.config;
    for (const pattern of c.forward) {
      this.#subs.push(this.#bus.subscribe(pattern, (msg) => {
        // Reserved subjects (reply subjects, inboxes) never reach this subscription: the bus
        // filters them. Messages from this remote never go back to it; RAW_OUT_SUBJECT goes raw.
        if (msg.origin === this.id || msg.subject === c.rawOutSubject) return;
        this.#out.send(outFrame(JSON.stringify({ subject: msg.subject, body: bodyOf(msg).toString('base64'), reply_to: this.#routes.alias(msg.replyTo, c.forwardReplies) }), false));
      }));
    }
    if (c.rawOutSubject !== undefined) {
      this.#subs.push(this.#bus.subscribe(c.rawOutSubject, (msg) => {
        if (msg.origin === this.id) return;
        const f = rawFrame(bodyOf(msg), c.rawOutFormat);
        if (f) this.#out.send(f);
        else this.stats.droppedNotText++;
      }));
    }
    this.#subs.push(this.#bus.subscribe(`${this.#routes.prefix}>`, (msg) => {
      // An error reply (handler_failed) has no form the remote would understand: its request
      // times out on its side.
      if (msg.errorCode !== undefined) return;
      const f = this.#routes.answer(msg.subject, bodyOf(msg));
      if (f) this.#out.send(f);
    }));
    this.#connect();
  }

  #connect(): void {
    const c = this.config;
    const headers: Record<string, string> = { ...c.headers };
    let token: string | undefined;
    try {
      token = currentToken(c);
    } catch (e) {
      // The token file cannot be read now (being rotated?): a failed attempt, retried with backoff.
      setImmediate(() => this.#attemptFailed({ message: (e as Error).message, permanent: false }));
      return;
    }
    if (token !== undefined) headers.Authorization = `Bearer ${token}`;
    this.#token = token;
    this.#log.debug({ failures: this.#policy.failures }, 'dialing');
    this.#dialing = dial({
      uri: c.uri,
      protocols: c.subprotocols,
      headers,
      connectTimeoutMs: c.connectTimeoutMs,
      maxPayload: c.maxMessageBytes,
      requireSubprotocol: c.requireSubprotocol,
      tls: c.tls,
      proxyUrl: c.proxyUrl,
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
    if (protocol === null && this.config.subprotocols.length > 0) this.#log.warn({ offered: this.config.subprotocols }, 'the server selected none of the offered subprotocols (accepted; SUBPROTOCOL_REQUIRED=true refuses it)');
    this.#log.info({ protocol }, 'link open');
    ws.on('message', (data: Buffer, isBinary) => this.#receive(data, isBinary));
    ws.on('pong', () => (this.#awaitingPong = false));
    ws.on('error', (err) => {
      this.#log.warn({ err: err.message }, 'link error');
      this.emit('error', err);
    });
    ws.on('close', (code, reason) => this.#closed(ws, code, reason.toString()));
    this.#startKeepalive(ws);
    // Login frames first, with the token this attempt used: then what waited offline.
    const t = this.#token ?? '';
    this.#out.attach(ws, this.config.loginFrames.map((f) => outFrame(f.text.replaceAll('{{AUTH_TOKEN}}', f.json ? JSON.stringify(t).slice(1, -1) : t), false)));
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
    this.#out.detach();
    this.emit('close', code, reason);
    if (this.state === 'closed') return;
    // 1008 (policy violation): the server refuses this client; like a 401 at the handshake.
    const permanent = code === 1008;
    this.#log.info({ code, reason, stable: this.#stable }, 'link closed');
    this.#next(this.#stable && !permanent ? this.#policy.afterStableClose() : this.#policy.failed({ permanent }));
  }

  /** SLOW_CONSUMER_POLICY=close: the remote does not read fast enough. */
  #slowClose(): void {
    const ws = this.#ws;
    if (!ws) return;
    this.#log.warn({ heldBytes: this.#out.heldBytes }, 'remote too slow (MAX_BUFFERED_BYTES): closing with 1013');
    ws.close(1013, 'slow remote');
    // A remote that does not read will not read our close frame either.
    setTimeout(() => ws.terminate(), 2000).unref();
  }

  #next(step: NextStep): void {
    if (this.#policy.failures > this.stats.failures) this.stats.failedAttempts++;
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
    this.stats.bytesIn += data.length;
    const { msg, envelope } = this.#routes.inbound(data, isBinary, this.config.rawSubject);
    if (envelope) this.stats.received++;
    else this.stats.receivedRaw++;
    msg.origin = this.id;
    try {
      this.#bus.publish(msg);
    } catch (err) {
      this.#log.warn({ err: (err as Error).message, subject: msg.subject }, 'dropped inbound message');
    }
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
    this.#routes.clear();
    this.#out.clear();
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

/** AUTH_TOKEN, or the content of AUTH_TOKEN_FILE read now (trailing whitespace dropped). */
function currentToken(c: LinkConfig): string | undefined {
  if (c.authTokenFile === undefined) return c.authToken;
  let text: string;
  try {
    text = readFileSync(c.authTokenFile, 'utf8').trimEnd();
  } catch (e) {
    throw new Error(`AUTH_TOKEN_FILE: cannot read ${c.authTokenFile} (${(e as NodeJS.ErrnoException).code ?? String(e)})`);
  }
  if (text.length === 0 || /[\r\n\0]/.test(text)) throw new Error(`AUTH_TOKEN_FILE: ${c.authTokenFile} holds no single-line token`);
  return text;
}

function bodyOf(msg: BusMessage): Buffer {
  return Buffer.isBuffer(msg.body) ? msg.body : Buffer.from(msg.body.buffer, msg.body.byteOffset, msg.body.byteLength);
}

/** RAW_OUT_FORMAT: the frame a raw outbound publish becomes; undefined for text that is not UTF-8. */
function rawFrame(body: Buffer, format: LinkConfig['rawOutFormat']): OutFrame | undefined {
  if (format === 'binary') return outFrame(body, true);
  const text = isUtf8(body);
  if (format === 'text' && !text) return undefined;
  return text ? outFrame(body.toString('utf8'), false) : outFrame(body, true);
}

export { redactUrl };
