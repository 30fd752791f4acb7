// Server-mode sessions on one node: the registry, and the dispatch of each client frame through
// the subject policy to the part that serves it (fan-out, durable delivery, request proxy).
import { createHash } from 'node:crypto';
import type { Bus, BusMessage } from '../bus/bus.ts';
import { RequestError } from '../bus/bus.ts';
import type { RequestInbox } from '../bus/request-inbox.ts';
import type { ClientFrame } from '../protocol/frames.ts';
import { ProtocolError, CloseCodes } from '../protocol/errors.ts';
import type { ErrorCode } from '../protocol/errors.ts';
import type { Session } from './session.ts';
import type { Logger } from '../observability/logger.ts';
import type { Authenticator } from '../auth/authenticator.ts';
import { checkPublish, checkReplyTo, checkRequest, checkSubscribe, isReserved, PRESENCE_PREFIX } from '../security/subject-policy.ts';
import type { SubjectPresence } from '../cluster/subject-presence.ts';
import type { Denial } from '../security/subject-policy.ts';
import { Fanout } from './fanout.ts';
import { SessionRoutes } from './session-routes.ts';
import { DurableDelivery } from './durable-delivery.ts';
import { RequestProxy } from './request-proxy.ts';

/** The Nats-Msg-Id of a publish: its id scoped to the principal (a hash, so no id is shown to NATS). */
export function dedupKey(principal: string, id: string): string {
  return createHash('sha256').update(principal).update('\0').update(id).digest('base64url');
}

/** Failed in-band refreshes a session may make before it is closed with 1008. */
export const MAX_REFRESH_FAILURES = 5;

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
  /** Frames refused because they named a reserved subject (or a reply subject not handed over). */
  reservedRefusals: number;
  sessionsOpened: number;
  sessionsClosed: number;
  /** Close codes of ended sessions, for metrics. */
  closeCodes: Record<number, number>;
  slowConsumerCloses: number;
  slowConsumerDrops: number;
  protocolErrors: number;
  /** Error frames sent, by code. */
  errorsByCode: Record<string, number>;
  /** History subscriptions refused for now (nothing subscribed), by kind: position, replay, acked. */
  historySubscribeFailures: Record<string, number>;
}

export class SessionHub {
  readonly sessions = new Map<string, Session>();
  readonly totals = { messagesIn: 0, messagesOut: 0, bytesIn: 0, bytesOut: 0, dropped: 0, controlOut: 0 };
  /** Valid inbound frames by class: publish (to a subject), reply (to a reply subject), and each op. */
  readonly framesIn: Record<string, number> = {};
  readonly stats: HubStats = { rateLimited: 0, connectionsRefused: 0, deadPeers: 0, idleCloses: 0, authFailures: 0, permissionDenials: 0, reservedRefusals: 0, sessionsOpened: 0, sessionsClosed: 0, closeCodes: {}, slowConsumerCloses: 0, slowConsumerDrops: 0, protocolErrors: 0, errorsByCode: {}, historySubscribeFailures: {} };
  #bus: Bus;
  #log: Logger;
  #opts: HubOptions;
  /** Verifies tokens for in-band refresh (op auth); undefined when authentication is off. */
  authenticator: Authenticator | undefined;
  readonly routes: SessionRoutes;
  #fanout: Fanout;
  #durable: DurableDelivery;
  #requests: RequestProxy;
  /** Told when a session opens, changes its subscriptions, or closes (`gone`): cluster presence listens. */
  onChange: (session: Session, gone: boolean) => void = () => {};
  /** Told of a failed in-band refresh, so it counts toward the client's auth backoff. */
  onAuthFailure: (session: Session) => void = () => {};
  /** Presence per subject (PRESENCE_SUBJECTS): told of subscriptions that begin and end; answers op presence. */
  presence: SubjectPresence | undefined;

  constructor(bus: Bus, inbox: RequestInbox, log: Logger, opts: HubOptions) {
    this.#bus = bus;
    this.#log = log;
    this.#opts = opts;
    this.routes = new SessionRoutes(bus, this.sessions);
    this.#fanout = new Fanout(bus);
    this.#durable = new DurableDelivery(bus, {
      error: (s, code, message, id) => this.error(s, code, message, id),
      changed: (s) => this.onChange(s, false),
      failed: (kind) => {
        const f = this.stats.historySubscribeFailures;
        f[kind] = (f[kind] ?? 0) + 1;
      },
    });
    this.#requests = new RequestProxy(inbox, opts, log, (s, code, message, id) => this.error(s, code, message, id));
  }

  /** Observes request durations (seconds) by result, for metrics. */
  set onRequestDone(fn: (seconds: number, result: string) => void) {
    this.#requests.onRequestDone = fn;
  }

  /** Shared by every session (a closure per session would cost memory at 10k+ sessions). */
  #onSlow = (session: Session, action: 'close' | 'drop'): void => {
    if (action === 'close') this.stats.slowConsumerCloses++;
    else this.stats.slowConsumerDrops++;
    this.#log.warn({ session: session.id, action }, 'slow consumer');
  };

  /** A fresh reply subject for a new session on this node (128 random bits, not its id). */
  newReplySubject(): string {
    return this.routes.newReplySubject();
  }

  add(session: Session): void {
    this.sessions.set(session.id, session);
    this.stats.sessionsOpened++;
    session.onSlow = this.#onSlow;
    this.routes.add(session);
    session.sendFrame({ op: 'welcome', session: session.id, reply_to: session.replySubject, protocol: 'wsbridge.v1' });
    this.onChange(session, false);
  }

  remove(session: Session): void {
    if (!this.sessions.delete(session.id)) return;
    this.stats.sessionsClosed++;
    this.routes.remove(session);
    this.#requests.cancel(session);
    this.presence?.sessionGone(session);
    // Timers, subscriptions, grants, unacked messages (given back for immediate redelivery).
    session.dispose();
    this.onChange(session, true);
  }

  /** Sends to a session on this node, as a message on `msg.subject`: undefined when there is no such session, else whether it was written. */
  sendToLocalSession(sessionId: string, msg: BusMessage): boolean | undefined {
    const s = this.sessions.get(sessionId);
    if (!s) return undefined;
    return s.deliver({ subject: msg.subject, body: msg.body, replyTo: msg.replyTo ?? null });
  }

  /** The history stream is another one (a JetStream reset): history subscriptions hear history_lost. */
  historyReset(epoch: string, previousLastSeq: number, firstSeq: number): void {
    this.#durable.epochChanged(this.sessions.values(), epoch, previousLastSeq, firstSeq);
  }

  /** Writes to every session on this node (encoded once); returns how many. */
  broadcastLocal(msg: BusMessage): number {
    return this.routes.broadcastLocal(msg);
  }

  #refuse(session: Session, denial: Denial, id: string | undefined): void {
    if (denial.code === 'permission_denied') this.stats.permissionDenials++;
    else this.stats.reservedRefusals++;
    this.error(session, denial.code, denial.message, id);
  }

  /** Handles one decoded frame from a session. Errors become error frames; the session stays. */
  handle(session: Session, frame: ClientFrame): void {
    session.counters.messagesIn++;
    const kind = frame.op === 'pub' ? (isReserved(frame.msg.subject) ? 'reply' : 'publish') : frame.op;
    this.framesIn[kind] = (this.framesIn[kind] ?? 0) + 1;
    switch (frame.op) {
      case 'auth':
        this.#refresh(session, frame.token, frame.id);
        return;
      case 'pub': {
        const msg = frame.msg;
        // reply_to first: a refused frame must not use up a reply grant.
        const denial = (msg.replyTo != null ? checkReplyTo(session, msg.replyTo) : null) ?? checkPublish(session, msg.subject);
        if (denial) return this.#refuse(session, denial, frame.id);
        // A publish without reply_to gets the session's reply subject, so answers come back.
        if (msg.replyTo === null || msg.replyTo === undefined) msg.replyTo = session.replySubject;
        this.#publish(session, msg, frame.id);
        return;
      }
      case 'sub': {
        const denial = checkSubscribe(session, frame.subject);
        if (denial) return this.#refuse(session, denial, frame.id);
        if (frame.subject.startsWith(PRESENCE_PREFIX) && !this.presence?.announces(frame.subject.slice(PRESENCE_PREFIX.length))) {
          this.error(session, 'presence_unavailable', `presence is not kept for ${frame.subject.slice(PRESENCE_PREFIX.length)} (PRESENCE_SUBJECTS): no events would come`, frame.id);
          return;
        }
        const already = session.subscriptions.has(frame.subject);
        if (!already && session.subscriptions.size >= this.#opts.maxSubscriptions) {
          this.error(session, 'limit_exceeded', `at most ${this.#opts.maxSubscriptions} subscriptions per session`, frame.id);
          return;
        }
        if (frame.ack !== undefined) {
          const before = session.subscriptions.get(frame.subject);
          this.#durable.subscribeAcked(session, frame.subject, frame.ack.durable, frame.ack.waitMs ?? 30_000, frame.since, frame.epoch, frame.id);
          // An acknowledged subscription that replaced a plain one ends that membership.
          if (session.subscriptions.get(frame.subject) !== before) this.presence?.unsubscribed(session, frame.subject);
        }
        else if (frame.since !== undefined) this.#durable.resume(session, frame.subject, frame.queue, frame.since, frame.epoch, frame.id);
        else {
          // Subscribing twice to the same pattern is a no-op that answers ok.
          if (!already) {
            session.subscriptions.set(frame.subject, this.#fanout.subscribe(session, frame.subject, frame.queue));
            this.onChange(session, false);
          }
          // On a history pattern the ok carries the stream position to resume from.
          if (this.#bus.position && this.#bus.hasHistory?.(frame.subject)) this.#durable.subscribeWithPosition(session, frame.subject, session.subscriptions.get(frame.subject)!, frame.id);
          else if (frame.id !== undefined) session.sendFrame({ op: 'ok', id: frame.id });
        }
        // A subscription to exactly a tracked subject makes the session a member (not acked ones).
        if (this.presence && frame.ack === undefined && session.subscriptions.has(frame.subject)) this.presence.subscribed(session, frame.subject);
        return;
      }
      case 'unsub': {
        const release = session.subscriptions.get(frame.subject);
        if (!release) {
          this.error(session, 'not_subscribed', `not subscribed to ${frame.subject}`, frame.id);
          return;
        }
        release();
        session.subscriptions.delete(frame.subject);
        this.presence?.unsubscribed(session, frame.subject);
        if (frame.id !== undefined) session.sendFrame({ op: 'ok', id: frame.id });
        this.onChange(session, false);
        return;
      }
      case 'req': {
        const denial = checkRequest(session, frame.subject);
        if (denial) return this.#refuse(session, denial, frame.id);
        this.#requests.handle(session, frame);
        return;
      }
      case 'ping':
        session.sendFrame(frame.id === undefined ? { op: 'pong' } : { op: 'pong', id: frame.id });
        return;
      case 'presence':
        this.#presence(session, frame.subject, frame.id);
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

  /**
   * The members of a subject, for a session that may subscribe to it. Reading them (from NATS KV
   * in a cluster) counts as a request in flight (MAX_PENDING_REQUESTS).
   */
  #presence(session: Session, subject: string, id: string): void {
    if (isReserved(subject)) return this.error(session, 'invalid_subject', `${subject} is reserved: presence is kept for user subjects`, id);
    const denial = checkSubscribe(session, subject);
    if (denial) return this.#refuse(session, denial, id);
    const presence = this.presence;
    if (!presence?.tracks(subject)) return this.error(session, 'presence_unavailable', `presence is not kept for ${subject} (PRESENCE_SUBJECTS)`, id);
    if (session.pendingRequests >= this.#opts.maxPendingRequests) return this.error(session, 'too_many_requests', `at most ${this.#opts.maxPendingRequests} requests in flight`, id);
    session.pendingRequests++;
    presence.members(subject).then(
      (r) => {
        if (!session.closed) session.sendFrame({ op: 'presence', id, subject, members: r.members, truncated: r.truncated });
      },
      (err: unknown) => {
        if (!session.closed) this.error(session, 'bus_unavailable', `presence could not be read: ${(err as Error).message}`, id);
      },
    ).finally(() => {
      if (session.pendingRequests > 0) session.pendingRequests--;
    });
  }

  #publish(session: Session, msg: BusMessage, id: string | undefined): void {
    // With an id the client asked to know: ok once the bus has accepted the message (NATS
    // acknowledged it; JetStream stored it for history subjects), else the error. The id is also
    // the message's dedup key, scoped to the publishing principal, so no client can suppress
    // another's message by reusing its id.
    if (id !== undefined && this.#bus.publishAcked) {
      this.#bus.publishAcked(msg, { dedupKey: dedupKey(session.principal, id) }).then(
        (ack) => session.sendFrame(ack && ack.seq !== undefined ? { op: 'ok', id, seq: ack.seq, ...(ack.duplicate ? { duplicate: true } : {}) } : { op: 'ok', id }),
        (err: unknown) => this.error(session, err instanceof RequestError && err.code === 'unconfirmed' ? 'unconfirmed' : 'bus_unavailable', err instanceof Error ? err.message : String(err), id),
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
  }

  /**
   * In-band refresh: a new token replaces the identity (permissions and expiry) when it is valid
   * and names the same principal. Subscriptions the new permissions no longer allow end, each
   * told with an error frame naming it.
   */
  #refresh(session: Session, token: string, id: string | undefined): void {
    const auth = this.authenticator;
    if (!auth) {
      this.error(session, 'bad_request', 'authentication is not enabled on this server', id);
      return;
    }
    auth.verify(token).then((identity) => {
      if (session.closed) return;
      if (session.identity && identity.principal !== session.identity.principal) {
        this.stats.authFailures++;
        this.error(session, 'unauthorized', 'the new token names another principal: open a new session for it', id);
        return;
      }
      session.authenticate(identity);
      if (session.hasSubscriptions) {
        for (const [pattern, release] of [...session.subscriptions]) {
          if (checkSubscribe(session, pattern) === null) continue;
          release();
          session.subscriptions.delete(pattern);
          this.presence?.unsubscribed(session, pattern);
          this.stats.permissionDenials++;
          session.sendFrame({ op: 'error', code: 'permission_denied', message: `subscription ${pattern} ended: the new token does not allow it`, subject: pattern });
          this.onChange(session, false);
        }
      }
      if (id !== undefined) session.sendFrame({ op: 'ok', id });
    }, () => {
      if (session.closed) return;
      this.stats.authFailures++;
      this.onAuthFailure(session);
      // Guessing tokens in-band is no cheaper than at the handshake: a few tries, then 1008.
      if (++session.refreshFailures >= MAX_REFRESH_FAILURES) {
        session.close(CloseCodes.policyViolation, 'authentication failed');
        return;
      }
      this.error(session, 'unauthorized', 'token not accepted', id);
    });
  }

  error(session: Session, code: ErrorCode, message: string, id?: string): void {
    session.counters.errors++;
    this.stats.protocolErrors++;
    this.stats.errorsByCode[code] = (this.stats.errorsByCode[code] ?? 0) + 1;
    session.sendFrame(id === undefined ? { op: 'error', code, message } : { op: 'error', code, message, id });
  }

  /** Counts a session's close code (GatewayServer calls it when a socket ends). */
  closed(code: number): void {
    this.stats.closeCodes[code] = (this.stats.closeCodes[code] ?? 0) + 1;
  }

  protocolError(session: Session, err: ProtocolError): void {
    this.error(session, err.code, err.message, err.id);
  }

  async close(): Promise<void> {
    this.routes.close();
  }
}
