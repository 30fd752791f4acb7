// The in-process bus: the embedded default when no NATS is configured. Delivery is synchronous,
// in subscription order, and a throwing handler never stops delivery to the others.
import { randomBytes } from 'node:crypto';
import { SubjectTrie } from './subject-trie.ts';
import { RequestError, replyError } from './bus.ts';
import type { Bus, BusHandler, BusMessage, BusSubscription, SubscribeOptions } from './bus.ts';
import { INTERNAL_PREFIX } from '../protocol/subject.ts';

class MemorySubscription implements BusSubscription {
  readonly subject: string;
  readonly queue: string | undefined;
  readonly handler: BusHandler;
  #bus: MemoryBus;
  active = true;
  constructor(bus: MemoryBus, subject: string, queue: string | undefined, handler: BusHandler) {
    this.#bus = bus;
    this.subject = subject;
    this.queue = queue;
    this.handler = handler;
  }
  unsubscribe(): void {
    if (!this.active) return;
    this.active = false;
    this.#bus.remove(this);
  }
}

interface Pending {
  subject: string;
  resolve(msg: BusMessage): void;
  reject(err: Error): void;
  timer: NodeJS.Timeout;
}

export class MemoryBus implements Bus {
  #subs = new SubjectTrie<MemorySubscription>();
  #inboxPrefix = `${INTERNAL_PREFIX}R.${randomBytes(6).toString('base64url')}.`;
  #inbox: BusSubscription | undefined;
  #pending = new Map<string, Pending>();
  #nextRequest = 0;
  #closed = false;
  /** Called when a subscriber throws; the bus itself never lets the error escape. */
  onHandlerError: (err: unknown, subject: string) => void = () => {};

  publish(msg: BusMessage): void {
    if (this.#closed) throw new RequestError('bus_unavailable', 'bus is closed');
    this.#deliver(msg, true);
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
    for (const s of this.#subs.match(msg.subject)) if (s.subject === pattern && s.queue === undefined && this.#call(s, msg)) n++;
    return n;
  }

  /** Delivers to one local member of `queue` among subscriptions on `pattern`. */
  deliverToQueue(pattern: string, queue: string, msg: BusMessage): boolean {
    const members = this.#subs.match(msg.subject).filter((s) => s.queue === queue && s.subject === pattern && s.active);
    if (members.length === 0) return false;
    return this.#call(members[Math.floor(Math.random() * members.length)]!, msg);
  }

  /** Delivers and returns how many subscriptions received the message. */
  #deliver(msg: BusMessage, queues: boolean): number {
    const matched = this.#subs.match(msg.subject);
    if (matched.length === 0) return 0;
    let groups: Map<string, MemorySubscription[]> | undefined;
    let count = 0;
    for (const sub of matched) {
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

  request(subject: string, body: Uint8Array, timeoutMs: number): Promise<BusMessage> {
    if (this.#closed) return Promise.reject(new RequestError('bus_unavailable', 'bus is closed'));
    this.#inbox ??= this.subscribe(`${this.#inboxPrefix}*`, (reply) => {
      const token = reply.subject.slice(this.#inboxPrefix.length);
      const p = this.#pending.get(token);
      if (!p) return; // late reply after a timeout: dropped, as NATS does
      this.#pending.delete(token);
      clearTimeout(p.timer);
      if (reply.errorCode) p.reject(replyError(p.subject, reply.errorCode));
      else p.resolve(reply);
    });
    const token = (this.#nextRequest++).toString(36);
    return new Promise<BusMessage>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(token);
        reject(new RequestError('timeout', `no reply on ${subject} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.#pending.set(token, { subject, resolve, reject, timer });
      const delivered = this.#deliver({ subject, body, replyTo: this.#inboxPrefix + token }, true);
      if (delivered === 0 && this.#pending.has(token)) {
        this.#pending.delete(token);
        clearTimeout(timer);
        reject(new RequestError('no_responders', `no subscribers on ${subject}`));
      }
    });
  }

  async close(): Promise<void> {
    this.#closed = true;
    for (const p of this.#pending.values()) {
      clearTimeout(p.timer);
      p.reject(new RequestError('bus_unavailable', 'bus closed'));
    }
    this.#pending.clear();
  }
}
