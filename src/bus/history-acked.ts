// Acknowledged subscriptions: a durable JetStream consumer per (principal, durable name, pattern),
// shared by every session of that principal that names it, on any node. The durable pushes to its
// own subject (`_WSB.D.<durable>`) and each session reading it is one member of a NATS queue group
// there, so the server delivers only to sessions that are present: when a session goes, its
// membership ends (drained: what was already on its way is read and given back) before its
// unacknowledged messages are given back, and they go at once to another member, or wait for the
// next one. No request for messages is left behind (a pull consumer's pending pull would swallow
// messages for seconds and leave them to ack_wait), and a given-back message is marked
// `redelivered` because it was delivered.
import { AckPolicy, DeliverPolicy } from '@nats-io/jetstream';
import type { JetStreamManager, ConsumerConfig } from '@nats-io/jetstream';
import type { NatsConnection, Msg } from '@nats-io/transport-node';
import type { AckHandle, AckedOptions, AckedSubscription, BusMessage, StreamPosition } from './bus.ts';
import type { Logger } from '../observability/logger.ts';
import type { HistoryStats, SubjectMapping } from './jetstream-history.ts';
import { epochOf, isNotFound, REPLY_HEADER } from './jetstream-history.ts';

export interface DurableContext {
  nc: NatsConnection;
  jsm: JetStreamManager;
  stream: string;
  map: SubjectMapping;
  maxAgeSec: number;
  stats: HistoryStats;
  log: Logger;
  /** Every acknowledged subscription of this node, by its end function (a new epoch ends them all). */
  active: Set<(reason: string) => void>;
}

/**
 * A member that heard nothing from its durable for this long asks whether it is still there (a
 * queue group cannot have idle heartbeats); a new epoch ends every durable at once.
 */
export const DURABLE_CHECK_MS = 10_000;

const enc = new TextEncoder();

/** Delivery count and stream sequence from a JetStream ack subject ($JS.ACK.…, with or without domain). */
function ackInfo(reply: string): { delivered: number; seq: number } | undefined {
  const t = reply.split('.');
  if (t[0] !== '$JS' || t[1] !== 'ACK') return undefined;
  const at = t.length === 9 ? 4 : t.length >= 11 ? 6 : -1;
  if (at < 0) return undefined;
  const delivered = Number(t[at]);
  const seq = Number(t[at + 1]);
  return Number.isSafeInteger(delivered) && Number.isSafeInteger(seq) ? { delivered, seq } : undefined;
}

export async function subscribeDurable(ctx: DurableContext, pattern: string, name: string, ackWaitMs: number, deliver: (msg: BusMessage, handle: AckHandle) => void, opts: AckedOptions): Promise<AckedSubscription> {
  const { nc, jsm, stream, map } = ctx;
  const deliverSubject = `${map.prefix}_WSB.D.${name}`;
  let exists = true;
  // Everything up to this sequence is acknowledged (or was never the durable's): where a client
  // resumes this durable from if it is ever lost.
  let floor = 0;
  try {
    const ci = await jsm.consumers.info(stream, name);
    floor = ci.ack_floor.stream_seq;
    if (ci.config.deliver_subject !== deliverSubject) {
      // A durable of another shape under this name (a pull durable of an earlier version): made again from the client's position.
      await jsm.consumers.delete(stream, name);
      exists = false;
    } else if (ci.config.ack_wait !== ackWaitMs * 1_000_000) {
      await jsm.consumers.update(stream, name, { ack_wait: ackWaitMs * 1_000_000 });
    }
  } catch (err) {
    if (!isNotFound(err)) throw err;
    exists = false;
  }
  const info = await jsm.streams.info(stream);
  const position: StreamPosition = { seq: info.state.last_seq, epoch: epochOf(info) };
  if (!exists) {
    let start: Pick<ConsumerConfig, 'deliver_policy' | 'opt_start_seq'> = { deliver_policy: DeliverPolicy.New };
    floor = position.seq;
    if (opts.since !== undefined) {
      const first = info.state.first_seq;
      if ((opts.epoch !== undefined && opts.epoch !== position.epoch) || opts.since > position.seq) {
        opts.lost?.(first, 'epoch', position);
        start = { deliver_policy: DeliverPolicy.All };
        floor = first - 1;
      } else {
        if (info.state.messages > 0 ? opts.since + 1 < first : opts.since < position.seq) opts.lost?.(first, 'window', position);
        start = { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: Math.max(opts.since + 1, first) };
        floor = Math.max(opts.since + 1, first) - 1;
      }
    }
    try {
      await jsm.consumers.add(stream, {
        durable_name: name,
        deliver_subject: deliverSubject,
        deliver_group: name,
        filter_subject: map.toNats(pattern),
        ack_policy: AckPolicy.Explicit,
        ack_wait: ackWaitMs * 1_000_000,
        ...start,
        // A durable nobody has read for a history window is removed.
        inactive_threshold: ctx.maxAgeSec * 1_000_000_000,
      });
    } catch (err) {
      // Made by another session of the same principal meanwhile: use it.
      if (!/already (exists|in use)/i.test((err as Error).message)) throw err;
    }
  }

  let stopped = false;
  let ended = false;
  let heard = Date.now();
  const end = (reason: string) => {
    if (stopped || ended) return;
    ended = true;
    ctx.active.delete(end);
    clearInterval(watchdog);
    void sub.drain().catch(() => {});
    ctx.stats.durablesLost++;
    opts.ended?.(reason);
  };
  const sub = nc.subscribe(deliverSubject, {
    queue: name,
    callback: (err, m: Msg) => {
      if (err) return;
      heard = Date.now();
      const h = m.headers;
      if (h && h.code !== 0) {
        // 100: idle heartbeat (proof of life); 409 "Consumer Deleted": gone.
        if (h.code === 409 && /deleted/i.test(h.description)) end('its durable consumer was deleted');
        return;
      }
      const ai = m.reply ? ackInfo(m.reply) : undefined;
      if (!ai) return;
      const reply = m.reply!;
      const give = () => {
        ctx.stats.givenBack++;
        nc.publish(reply, enc.encode('-NAK'));
      };
      // Still on its way when the session left: back at once, to another member or the next one.
      if (stopped || ended) return give();
      const r = h?.get(REPLY_HEADER) || undefined;
      if (ai.delivered > 1) ctx.stats.redeliveries++;
      deliver(
        { subject: map.fromNats(m.subject), body: m.data, replyTo: r ? map.fromNats(r) : null, seq: ai.seq, redelivered: ai.delivered - 1 },
        { ack: () => nc.publish(reply, enc.encode('+ACK')), nak: give },
      );
    },
  });
  // Nothing heard for a while: the durable may be gone (deleted, removed for inactivity, a
  // JetStream reset) without a word to its members. Asked only then.
  const watchdog = setInterval(() => {
    if (stopped || ended || Date.now() - heard < DURABLE_CHECK_MS || nc.isClosed()) return;
    jsm.consumers.info(stream, name).then(() => {
      heard = Date.now();
    }, (e: unknown) => {
      if (isNotFound(e)) end('its durable consumer went away (JetStream lost it?)');
    });
  }, DURABLE_CHECK_MS);
  watchdog.unref();
  ctx.active.add(end);
  return {
    position: { seq: floor, epoch: position.epoch },
    stop: () => {
      if (stopped) return;
      stopped = true;
      ctx.active.delete(end);
      clearInterval(watchdog);
      // Drain: the server hears UNSUB first, then everything it sent before arrives here and is given back.
      void sub.drain().catch(() => {});
    },
  };
}
