// The node-wide subscriptions that reach sessions by something other than a subject they chose:
// - reply subjects `_WSB.S.<node>.<token>`: one wildcard subscription per node and a map from
//   reply subject to session (no bus subscription per session; the token is 128 random bits and
//   is not the session id, so no frame reveals another session's id);
// - operator sends to one session `_WSB.T.<node>.<session id>.<subject>`: the message arrives as
//   `<subject>`; only the gateway publishes there (reserved space, never granted to anyone);
// - broadcasts `_WSB.B.<subject>`: every node writes them to all its sessions, encoded once.
import { randomBytes } from 'node:crypto';
import type { Bus, BusMessage, BusSubscription } from '../bus/bus.ts';
import type { Session } from './session.ts';
import { deliverToAll } from './fanout.ts';
import { SESSION_REPLY_PREFIX, TARGETED_PREFIX, BROADCAST_PREFIX } from '../security/subject-policy.ts';

export class SessionRoutes {
  readonly replyPrefix: string;
  readonly targetedPrefix: string;
  /** Keyed by the whole reply subject: the session's own string, no second string per session. */
  #byReplySubject = new Map<string, Session>();
  #subs: BusSubscription[];
  #bus: Bus;

  constructor(bus: Bus, sessions: Map<string, Session>) {
    this.#bus = bus;
    this.replyPrefix = `${SESSION_REPLY_PREFIX}${bus.nodeId}.`;
    this.targetedPrefix = `${TARGETED_PREFIX}${bus.nodeId}.`;
    const replyPrefix = this.replyPrefix;
    const targetedPrefix = this.targetedPrefix;
    this.#subs = [
      bus.subscribe(`${replyPrefix}*`, (msg) => this.#byReplySubject.get(msg.subject)?.deliver(msg)),
      bus.subscribe(`${targetedPrefix}>`, (msg) => {
        const rest = msg.subject.slice(targetedPrefix.length);
        const dot = rest.indexOf('.');
        if (dot <= 0) return;
        sessions.get(rest.slice(0, dot))?.deliver({ subject: rest.slice(dot + 1), body: msg.body, replyTo: msg.replyTo ?? null });
      }),
      bus.subscribe(`${BROADCAST_PREFIX}>`, (msg) => {
        deliverToAll(sessions.values(), { subject: msg.subject.slice(BROADCAST_PREFIX.length), body: msg.body, replyTo: msg.replyTo ?? null });
      }),
    ];
  }

  /** A fresh reply subject on this node: `_WSB.S.<node>.<128 random bits>`. */
  newReplySubject(): string {
    return this.replyPrefix + randomBytes(16).toString('base64url');
  }

  add(session: Session): void {
    if (session.replySubject.startsWith(this.replyPrefix)) this.#byReplySubject.set(session.replySubject, session);
  }

  remove(session: Session): void {
    if (this.#byReplySubject.get(session.replySubject) === session) this.#byReplySubject.delete(session.replySubject);
  }

  /** Sends to one session on node `node` (this node's id for a local one). */
  sendTo(node: string, sessionId: string, msg: BusMessage): void {
    this.#bus.publish({ subject: `${TARGETED_PREFIX}${node}.${sessionId}.${msg.subject}`, body: msg.body, replyTo: msg.replyTo ?? null });
  }

  broadcast(msg: BusMessage): void {
    this.#bus.publish({ subject: BROADCAST_PREFIX + msg.subject, body: msg.body, replyTo: msg.replyTo ?? null });
  }

  close(): void {
    for (const s of this.#subs) s.unsubscribe();
    this.#subs = [];
  }
}
