// Delivery that survives a session: acknowledged subscriptions on a JetStream durable, and
// subscriptions that resume from a stream position. Both need a bus with history (NATS JetStream).
import type { Bus, BusMessage } from '../bus/bus.ts';
import type { Session } from './session.ts';
import { scopedDurableName } from '../security/subject-policy.ts';

export interface DeliveryEvents {
  error(session: Session, code: 'history_unavailable' | 'bus_unavailable', message: string, id: string | undefined): void;
  changed(session: Session): void;
  /** A history subscription could not be served now (counted for metrics). */
  failed(kind: 'position' | 'replay' | 'acked' | 'ended'): void;
}

/** A subscription this module made: whether it is acked, and how to forget what it sent (a new epoch). */
interface Tracked {
  acked: boolean;
  resetSent?(): void;
}

export class DurableDelivery {
  #bus: Bus;
  #events: DeliveryEvents;
  /** By release function (the value in session.subscriptions). */
  #tracked = new WeakMap<() => void, Tracked>();

  constructor(bus: Bus, events: DeliveryEvents) {
    this.#bus = bus;
    this.#events = events;
  }

  /**
   * Acknowledged delivery: messages come from a durable consumer and carry seq (and `redelivered`
   * after the first delivery); the client answers {op:"ack",seq}. Unacked ones come again after
   * ack_wait_ms, and at once to the next consumer of the durable when this session goes away. The
   * durable is the client's name scoped to its principal and pattern (scopedDurableName), so no
   * client can join or rewrite another's. `since`/`epoch`: where a durable that has to be made
   * (new, or lost with a JetStream reset) starts. When the durable goes away while consumed, the
   * subscription ends with an error frame naming it (bus_unavailable, `subject`): subscribe again.
   */
  subscribeAcked(session: Session, pattern: string, durable: string, waitMs: number, since: number | undefined, epoch: string | undefined, id: string | undefined): void {
    const bus = this.#bus;
    if (!bus.subscribeAcked || !bus.hasHistory?.(pattern)) {
      this.#events.error(session, 'history_unavailable', `${pattern} keeps no history (HISTORY_SUBJECTS, with NATS): no acknowledged delivery`, id);
      return;
    }
    session.subscriptions.get(pattern)?.();
    let stop: (() => void) | undefined;
    let released = false;
    const release = () => {
      released = true;
      stop?.();
    };
    session.subscriptions.set(pattern, release);
    this.#tracked.set(release, { acked: true });
    const current = () => !released && !session.closed && session.subscriptions.get(pattern) === release;
    const tenant = (bus as { prefix?: string }).prefix ?? '';
    bus.subscribeAcked(pattern, scopedDurableName(tenant, session.principal, durable, pattern), waitMs, (msg, handle) => {
      // Arrived after the session went (or as it goes): given back at once, for the next consumer
      // of the durable (the bus delays the redelivery past this node's pending pull).
      if (released || session.closed) {
        handle.nak();
        return;
      }
      session.unacked.set(msg.seq!, handle);
      session.deliver(msg); // if dropped (slow consumer), ack_wait brings it back
    }, {
      since,
      epoch,
      lost: (firstSeq, reason, p) => {
        if (current()) session.sendFrame({ op: 'history_lost', subject: pattern, since: since ?? 0, first_seq: firstSeq, epoch: p.epoch, reason, ...(id !== undefined ? { id } : {}) });
      },
      ended: (reason) => {
        if (!current()) return;
        this.#events.failed('ended');
        release();
        session.subscriptions.delete(pattern);
        this.#events.changed(session);
        session.sendFrame({ op: 'error', code: 'bus_unavailable', message: `acknowledged subscription ${pattern} ended (${reason}): subscribe again`, subject: pattern });
      },
    }).then((sub) => {
      stop = () => sub.stop();
      if (released) sub.stop();
      else if (id !== undefined) session.sendFrame(sub.position ? { op: 'ok', id, seq: sub.position.seq, epoch: sub.position.epoch } : { op: 'ok', id });
      this.#events.changed(session);
    }, (err: unknown) => {
      if (session.subscriptions.get(pattern) === release) session.subscriptions.delete(pattern);
      this.#events.failed('acked');
      this.#events.error(session, 'bus_unavailable', `acknowledged subscription failed: ${(err as Error).message}`, id);
    });
  }

  /**
   * The history stream is another one (a JetStream reset): every history subscription hears
   * history_lost (reason epoch) and counts sequences from the new stream's start. Acked ones end
   * on their own when their durable goes (see subscribeAcked).
   */
  epochChanged(sessions: Iterable<Session>, epoch: string, previousLastSeq: number, firstSeq: number): void {
    const bus = this.#bus;
    for (const session of sessions) {
      if (!session.hasSubscriptions) continue;
      for (const [pattern, release] of session.subscriptions) {
        const t = this.#tracked.get(release);
        if (t?.acked || !bus.hasHistory?.(pattern)) continue;
        t?.resetSent?.();
        session.sendFrame({ op: 'history_lost', subject: pattern, since: previousLastSeq, first_seq: firstSeq, epoch, reason: 'epoch' });
      }
    }
  }

  /**
   * A plain subscription to a history pattern: live at once, and its `ok` carries the stream's
   * position (seq, epoch) taken after the subscription exists, so a client that later resumes
   * from it misses nothing even if it never received a message. Without the position (JetStream
   * unreachable) the subscription is released and refused with bus_unavailable: a client must not
   * believe it holds a place it could resume from.
   */
  subscribeWithPosition(session: Session, pattern: string, release: () => void, id: string | undefined): void {
    this.#bus.position!().then((p) => {
      if (session.subscriptions.get(pattern) !== release) return; // unsubscribed meanwhile
      if (id !== undefined) session.sendFrame({ op: 'ok', id, seq: p.seq, epoch: p.epoch });
    }, (err: unknown) => {
      if (session.subscriptions.get(pattern) !== release) return;
      release();
      session.subscriptions.delete(pattern);
      this.#events.changed(session);
      this.#events.failed('position');
      this.#events.error(session, 'bus_unavailable', `history position unavailable, not subscribed: ${(err as Error).message}`, id);
    });
  }

  /**
   * A subscription that first replays what the session missed (sequence > since, in the stream
   * `epoch` names) from the bus's history, then goes live. Live messages that arrive during the
   * replay wait (at most MAX_HELD) and are sent after it; from then on a message at or below the
   * last sequence sent is never sent again, so the client sees each sequence once, in order. A
   * replay that fails releases the subscription before the error is sent: no live message can
   * make the client believe it is past the gap.
   */
  resume(session: Session, pattern: string, queue: string | undefined, since: number, epoch: string | undefined, id: string | undefined): void {
    const bus = this.#bus;
    if (!bus.replay || !bus.hasHistory?.(pattern)) {
      this.#events.error(session, 'history_unavailable', `${pattern} keeps no history (HISTORY_SUBJECTS, with NATS)`, id);
      return;
    }
    session.subscriptions.get(pattern)?.();
    let waiting: BusMessage[] | undefined = [];
    let sent = 0; // the highest sequence sent to this subscription
    let failed = false;
    const fail = (message: string) => {
      if (failed) return;
      failed = true;
      waiting = undefined;
      if (session.subscriptions.get(pattern) === release) {
        release();
        session.subscriptions.delete(pattern);
        this.#events.changed(session);
      }
      this.#events.failed('replay');
      this.#events.error(session, 'bus_unavailable', message, id);
    };
    const send = (msg: BusMessage) => {
      if (msg.seq !== undefined) {
        if (msg.seq <= sent) return;
        sent = msg.seq;
      }
      session.deliver(msg);
    };
    const sub = bus.subscribe(pattern, (msg) => {
      if (failed) return;
      if (!waiting) return send(msg);
      if (waiting.length >= MAX_HELD) return fail(`more than ${MAX_HELD} live messages arrived during the replay: subscribe again with since`);
      waiting.push(msg);
    }, { queue });
    const release = () => sub.unsubscribe();
    session.subscriptions.set(pattern, release);
    this.#tracked.set(release, { acked: false, resetSent: () => (sent = 0) });
    bus.replay(pattern, since, epoch, {
      lost: (firstSeq, reason, p) => session.sendFrame({ op: 'history_lost', subject: pattern, since, first_seq: firstSeq, epoch: p.epoch, reason, ...(id !== undefined ? { id } : {}) }),
      deliver: (msg) => {
        if (!failed) send(msg);
      },
    }).then((r) => {
      if (failed || session.subscriptions.get(pattern) !== release) return;
      const held = waiting ?? [];
      waiting = undefined;
      if (sent < r.lastSeq) sent = r.lastSeq;
      for (const m of held) send(m);
      // Covered up to the stream's position when the replay began, or further if live ones came.
      if (id !== undefined) session.sendFrame({ op: 'ok', id, seq: Math.max(sent, r.position.seq), epoch: r.position.epoch });
      this.#events.changed(session);
    }, (err: unknown) => fail(`history replay failed, not subscribed: ${(err as Error).message}`));
  }
}

/** Live messages held for one resuming subscription while its replay runs. */
export const MAX_HELD = 10_000;
