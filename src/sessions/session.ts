// One client connection in server mode (a WebSocket, or the SSE fallback: see session-socket.ts): its identity, its subscriptions, its counters, and the
// outbound path with the slow-consumer policy. Routing decisions live in SessionHub.
import { addToBatch, batchFrame, canWriteFrames, corkUntilTickEnd, flushBatch, queuedBytes, WebSocket } from './preframed.ts';
import { flushHeldFanout } from './fanout.ts';
import type { SessionSocket } from './session-socket.ts';
import { setLongTimeout } from './long-timeout.ts';
import type { LongTimeout } from './long-timeout.ts';
import type { Codec, WireData } from '../protocol/codec.ts';
import type { ServerFrame } from '../protocol/frames.ts';
import { CloseCodes } from '../protocol/errors.ts';
import type { Identity, Permission } from '../auth/authenticator.ts';
import type { BusMessage } from '../bus/bus.ts';
import { ReplyGrants } from '../security/subject-policy.ts';
import type { Actor, GrantLimits } from '../security/subject-policy.ts';

export type SlowConsumerPolicy = 'close' | 'drop';

/**
 * A message fanned out to many sessions: its whole WebSocket frame for a session's codec, built
 * once for all of them (passed as an object, not a closure, so a fan-out allocates nothing per
 * delivery).
 */
export interface SharedFrame {
  framed(session: Session): Buffer;
}

/**
 * Messages fanned out to many sessions at once (consecutive messages to one subject's
 * subscribers in one tick), given to each session in one call (deliverBurst).
 */
export interface SharedBurst {
  readonly size: number;
  /** Reply subjects that are grants, each with the number of the messages carrying it. */
  readonly grants: ReadonlyMap<string, number>;
  /**
   * The messages as runs of whole frames for the session's codec (at most BATCH_BYTES each, or
   * one larger frame), each run one buffer joined once for every session with that codec.
   */
  runs(session: Session): readonly SharedRun[];
  /** Message `i` alone, encoded once per codec, for a socket ws must write itself (deflate). */
  message(i: number): SharedFrame & { for(session: Session): Buffer };
}
export interface SharedRun {
  readonly buf: Buffer;
  /** Messages in the run. */
  readonly count: number;
  /** Their encoded size without the WebSocket headers (what bytesOut counts per message). */
  readonly bytes: number;
}

export interface SessionLimits {
  /** Bytes queued in the socket beyond which the slow-consumer policy applies. */
  maxBufferedBytes: number;
  /** How reply subjects handed to the session may be answered (REPLY_GRANT_*). */
  grants: GrantLimits;
  slowConsumerPolicy: SlowConsumerPolicy;
  /** Node-wide totals the session adds to (for metrics). */
  totals: TrafficTotals;
}

export interface TrafficTotals {
  messagesIn: number;
  messagesOut: number;
  bytesIn: number;
  bytesOut: number;
  dropped: number;
  /** Of messagesOut: answers to the session's own ops (ok, error, pong, res). */
  controlOut: number;
}

export interface SessionCounters {
  messagesIn: number;
  messagesOut: number;
  bytesIn: number;
  bytesOut: number;
  dropped: number;
  errors: number;
}

export interface SessionInfo {
  id: string;
  reply_to: string;
  remote_address: string;
  connected_at: string;
  protocol: string;
  subscriptions: string[];
  counters: SessionCounters;
  /** Outbound bytes waiting to be sent to the client now (the slow-consumer measure). */
  queued_bytes: number;
  /** What the session sits on: a WebSocket, or the Server-Sent Events fallback. */
  transport: 'websocket' | 'sse';
}

// Times a session keeps (connected, last active) are 100 ms ticks since the process started:
// small integers stay inside the object, where epoch milliseconds would each take a separate
// 16-byte heap number (V8 boxes doubles). Small integers for ~6.8 years of uptime.
const T0 = Date.now();
const TICK_MS = 100;
const clockTick = (): number => Math.floor((Date.now() - T0) / TICK_MS);

/** Token buckets of a session with RATE_LIMIT_* on (made on its first frame; none when off). */
interface RateState {
  msgTokens: number;
  byteTokens: number;
  refilledAt: number;
  lastError: number;
}

const noSlowHandler = (): void => {};

/**
 * A one-piece copy of a string made by concatenation (`prefix + token`, `ip + ':' + port`): V8
 * keeps those as a cons string over its parts (three objects, ~100 bytes where one of ~50 would
 * do), and a session keeps its reply subject and remote address for its whole life.
 */
function flatString(s: string): string {
  return Buffer.from(s, 'utf8').toString('utf8');
}

export class Session implements Actor {
  get role(): 'client' {
    return 'client';
  }
  readonly id: string;
  readonly replySubject: string;
  readonly remoteAddress: string;
  /** Epoch milliseconds, at 100 ms resolution (stored as a tick, see clockTick). */
  get connectedAt(): number {
    return T0 + this.#connectedTick * TICK_MS;
  }
  #connectedTick: number;
  readonly codec: Codec;
  readonly counters: SessionCounters = { messagesIn: 0, messagesOut: 0, bytesIn: 0, bytesOut: 0, dropped: 0, errors: 0 };
  /** The client's subscriptions: key (pattern, or pattern + queue) → release function. */
  get subscriptions(): Map<string, () => void> {
    return (this.#subscriptions ??= new Map());
  }
  get hasSubscriptions(): boolean {
    return (this.#subscriptions?.size ?? 0) > 0;
  }
  /** Created on first use, like #unacked: idle sessions carry no empty maps. */
  #subscriptions: Map<string, () => void> | undefined;
  pendingRequests = 0;
  /** The client's address as the upgrade gate counts it (per-IP limits and auth backoff). */
  clientIp: string | undefined;
  /** Failed in-band refreshes (op auth); past MAX_REFRESH_FAILURES the session is closed. */
  refreshFailures = 0;
  /** Who the session authenticated as (undefined when authentication is off). */
  identity: Identity | undefined;
  /** Reply subjects this session was handed and may answer (created on the first one). */
  grants: ReplyGrants | undefined;
  get publishPermission(): Permission | null | undefined {
    return this.identity?.publish;
  }
  get subscribePermission(): Permission | null | undefined {
    return this.identity?.subscribe;
  }
  get ownReplySubject(): string {
    return this.replySubject;
  }
  /** Whose durables this session uses: the authenticated principal, else the session alone. */
  get principal(): string {
    return this.identity?.principal ?? `session:${this.id}`;
  }
  #expiry: LongTimeout | undefined;
  /** Last time a frame arrived (epoch ms, 100 ms resolution), for the idle timeout. */
  get lastActivity(): number {
    return T0 + this.#activeTick * TICK_MS;
  }
  #activeTick: number;
  /** Answered the last server ping. */
  alive = true;
  #rate: RateState | undefined;
  /** Delivered, not yet acknowledged messages of acked subscriptions, by sequence. */
  get unacked(): Map<number, { ack(): void; nak(): void }> {
    return (this.#unacked ??= new Map());
  }
  get hasUnacked(): boolean {
    return (this.#unacked?.size ?? 0) > 0;
  }
  /** Created on first use: most sessions never take an acked subscription. */
  #unacked: Map<number, { ack(): void; nak(): void }> | undefined;
  closed = false;
  #ws: SessionSocket;
  get socket(): SessionSocket {
    return this.#ws;
  }
  /** Whether pre-framed bytes can be written to the socket (decided on the first fan-out). */
  #rawFrames: boolean | undefined;
  #limits: SessionLimits;
  /**
   * Token buckets for RATE_LIMIT_MSGS / RATE_LIMIT_BYTES (bursts up to one second's worth).
   * Returns false when this frame is over the limit.
   */
  withinRate(bytes: number, msgsPerSec: number, bytesPerSec: number): boolean {
    if (msgsPerSec === 0 && bytesPerSec === 0) return true;
    const now = Date.now();
    const r = (this.#rate ??= { msgTokens: Infinity, byteTokens: Infinity, refilledAt: now, lastError: 0 }); // full buckets to start with
    const dt = (now - r.refilledAt) / 1000;
    r.refilledAt = now;
    r.msgTokens = Math.min(msgsPerSec, r.msgTokens + dt * msgsPerSec);
    r.byteTokens = Math.min(bytesPerSec, r.byteTokens + dt * bytesPerSec);
    if ((msgsPerSec > 0 && r.msgTokens < 1) || (bytesPerSec > 0 && r.byteTokens < bytes)) return false;
    r.msgTokens -= 1;
    r.byteTokens -= bytes;
    return true;
  }

  /** Whether to tell the client about a rate-limited frame now (at most once a second). */
  rateErrorDue(): boolean {
    const now = Date.now();
    const r = this.#rate;
    if (r === undefined) return true; // no limit, no rate errors (withinRate made it otherwise)
    if (now - r.lastError < 1000) return false;
    r.lastError = now;
    return true;
  }

  /** Counts an inbound frame (the server calls it for every frame, valid or not). */
  received(bytes: number): void {
    this.#activeTick = clockTick();
    this.counters.bytesIn += bytes;
    this.#limits.totals.bytesIn += bytes;
    this.#limits.totals.messagesIn++;
  }

  /** Told once when the slow-consumer policy closes or first drops for this session. */
  onSlow: (session: Session, action: SlowConsumerPolicy) => void = noSlowHandler;

  constructor(id: string, replySubject: string, ws: SessionSocket, remoteAddress: string, codec: Codec, limits: SessionLimits) {
    this.id = id;
    this.replySubject = flatString(replySubject);
    this.#ws = ws;
    this.remoteAddress = flatString(remoteAddress);
    this.codec = codec;
    this.#connectedTick = this.#activeTick = clockTick();
    this.#limits = limits;
  }

  /**
   * Sends an already-encoded frame. Returns false when it was not sent: the session is closed, or
   * the client reads too slowly and the policy dropped the frame or closed the session.
   */
  send(data: WireData, isReply = false, shared?: SharedFrame): boolean {
    if (this.closed) return false;
    const ws = this.#ws;
    const open = ws.readyState === WebSocket.OPEN;
    if (shared !== undefined && open && (this.#rawFrames ??= canWriteFrames(ws))) {
      // A frame shared by many sessions (fan-out) goes out as is, batched until the end of the
      // tick. One joining a batch begun this tick was checked against the bound with the batch's
      // first frame: what the batch holds is leaving anyway (like corked bytes, see queuedBytes),
      // and a batch is written once it holds BATCH_BYTES, so the next frame is checked again.
      const framed = shared.framed(this);
      if (!addToBatch(ws, framed)) {
        if (this.overBound(ws, isReply)) return false;
        batchFrame(ws, framed);
      }
    } else {
      if (this.overBound(ws, isReply)) return false;
      // Any other frame goes after what was fanned out before it (held, then batched), corked.
      if (open) {
        flushHeldFanout();
        flushBatch(ws);
        corkUntilTickEnd(ws);
      }
      ws.send(data, { binary: this.codec.binary });
    }
    const bytes = typeof data === 'string' ? Buffer.byteLength(data) : data.length;
    this.counters.messagesOut++;
    this.counters.bytesOut += bytes;
    const t = this.#limits.totals;
    t.messagesOut++;
    t.bytesOut += bytes;
    if (isReply) t.controlOut++;
    return true;
  }

  /**
   * Whether the client reads too slowly to be sent one more frame, after applying the policy.
   * Every frame counts against the bound, answers to the client's own ops (ok, error, pong, res)
   * included: a client that sends pings and never reads would otherwise grow the queue without
   * end. Under the drop policy a delivery is dropped; an answer cannot be (the client would wait
   * for it forever), so the session is closed instead.
   */
  private overBound(ws: SessionSocket, isReply: boolean, messages = 1): boolean {
    if (queuedBytes(ws) <= this.#limits.maxBufferedBytes) return false;
    this.counters.dropped += messages;
    this.#limits.totals.dropped += messages;
    if (this.#limits.slowConsumerPolicy === 'close' || isReply) {
      this.onSlow(this, 'close');
      this.close(CloseCodes.tryAgainLater, 'slow consumer');
    } else if (this.counters.dropped === messages) {
      this.onSlow(this, 'drop');
    }
    return true;
  }

  /**
   * Sends a fan-out burst (see SharedBurst): the grants once, then its runs into the session's
   * batch for this tick, each checked against the slow-consumer bound like one frame (dropped or
   * closing the session as a whole under the policy). `now`: grantClock(), read once for all.
   */
  deliverBurst(burst: SharedBurst, now: number): void {
    if (this.closed) return;
    for (const [replyTo, times] of burst.grants) this.grant(replyTo, now, times);
    const ws = this.#ws;
    if (ws.readyState !== WebSocket.OPEN || !(this.#rawFrames ??= canWriteFrames(ws))) {
      for (let i = 0; i < burst.size && !this.closed; i++) {
        const m = burst.message(i);
        this.send(m.for(this), false, m);
      }
      return;
    }
    const t = this.#limits.totals;
    for (const run of burst.runs(this)) {
      if (this.closed) return;
      if (!addToBatch(ws, run.buf)) {
        if (this.overBound(ws, false, run.count)) continue;
        batchFrame(ws, run.buf);
      }
      this.counters.messagesOut += run.count;
      this.counters.bytesOut += run.bytes;
      t.messagesOut += run.count;
      t.bytesOut += run.bytes;
    }
  }

  /** The session is handed `replyTo` (it received a message carrying it): it may answer there. */
  grant(replyTo: string, now?: number, times?: number): void {
    (this.grants ??= new ReplyGrants(this.#limits.grants)).grant(replyTo, now, times);
  }

  /** Sends a message from the bus; its reply_to becomes a grant. */
  deliver(msg: BusMessage): boolean {
    // An error reply (a component's handler_failed) answers requests only: a session that
    // published with its own reply subject gets no empty message for it.
    if (this.closed || msg.errorCode !== undefined) return false;
    if (msg.replyTo) this.grant(msg.replyTo);
    return this.send(this.codec.encodeMessage(msg));
  }

  sendFrame(frame: ServerFrame): boolean {
    return this.send(this.codec.encode(frame), frame.op !== 'welcome');
  }

  /** Sets the identity and closes the session with 1008 when its credential expires. */
  authenticate(identity: Identity): void {
    this.identity = identity;
    this.#expiry?.clear();
    this.#expiry = identity.expiresAt === undefined ? undefined : setLongTimeout(() => this.close(CloseCodes.policyViolation, 'credential expired'), identity.expiresAt);
  }

  close(code: number, reason: string): void {
    if (this.closed) return;
    // What was delivered before the close goes before the close frame: the held fan-out burst
    // (this session is still open to receive it), then this tick's batch.
    flushHeldFanout();
    if (this.closed) return; // the slow-consumer policy closed it meanwhile
    this.closed = true;
    const ws = this.#ws;
    // A socket paused while a first-frame token is verified must read the peer's close frame.
    if (ws.isPaused) ws.resume();
    flushBatch(ws);
    ws.close(code, reason);
  }

  /**
   * Releases everything the session holds, once its socket has closed: the expiry timer (whose
   * callback would keep the session in memory until the credential expires), its subscriptions,
   * its reply grants, and its unacknowledged messages (given back at once for redelivery). Safe
   * to call more than once.
   */
  dispose(): void {
    this.closed = true;
    this.#expiry?.clear();
    this.#expiry = undefined;
    if (this.#subscriptions !== undefined) {
      for (const release of this.#subscriptions.values()) release();
      this.#subscriptions.clear();
    }
    this.grants = undefined;
    if (this.#unacked !== undefined) {
      for (const h of this.#unacked.values()) h.nak();
      this.#unacked.clear();
    }
  }

  info(): SessionInfo {
    return {
      id: this.id,
      reply_to: this.replySubject,
      remote_address: this.remoteAddress,
      connected_at: new Date(this.connectedAt).toISOString(),
      protocol: this.codec.name,
      subscriptions: [...this.subscriptions.keys()],
      counters: { ...this.counters },
      queued_bytes: queuedBytes(this.#ws),
      transport: this.#ws.transport ?? 'websocket',
    };
  }
}
