// The in-process bus: the embedded default when no NATS is configured. Delivery is synchronous,
// in subscription order, and a throwing handler never stops delivery to the others. A message on a
// reserved subject (`_WSB.`, `_INBOX.`, `$…`) reaches only subscriptions made in reserved space
// (the gateway's own): never a wildcard such as `>`. NatsBus delivers through this class too, so
// both buses hide the same things.
import { randomBytes } from 'node:crypto';
import { SubjectTrie } from './subject-trie.ts';
import { RequestError } from './bus.ts';
import type { Bus, BusHandler, BusMessage, BusSubscription, SubscribeOptions } from './bus.ts';
import { isReserved, INBOX_PREFIX } from '../security/subject-policy.ts';

class MemorySubscription implements BusSubscription {
  readonly subject: string;
  readonly queue: string | undefined;
  readonly handler: BusHandler;
  /** Made in reserved space: the only kind of subscription that sees reserved subjects. */
  readonly reserved: boolean;
  #bus: MemoryBus;
  active = true;
  constructor(bus: MemoryBus, subject: string, queue: string | undefined, handler: BusHandler) {
    this.#bus = bus;
    this.subject = subject;
    this.queue = queue;
    this.handler = handler;
    this.reserved = isReserved(subject);
  }
  unsubscribe(): void {
    if (!this.active) return;
    this.active = false;
    this.#bus.remove(this);
  }
}

export class MemoryBus implements Bus {
  readonly nodeId = randomBytes(8).toString('base64url');
  #subs = new SubjectTrie<MemorySubscription>();
  #closed = false;
  /** Called when a subscriber throws; the bus itself never lets the error escape. */
  onHandlerError: (err: unknown, subject: string) => void = () => {};

  publish(msg: BusMessage): number {
    if (this.#closed) throw new RequestError('bus_unavailable', 'bus is closed');
    return this.#deliver(msg, true);
  }

  /**
   * Delivers to local subscriptions only. A bus that spans nodes passes `queues: false` so that
   * queue groups are chosen cluster-wide (by NATS) rather than here as well.
   */
  deliverLocal(msg: BusMessage, queues: boolean): number {
    return this.#deliver(msg, queues);
  }

  /** Delivers to the local non-queue subscriptions made with exactly `pattern`. */
  deliverToPattern(pattern: string, msg: BusMessage): number {
    let n = 0;
    const reserved = isReserved(msg.subject);
    for (const s of this.#subs.match(msg.subject, !msg.subject.startsWith(INBOX_PREFIX))) if (s.subject === pattern && s.queue === undefined && (!reserved || s.reserved) && this.#call(s, msg)) n++;
    return n;
  }

  /** Delivers to one local member of `queue` among subscriptions on `pattern`. */
  deliverToQueue(pattern: string, queue: string, msg: BusMessage): boolean {
    const reserved = isReserved(msg.subject);
    const members = this.#subs.match(msg.subject).filter((s) => s.queue === queue && s.subject === pattern && s.active && (!reserved || s.reserved));
    if (members.length === 0) return false;
    return this.#call(members[Math.floor(Math.random() * members.length)]!, msg);
  }

  /** Delivers and returns how many subscriptions received the message. */
  #deliver(msg: BusMessage, queues: boolean): number {
    // Request inboxes are used once each: matched without filling the trie's cache.
    const matched = this.#subs.match(msg.subject, !msg.subject.startsWith(INBOX_PREFIX));
    if (matched.length === 0) return 0;
    const reserved = isReserved(msg.subject);
    let groups: Map<string, MemorySubscription[]> | undefined;
    let count = 0;
    for (const sub of matched) {
      if (reserved && !sub.reserved) continue;
      if (sub.queue !== undefined) {
        if (!queues) continue;
        groups ??= new Map();
        const members = groups.get(sub.queue);
        if (members) members.push(sub);
        else groups.set(sub.queue, [sub]);
        continue;
      }
      if (this.#call(sub, msg)) count++;
    }
    if (groups) {
      for (const members of groups.values()) {
        const pick = members[Math.floor(Math.random() * members.length)]!;
        if (this.#call(pick, msg)) count++;
      }
    }
    return count;
  }

  #call(sub: MemorySubscription, msg: BusMessage): boolean {
    if (!sub.active) return false; // unsubscribed by an earlier handler of this same delivery
    try {
      sub.handler(msg);
    } catch (err) {
      this.onHandlerError(err, msg.subject);
    }
    return true;
  }

  subscribe(subject: string, handler: BusHandler, opts?: SubscribeOptions): BusSubscription {
    const sub = new MemorySubscription(this, subject, opts?.queue, handler);
    this.#subs.insert(subject, sub);
    this.onInterest(subject, opts?.queue, +1);
    return sub;
  }

  remove(sub: MemorySubscription): void {
    if (this.#subs.remove(sub.subject, sub)) this.onInterest(sub.subject, sub.queue, -1);
  }

  /** Told when a subscription on (subject, queue) comes (+1) or goes (-1): a cluster bus mirrors interest. */
  onInterest: (subject: string, queue: string | undefined, delta: 1 | -1) => void = () => {};

  async close(): Promise<void> {
    this.#closed = true;
  }
}
