// Fan-out on one node: one bus subscription per pattern that all local sessions share. A message
// for N local sessions is encoded once per codec and framed once; the bus sees one subscriber per
// pattern per node. Queue members are the exception: each is its own bus subscriber, so that the
// group (across nodes, with NATS) picks one session.
//
// Consecutive messages to the same pattern in one tick (a publisher's burst, a NATS batch) are
// held until the end of the tick and given to each member in one visit, the way uWebSockets
// drains a topic: one grant update and one batch append per member for the whole burst, the
// frames joined once per codec for all of them. Whatever else is about to reach a session (any
// other frame, a message of another pattern, a subscription change, a close) delivers the held
// burst first, so every session sees what it would have seen message by message.
import type { Bus, BusMessage, BusSubscription } from '../bus/bus.ts';
import type { Session, SharedBurst, SharedFrame, SharedRun } from './session.ts';
import { BATCH_BYTES, frameOnce } from './preframed.ts';
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

/**
 * Writes one message to many sessions; each is handed its reply_to (a grant). To a pattern's
 * member set, the message joins the burst held for those members (see the top of this file).
 */
export function deliverToAll(members: Iterable<Session>, msg: BusMessage): void {
  if (members instanceof Set) {
    if (held !== undefined && held.members === members && held.msgs.length < HELD_MAX) {
      held.msgs.push(msg);
      return;
    }
    flushHeldFanout();
    held = { members, msgs: [msg] };
    if (!heldScheduled) {
      heldScheduled = true;
      process.nextTick(endOfTick);
    }
    return;
  }
  flushHeldFanout();
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

/** Most messages held in one burst before it is delivered (a bound, whatever one tick brings). */
const HELD_MAX = 1024;
let held: { members: Set<Session>; msgs: BusMessage[] } | undefined;
let heldScheduled = false;
function endOfTick(): void {
  heldScheduled = false;
  flushHeldFanout();
}

/** Delivers the burst held for a pattern's members now (before anything else reaches a session). */
export function flushHeldFanout(): void {
  const h = held;
  if (h === undefined) return;
  held = undefined; // first: whatever a delivery below triggers finds nothing held
  const burst = new Burst(h.msgs);
  const now = burst.grants.size > 0 ? grantClock() : 0;
  for (const s of h.members) s.deliverBurst(burst, now);
}

/** A held burst: encoded, framed and joined at most once per codec, for all its members. */
class Burst implements SharedBurst {
  readonly size: number;
  readonly grants = new Map<string, number>();
  #msgs: BusMessage[];
  #encoded: Array<EncodedOnce | undefined>;
  #jsonRuns: SharedRun[] | undefined;
  #msgpackRuns: SharedRun[] | undefined;

  constructor(msgs: BusMessage[]) {
    this.#msgs = msgs;
    this.size = msgs.length;
    this.#encoded = new Array<EncodedOnce | undefined>(msgs.length);
    // Only reserved reply subjects are grants (ReplyGrants.grant).
    for (const m of msgs) if (m.replyTo && isReserved(m.replyTo)) this.grants.set(m.replyTo, (this.grants.get(m.replyTo) ?? 0) + 1);
  }

  message(i: number): EncodedOnce {
    return (this.#encoded[i] ??= new EncodedOnce(this.#msgs[i]!));
  }

  runs(session: Session): readonly SharedRun[] {
    if (session.codec.name === 'json') return (this.#jsonRuns ??= this.#makeRuns(session));
    return (this.#msgpackRuns ??= this.#makeRuns(session));
  }

  /** The frames for the session's codec in runs of at most BATCH_BYTES (or one larger frame). */
  #makeRuns(session: Session): SharedRun[] {
    const runs: SharedRun[] = [];
    let frames: Buffer[] = [];
    let size = 0;
    let bytes = 0;
    const close = () => runs.push({ buf: frames.length === 1 ? frames[0]! : Buffer.concat(frames, size), count: frames.length, bytes });
    for (let i = 0; i < this.size; i++) {
      const e = this.message(i);
      const payload = e.for(session).length;
      const frame = e.framed(session);
      if (frames.length > 0 && size + frame.length > BATCH_BYTES) {
        close();
        frames = [];
        size = 0;
        bytes = 0;
      }
      frames.push(frame);
      size += frame.length;
      bytes += payload;
    }
    if (frames.length > 0) close();
    return runs;
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
    // A held burst was published before this subscription: it goes to the members it had.
    flushHeldFanout();
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
      flushHeldFanout(); // what was published before the release still reaches the session
      entry.members.delete(session);
      if (entry.members.size === 0) {
        entry.sub.unsubscribe();
        this.#patterns.delete(pattern);
      }
    };
  }
}
