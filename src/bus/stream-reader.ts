// Reads part of a JetStream stream once, completely or not at all: a short-lived consumer (in
// memory, removed by the server 10 s after its last use if our delete does not arrive) is made
// for the read, which knows from the start how many messages it must deliver, so a read that
// stops early is an error, never a silent gap. Used for history replay and presence snapshots.
import { randomBytes } from 'node:crypto';
import { AckPolicy, DeliverPolicy } from '@nats-io/jetstream';
import type { JetStreamClient, JetStreamManager, JsMsg } from '@nats-io/jetstream';

export interface ReadOptions {
  /** Only messages on subjects matching this NATS pattern. */
  filter?: string;
  /** From this sequence on (default: the first). */
  startSeq?: number;
  /** Only the last message of each subject (a KV bucket's current values). */
  lastPerSubject?: boolean;
  /** Stop after this sequence (messages stored after the read began are not part of it). */
  upTo: number;
  /** How long one batch may take to arrive before the read fails (default 1000 ms). */
  batchTimeoutMs?: number;
}

/** A read could not deliver every message it had to (JetStream stalled or lost the consumer). */
export class StreamReadError extends Error {}

/** Delivers each matching message with sequence ≤ upTo, in order; resolves with how many. */
export async function readStream(jsm: JetStreamManager, js: JetStreamClient, stream: string, opts: ReadOptions, each: (m: JsMsg) => void): Promise<number> {
  const name = `wsb_read_${randomBytes(9).toString('base64url').replace(/[-_]/g, 'x')}`;
  const ci = await jsm.consumers.add(stream, {
    name,
    ack_policy: AckPolicy.None,
    deliver_policy: opts.lastPerSubject ? DeliverPolicy.LastPerSubject : opts.startSeq !== undefined ? DeliverPolicy.StartSequence : DeliverPolicy.All,
    ...(opts.startSeq !== undefined && !opts.lastPerSubject ? { opt_start_seq: opts.startSeq } : {}),
    ...(opts.filter !== undefined ? { filter_subject: opts.filter } : {}),
    inactive_threshold: 10_000_000_000,
    mem_storage: true,
    num_replicas: 1,
  });
  let pending = ci.num_pending;
  let count = 0;
  const wait = opts.batchTimeoutMs ?? 1000;
  try {
    if (pending === 0) return 0;
    const consumer = js.consumers.getConsumerFromInfo(ci);
    for (;;) {
      const batch = await consumer.fetch({ max_messages: Math.min(pending, 500), expires: wait });
      let got = 0;
      let done = false;
      for await (const m of batch) {
        got++;
        if (m.seq > opts.upTo) {
          done = true;
          break;
        }
        each(m);
        count++;
        pending = m.info.pending;
        if (m.seq >= opts.upTo || pending === 0) {
          done = true;
          break;
        }
      }
      if (done) return count;
      if (got === 0) throw new StreamReadError(`reading ${stream} stalled: ${pending} messages still to come after ${wait} ms`);
    }
  } finally {
    await jsm.consumers.delete(stream, name).catch(() => {});
  }
}
