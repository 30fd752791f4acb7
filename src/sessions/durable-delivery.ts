// Delivery that survives a session: acknowledged subscriptions on a JetStream durable, and
// subscriptions that resume from a stream position. Both need a bus with history (NATS JetStream).
import type { Bus, BusMessage } from '../bus/bus.ts';
import type { Session } from './session.ts';
import { scopedDurableName } from '../security/subject-policy.ts';

export interface DeliveryEvents {
  error(session: Session, code: 'history_unavailable' | 'bus_unavailable', message: string, id: string | undefined): void;
  changed(session: Session): void;
}

export class DurableDelivery {
  #bus: Bus;
  #events: DeliveryEvents;

  constructor(bus: Bus, events: DeliveryEvents) {
    this.#bus = bus;
    this.#events = events;
  }

  /**
   * Acknowledged delivery: messages come from a durable consumer and carry seq (and `redelivered`
   * after the first delivery); the client answers {op:"ack",seq}. Unacked ones come again after
   * ack_wait_ms, and at once to the next consumer of the durable when this session goes away. The
   * durable is the client's name scoped to its principal and pattern (scopedDurableName), so no
   * client can join or rewrite another's.
   */
  subscribeAcked(session: Session, pattern: string, durable: string, waitMs: number, id: string | undefined): void {
    const bus = this.#bus;
    if (!bus.subscribeAcked || !bus.hasHistory?.(pattern)) {
      this.#events.error(session, 'history_unavailable', `${pattern} keeps no history (HISTORY_SUBJECTS, with NATS): no acknowledged delivery`, id);
      return;
    }
    session.subscriptions.get(pattern)?.();
    let stop: (() => void) | undefined;
    let released = false;
    session.subscriptions.set(pattern, () => {
      released = true;
      stop?.();
    });
    const tenant = (bus as { prefix?: string }).prefix ?? '';
    bus.subscribeAcked(pattern, scopedDurableName(tenant, session.principal, durable, pattern), waitMs, (msg, handle) => {
      // Arrived after the session went: left unacknowledged, it comes again after ack_wait
      // (a nak here could bounce straight back to this stopping consumer).
      if (released || session.closed) return;
      session.unacked.set(msg.seq!, handle);
      session.deliver(msg); // if dropped (slow consumer), ack_wait brings it back
    }).then((sub) => {
      stop = () => sub.stop();
      if (released) sub.stop();
      else if (id !== undefined) session.sendFrame({ op: 'ok', id });
      this.#events.changed(session);
    }, (err: unknown) => {
      if (session.subscriptions.get(pattern) !== undefined && !released) session.subscriptions.delete(pattern);
      this.#events.error(session, 'bus_unavailable', `acknowledged subscription failed: ${(err as Error).message}`, id);
    });
  }

  /**
   * A subscription that first replays what the session missed (sequence > since) from the bus's
   * history, then goes live. Live messages that arrive during the replay wait and are sent after
   * it, minus those the replay already sent, so the client sees each sequence once, in order.
   */
  resume(session: Session, pattern: string, queue: string | undefined, since: number, id: string | undefined): void {
    const bus = this.#bus;
    if (!bus.replay || !bus.hasHistory?.(pattern)) {
      this.#events.error(session, 'history_unavailable', `${pattern} keeps no history (HISTORY_SUBJECTS, with NATS)`, id);
      return;
    }
    session.subscriptions.get(pattern)?.();
    let waiting: BusMessage[] | undefined = [];
    const sub = bus.subscribe(pattern, (msg) => {
      if (waiting) waiting.push(msg);
      else session.deliver(msg);
    }, { queue });
    session.subscriptions.set(pattern, () => sub.unsubscribe());
    bus.replay(pattern, since, {
      lost: (firstSeq) => session.sendFrame({ op: 'history_lost', subject: pattern, since, first_seq: firstSeq, ...(id !== undefined ? { id } : {}) }),
      deliver: (msg) => session.deliver(msg),
    }).then((r) => {
      const held = waiting ?? [];
      waiting = undefined;
      for (const m of held) if (m.seq === undefined || m.seq > r.lastSeq) session.deliver(m);
      if (id !== undefined) session.sendFrame({ op: 'ok', id });
      this.#events.changed(session);
    }, (err: unknown) => {
      waiting = undefined;
      this.#events.error(session, 'bus_unavailable', `history replay failed: ${(err as Error).message}`, id);
    });
  }
}
