// Fan-out on one node: one bus subscription per pattern that all local sessions share. A message
// for N local sessions is encoded once per codec and framed once; the bus sees one subscriber per
// pattern per node. Queue members are the exception: each is its own bus subscriber, so that the
// group (across nodes, with NATS) picks one session.
import type { Bus, BusMessage, BusSubscription } from '../bus/bus.ts';
import type { Session, SharedFrame } from './session.ts';
import { frameOnce } from './preframed.ts';
import { grantClock, isReserved } from '../security/subject-policy.ts';

/** Encodes a message at most once per codec, only when a member with that codec needs it. */
export class EncodedOnce implements SharedFrame {
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

/** Writes one message to many sessions; each is handed its reply_to (a grant). */
export function deliverToAll(members: Iterable<Session>, msg: BusMessage): void {
  const encoded = new EncodedOnce(msg);
  // Only reserved reply subjects are grants (ReplyGrants.grant); the clock is read once for all.
  const reply = msg.replyTo && isReserved(msg.replyTo) ? msg.replyTo : undefined;
  const now = reply === undefined ? 0 : grantClock();
  for (const s of members) {
    if (s.closed) continue;
    if (reply !== undefined) s.grant(reply, now);
    s.send(encoded.for(s), false, encoded);
  }
}

interface Pattern {
  sub: BusSubscription;
  members: Set<Session>;
}

export class Fanout {
  #bus: Bus;
  #patterns = new Map<string, Pattern>();

  constructor(bus: Bus) {
    this.#bus = bus;
  }

  /** Number of distinct patterns this node subscribes for its sessions. */
  get patterns(): number {
    return this.#patterns.size;
  }

  /** Adds `session` to `pattern` (in `queue`, if given); returns the release function. */
  subscribe(session: Session, pattern: string, queue: string | undefined): () => void {
    if (queue !== undefined) {
      // Reserved subjects never reach a client's subscription: the bus filters them.
      const sub = this.#bus.subscribe(pattern, (msg) => session.deliver(msg), { queue });
      return () => sub.unsubscribe();
    }
    let p = this.#patterns.get(pattern);
    if (!p) {
      const members = new Set<Session>();
      p = { sub: this.#bus.subscribe(pattern, (msg) => deliverToAll(members, msg)), members };
      this.#patterns.set(pattern, p);
    }
    const entry = p;
    entry.members.add(session);
    return () => {
      entry.members.delete(session);
      if (entry.members.size === 0) {
        entry.sub.unsubscribe();
        this.#patterns.delete(pattern);
      }
    };
  }
}
