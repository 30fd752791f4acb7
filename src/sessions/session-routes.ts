// The node-wide subscription that reaches sessions by their reply subject `_WSB.S.<node>.<token>`:
// one wildcard subscription per node and a map from reply subject to session (no bus subscription
// per session; the token is 128 random bits and is not the session id, so no frame reveals another
// session's id). Sends to one session and broadcasts, which need an answer from the node that
// holds the sessions, are src/cluster/node-requests.ts.
import { randomBytes } from 'node:crypto';
import type { Bus, BusMessage, BusSubscription } from '../bus/bus.ts';
import type { Session } from './session.ts';
import { deliverToAll } from './fanout.ts';
import { SESSION_REPLY_PREFIX } from '../security/subject-policy.ts';

export class SessionRoutes {
  readonly replyPrefix: string;
  /** Keyed by the whole reply subject: the session's own string, no second string per session. */
  #byReplySubject = new Map<string, Session>();
  #subs: BusSubscription[];
  #sessions: Map<string, Session>;

  constructor(bus: Bus, sessions: Map<string, Session>) {
    this.#sessions = sessions;
    this.replyPrefix = `${SESSION_REPLY_PREFIX}${bus.nodeId}.`;
    const replyPrefix = this.replyPrefix;
    this.#subs = [bus.subscribe(`${replyPrefix}*`, (msg) => this.#byReplySubject.get(msg.subject)?.deliver(msg))];
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

  /** Writes a message to every session on this node, encoded once; returns how many. */
  broadcastLocal(msg: BusMessage): number {
    deliverToAll(this.#sessions.values(), { subject: msg.subject, body: msg.body, replyTo: msg.replyTo ?? null });
    return this.#sessions.size;
  }

  close(): void {
    for (const s of this.#subs) s.unsubscribe();
    this.#subs = [];
  }
}
