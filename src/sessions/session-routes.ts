// Reply subjects `_WSB.S.<node>.<token>`: one wildcard subscription per node and a map from token
// to session (no bus subscription per session; the token is 128 random bits and is not the
// session id, so no frame reveals another session's id). Sends to one session and broadcasts,
// which need an answer from the node that holds the sessions, are src/cluster/node-requests.ts.
import { randomBytes } from 'node:crypto';
import type { Bus, BusMessage, BusSubscription } from '../bus/bus.ts';
import type { Session } from './session.ts';
import { deliverToAll } from './fanout.ts';
import { SESSION_REPLY_PREFIX } from '../security/subject-policy.ts';

export class SessionRoutes {
  readonly replyPrefix: string;
  #byReplyToken = new Map<string, Session>();
  #subs: BusSubscription[];
  #sessions: Map<string, Session>;

  constructor(bus: Bus, sessions: Map<string, Session>) {
    this.#sessions = sessions;
    this.replyPrefix = `${SESSION_REPLY_PREFIX}${bus.nodeId}.`;
    const replyPrefix = this.replyPrefix;
    this.#subs = [bus.subscribe(`${replyPrefix}*`, (msg) => this.#byReplyToken.get(msg.subject.slice(replyPrefix.length))?.deliver(msg))];
  }

  /** A fresh reply subject on this node: `_WSB.S.<node>.<128 random bits>`. */
  newReplySubject(): string {
    return this.replyPrefix + randomBytes(16).toString('base64url');
  }

  add(session: Session): void {
    if (session.replySubject.startsWith(this.replyPrefix)) this.#byReplyToken.set(session.replySubject.slice(this.replyPrefix.length), session);
  }

  remove(session: Session): void {
    const token = session.replySubject.slice(this.replyPrefix.length);
    if (this.#byReplyToken.get(token) === session) this.#byReplyToken.delete(token);
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
