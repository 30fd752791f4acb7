// Server-mode routing on one node: the local sessions, their subscriptions, and the one bus
// subscription per pattern that all local sessions share. A message for N local sessions is
// encoded once per codec and written N times; the bus sees one subscriber per pattern per node.
import type { Bus, BusMessage, BusSubscription } from '../bus/bus.ts';
import { RequestError } from '../bus/bus.ts';
import type { ClientFrame } from '../protocol/frames.ts';
import { ProtocolError } from '../protocol/errors.ts';
import type { ErrorCode } from '../protocol/errors.ts';
import { INTERNAL_PREFIX } from '../protocol/subject.ts';
import type { Session, SharedFrame } from './session.ts';
import { frameOnce } from './preframed.ts';
import type { Logger } from '../observability/logger.ts';
import type { Authenticator } from '../auth/authenticator.ts';

export const SESSION_PREFIX = `${INTERNAL_PREFIX}S.`;

/** Reply subjects a client may be handed and answer on: sessions, request inboxes, link and NATS inboxes. */
const REPLY_PREFIXES = [`${INTERNAL_PREFIX}S.`, `${INTERNAL_PREFIX}R.`, `${INTERNAL_PREFIX}L.`, `${INTERNAL_PREFIX}RAW.`, '_INBOX.'];
export function isReplySubject(subject: string): boolean {
  return REPLY_PREFIXES.some((p) => subject.startsWith(p));
}
export const BROADCAST_PREFIX = `${INTERNAL_PREFIX}B.`;

export interface HubOptions {
  defaultRequestTimeoutMs: number;
  maxRequestTimeoutMs: number;
  maxPendingRequests: number;
  maxSubscriptions: number;
}

export interface HubStats {
  authFailures: number;
  rateLimited: number;
  connectionsRefused: number;
  deadPeers: number;
  idleCloses: number;
  permissionDenials: number;
  sessionsOpened: number;
  sessionsClosed: number;
  /** Close codes of ended sessions, for metrics. */
  closeCodes: Record<number, number>;
  slowConsumerCloses: number;
  slowConsumerDrops: number;
  protocolErrors: number;
}

interface Fanout {
  sub: BusSubscription;
  members: Set<Session>;
}

/** Encodes a message at most once per codec, only when a member with that codec needs it. */
class EncodedOnce implements SharedFrame {
  #json: Buffer | undefined;
  #msgpack: Buffer | undefined;
  #jsonFrame: Buffer | undefined;
  #msgpackFrame: Buffer | undefined;
  readonly msg: BusMessage;
  constructor(msg: BusMessage) {
    this.msg = msg;
  }
  for(session: Session): Buffer {
    // JSON as UTF-8 bytes, once: ws would otherwise re-encode the string for every session.
    if (session.codec.name === 'json') return (this.#json ??= Buffer.from(session.codec.encodeMessage(this.msg) as string));
    return (this.#msgpack ??= session.codec.encodeMessage(this.msg) as Buffer);
  }
  /** The whole WebSocket frame for the session's codec, framed once for every session. */
  framed(session: Session): Buffer {
    if (session.codec.name === 'json') return (this.#jsonFrame ??= frameOnce(this.for(session), false));
    return (this.#msgpackFrame ??= frameOnce(this.for(session), true));
  }
}

export class SessionHub {
  readonly sessions = new Map<string, Session>();
  readonly totals = { messagesIn: 0, messagesOut: 0, bytesIn: 0, bytesOut: 0, dropped: 0, controlOut: 0 };
  /** Valid inbound frames by class: publish (to a subject), reply (to a reply subject), and each op. */
  readonly framesIn: Record<string, number> = {};
  /** Observes request durations (seconds) by result, for metrics. */
  onRequestDone: (seconds: number, result: string) => void = () => {};
  readonly stats: HubStats = { rateLimited: 0, connectionsRefused: 0, deadPeers: 0, idleCloses: 0, authFailures: 0, permissionDenials: 0, sessionsOpened: 0, sessionsClosed: 0, closeCodes: {}, slowConsumerCloses: 0, slowConsumerDrops: 0, protocolErrors: 0 };
  #bus: Bus;
  #log: Logger;
  #opts: HubOptions;
  /** Verifies tokens for in-band refresh (op auth); undefined when authentication is off. */
  authenticator: Authenticator | undefined;
  #fanout = new Map<string, Fanout>();
  #broadcast: BusSubscription;
  /** Told when sessions or their subscriptions change (cluster presence listens). */
  onChange: () => void = () => {};

  constructor(bus: Bus, log: Logger, opts: HubOptions) {
    this.#bus = bus;
    this.#log = log;
    this.#opts = opts;
    // One broadcast subscription per node: serialize once, write to every local session.
    this.#broadcast = bus.subscribe(`${BROADCAST_PREFIX}>`, (msg) => {
      const inner = { subject: msg.subject.slice(BROADCAST_PREFIX.length), body: msg.body, replyTo: msg.replyTo };
      this.#deliver(this.sessions.values(), inner);
    });
  }

  /** Shared by every session (a closure per session would cost memory at 10k+ sessions). */
  #onSlow = (session: Session, action: 'close' | 'drop'): void => {
    if (action === 'close') this.stats.slowConsumerCloses++;
    else this.stats.slowConsumerDrops++;
    this.#log.warn({ session: session.id, action }, 'slow consumer');
  };

  static replySubjectFor(sessionId: string): string {
    return SESSION_PREFIX + sessionId;
  }

  add(session: Session): void {
    this.sessions.set(session.id, session);
    this.stats.sessionsOpened++;
    session.onSlow = this.#onSlow;
    // The reply subject itself, and `<reply subject>.<subject>` for targeted sends that keep
    // their own subject (the operator API's "send to session").
    const reply = session.replySubject;
    const direct = this.#bus.subscribe(reply, (msg) => session.send(session.codec.encodeMessage(msg)));
    const targeted = this.#bus.subscribe(`${reply}.>`, (msg) =>
      session.send(session.codec.encodeMessage({ subject: msg.subject.slice(reply.length + 1), body: msg.body, replyTo: msg.replyTo })),
    );
    session.replySubscriptions = [direct, targeted];
    session.sendFrame({ op: 'welcome', session: session.id, reply_to: reply, protocol: 'wsbridge.v1' });
    this.onChange();
  }

  remove(session: Session): void {
    if (!this.sessions.delete(session.id)) return;
    this.stats.sessionsClosed++;
    session.dispose();
    this.onChange();
  }

  /** Publishes to a session's targeted subject, wherever the session lives. */
  sendToSession(sessionId: string, msg: BusMessage): void {
    this.#bus.publish({ subject: `${SESSION_PREFIX}${sessionId}.${msg.subject}`, body: msg.body, replyTo: msg.replyTo });
  }

  broadcast(msg: BusMessage): void {
    this.#bus.publish({ subject: BROADCAST_PREFIX + msg.subject, body: msg.body, replyTo: msg.replyTo });
  }

  #deliver(members: Iterable<Session>, msg: BusMessage): void {
    const encoded = new EncodedOnce(msg);
    for (const s of members) s.send(encoded.for(s), false, encoded);
  }

  /** Handles one decoded frame from a session. Errors become error frames; the session stays. */
  #denied(session: Session, what: 'publish' | 'subscribe', subject: string, id: string | undefined): boolean {
    const perm = what === 'publish' ? session.identity?.publish : session.identity?.subscribe;
    if (!perm) return false;
    // Answers to reply subjects the session was given are always allowed.
    const ok = what === 'publish' ? perm.allowsSubject(subject) || isReplySubject(subject) : perm.allowsPattern(subject);
    if (ok) return false;
    this.stats.permissionDenials++;
    this.error(session, 'permission_denied', `may not ${what} to ${subject}`, id);
    return true;
  }

  handle(session: Session, frame: ClientFrame): void {
    session.counters.messagesIn++;
    const kind = frame.op === 'pub' ? (isReplySubject(frame.msg.subject) ? 'reply' : 'publish') : frame.op;
    this.framesIn[kind] = (this.framesIn[kind] ?? 0) + 1;
    switch (frame.op) {
      case 'auth': {
        // In-band refresh: a new token replaces the identity (and its expiry) when valid.
        const auth = this.authenticator;
        if (!auth) {
          this.error(session, 'bad_request', 'authentication is not enabled on this server', frame.id);
          return;
        }
        auth.verify(frame.token).then((identity) => {
          session.authenticate(identity);
          if (frame.id !== undefined) session.sendFrame({ op: 'ok', id: frame.id });
        }, () => {
          this.stats.authFailures++;
          this.error(session, 'unauthorized', 'token not accepted', frame.id);
        });
        return;
      }
      case 'pub': {
        const msg = frame.msg;
        if (msg.subject.startsWith(INTERNAL_PREFIX) && !isReplySubject(msg.subject)) {
          this.error(session, 'invalid_subject', `subjects under ${INTERNAL_PREFIX} are reserved, except reply subjects`, frame.id);
          return;
        }
        if (this.#denied(session, 'publish', msg.subject, frame.id)) return;
        // A publish without reply_to gets the session's reply subject, so answers come back.
        if (msg.replyTo === null || msg.replyTo === undefined) msg.replyTo = session.replySubject;
        const id = frame.id;
        // With an id the client asked to know: ok once the bus has accepted the message (NATS
        // acknowledged it; JetStream stored it for history subjects), else the error.
        if (id !== undefined && this.#bus.publishAcked) {
          this.#bus.publishAcked(msg).then(
            () => session.sendFrame({ op: 'ok', id }),
            (err: unknown) => this.error(session, 'bus_unavailable', err instanceof Error ? err.message : String(err), id),
          );
          return;
        }
        try {
          this.#bus.publish(msg);
        } catch (err) {
          this.error(session, 'bus_unavailable', err instanceof Error ? err.message : String(err), id);
          return;
        }
        if (id !== undefined) session.sendFrame({ op: 'ok', id });
        return;
      }
      case 'sub':
        if (this.#denied(session, 'subscribe', frame.subject, frame.id)) return;
        if (frame.ack !== undefined) this.#subscribeAcked(session, frame.subject, frame.ack.durable, frame.ack.waitMs ?? 30_000, frame.id);
        else if (frame.since !== undefined) this.#resume(session, frame.subject, frame.queue, frame.since, frame.id);
        else this.#subscribe(session, frame.subject, frame.queue, frame.id);
        return;
      case 'unsub': {
        const release = session.subscriptions.get(frame.subject);
        if (!release) {
          this.error(session, 'not_subscribed', `not subscribed to ${frame.subject}`, frame.id);
          return;
        }
        release();
        session.subscriptions.delete(frame.subject);
        if (frame.id !== undefined) session.sendFrame({ op: 'ok', id: frame.id });
        this.onChange();
        return;
      }
      case 'req':
        if (this.#denied(session, 'publish', frame.subject, frame.id)) return;
        this.#request(session, frame);
        return;
      case 'ping':
        session.sendFrame(frame.id === undefined ? { op: 'pong' } : { op: 'pong', id: frame.id });
        return;
      case 'ack': {
        const handle = session.unacked.get(frame.seq);
        if (!handle) {
          this.error(session, 'unknown_seq', `no unacknowledged message with seq ${frame.seq} on this session`, frame.id);
          return;
        }
        session.unacked.delete(frame.seq);
        handle.ack();
        if (frame.id !== undefined) session.sendFrame({ op: 'ok', id: frame.id });
        return;
      }
    }
  }

  error(session: Session, code: ErrorCode, message: string, id?: string): void {
    session.counters.errors++;
    this.stats.protocolErrors++;
    session.sendFrame(id === undefined ? { op: 'error', code, message } : { op: 'error', code, message, id });
  }

  /** Counts a session's close code (GatewayServer calls it when a socket ends). */
  closed(code: number): void {
    this.stats.closeCodes[code] = (this.stats.closeCodes[code] ?? 0) + 1;
  }

  protocolError(session: Session, err: ProtocolError): void {
    this.error(session, err.code, err.message, err.id);
  }

  #subscribe(session: Session, pattern: string, queue: string | undefined, id: string | undefined): void {
    if (pattern.startsWith(INTERNAL_PREFIX)) {
      this.error(session, 'invalid_subject', `subjects under ${INTERNAL_PREFIX} are reserved`, id);
      return;
    }
    // Queue members are keyed by pattern and group; unsub names the pattern alone.
    const key = pattern;
    if (session.subscriptions.has(key)) {
      if (id !== undefined) session.sendFrame({ op: 'ok', id });
      return;
    }
    if (session.subscriptions.size >= this.#opts.maxSubscriptions) {
      this.error(session, 'limit_exceeded', `at most ${this.#opts.maxSubscriptions} subscriptions per session`, id);
      return;
    }
    if (queue !== undefined) {
      // A queue member must be its own bus subscriber so that the group picks one session.
      const sub = this.#bus.subscribe(pattern, (msg) => {
        if (!msg.subject.startsWith(INTERNAL_PREFIX)) session.send(session.codec.encodeMessage(msg));
      }, { queue });
      session.subscriptions.set(key, () => sub.unsubscribe());
    } else {
      let f = this.#fanout.get(pattern);
      if (!f) {
        const members = new Set<Session>();
        const sub = this.#bus.subscribe(pattern, (msg) => {
          // Wildcards never reach the gateway's own subjects (other sessions' replies).
          if (!msg.subject.startsWith(INTERNAL_PREFIX)) this.#deliver(members, msg);
        });
        f = { sub, members };
        this.#fanout.set(pattern, f);
      }
      const fan = f;
      fan.members.add(session);
      session.subscriptions.set(key, () => {
        fan.members.delete(session);
        if (fan.members.size === 0) {
          fan.sub.unsubscribe();
          this.#fanout.delete(pattern);
        }
      });
    }
    if (id !== undefined) session.sendFrame({ op: 'ok', id });
    this.onChange();
  }

  /**
   * Acknowledged delivery: messages come from a durable consumer and carry seq (and
   * `redelivered` after the first delivery); the client answers {op:"ack",seq}. Unacked ones
   * come again after ack_wait_ms, and at once to the next consumer of the durable when this
   * session goes away.
   */
  #subscribeAcked(session: Session, pattern: string, durable: string, waitMs: number, id: string | undefined): void {
    const bus = this.#bus;
    if (!bus.subscribeAcked || !bus.hasHistory?.(pattern)) {
      this.error(session, 'history_unavailable', `${pattern} keeps no history (HISTORY_SUBJECTS, with NATS): no acknowledged delivery`, id);
      return;
    }
    session.subscriptions.get(pattern)?.();
    let stop: (() => void) | undefined;
    let released = false;
    session.subscriptions.set(pattern, () => {
      released = true;
      stop?.();
    });
    bus.subscribeAcked(pattern, durable, waitMs, (msg, handle) => {
      // Arrived after the session went: left unacknowledged, it comes again after ack_wait
      // (a nak here could bounce straight back to this stopping consumer).
      if (released || session.closed) return;
      session.unacked.set(msg.seq!, handle);
      session.send(session.codec.encodeMessage(msg)); // if dropped (slow consumer), ack_wait brings it back
    }).then((sub) => {
      stop = () => sub.stop();
      if (released) sub.stop();
      else if (id !== undefined) session.sendFrame({ op: 'ok', id });
      this.onChange();
    }, (err: unknown) => {
      session.subscriptions.delete(pattern);
      this.error(session, 'bus_unavailable', `acknowledged subscription failed: ${(err as Error).message}`, id);
    });
  }

  /**
   * A subscription that first replays what the session missed (sequence > since) from the bus's
   * history, then goes live. Live messages that arrive during the replay wait and are sent after
   * it, minus those the replay already sent, so the client sees each sequence once, in order.
   */
  #resume(session: Session, pattern: string, queue: string | undefined, since: number, id: string | undefined): void {
    const bus = this.#bus;
    if (!bus.replay || !bus.hasHistory?.(pattern)) {
      this.error(session, 'history_unavailable', `${pattern} keeps no history (HISTORY_SUBJECTS, with NATS)`, id);
      return;
    }
    if (pattern.startsWith(INTERNAL_PREFIX)) {
      this.error(session, 'invalid_subject', `subjects under ${INTERNAL_PREFIX} are reserved`, id);
      return;
    }
    session.subscriptions.get(pattern)?.();
    let waiting: BusMessage[] | undefined = [];
    const sub = bus.subscribe(pattern, (msg) => {
      if (msg.subject.startsWith(INTERNAL_PREFIX)) return;
      if (waiting) waiting.push(msg);
      else session.send(session.codec.encodeMessage(msg));
    }, { queue });
    session.subscriptions.set(pattern, () => sub.unsubscribe());
    bus.replay(pattern, since, {
      lost: (firstSeq) => session.sendFrame({ op: 'history_lost', subject: pattern, since, first_seq: firstSeq, ...(id !== undefined ? { id } : {}) }),
      deliver: (msg) => session.send(session.codec.encodeMessage(msg)),
    }).then((r) => {
      const held = waiting ?? [];
      waiting = undefined;
      for (const m of held) if (m.seq === undefined || m.seq > r.lastSeq) session.send(session.codec.encodeMessage(m));
      if (id !== undefined) session.sendFrame({ op: 'ok', id });
      this.onChange();
    }, (err: unknown) => {
      waiting = undefined;
      this.error(session, 'bus_unavailable', `history replay failed: ${(err as Error).message}`, id);
    });
  }

  #request(session: Session, frame: Extract<ClientFrame, { op: 'req' }>): void {
    if (session.pendingRequests >= this.#opts.maxPendingRequests) {
      this.error(session, 'too_many_requests', `at most ${this.#opts.maxPendingRequests} requests in flight`, frame.id);
      return;
    }
    const timeout = Math.min(frame.timeoutMs ?? this.#opts.defaultRequestTimeoutMs, this.#opts.maxRequestTimeoutMs);
    session.pendingRequests++;
    const started = performance.now();
    this.#bus.request(frame.subject, frame.body, timeout).then(
      (reply) => {
        this.onRequestDone((performance.now() - started) / 1000, 'ok');
        session.pendingRequests--;
        session.sendFrame({ op: 'res', id: frame.id, msg: reply });
      },
      (err: unknown) => {
        this.onRequestDone((performance.now() - started) / 1000, err instanceof RequestError ? err.code : 'internal');
        session.pendingRequests--;
        if (err instanceof RequestError) this.error(session, err.code, err.message, frame.id);
        else {
          this.#log.error({ err, session: session.id }, 'request failed');
          this.error(session, 'internal', 'request failed', frame.id);
        }
      },
    );
  }

  async close(): Promise<void> {
    this.#broadcast.unsubscribe();
  }
}
