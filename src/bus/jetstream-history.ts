// History on NATS JetStream: the stream that keeps messages on HISTORY_SUBJECTS, the live
// consumers that deliver them to this node's subscribers with their sequence, acknowledged
// subscriptions on durable consumers, and replay from a position. NatsBus mirrors interest and
// routes plain traffic; everything that needs JetStream lives here (nats.js keeps JetStream in
// its own package for the same reason).
import { jetstream, jetstreamManager, AckPolicy, DeliverPolicy, DiscardPolicy } from '@nats-io/jetstream';
import type { JetStreamClient, JetStreamManager } from '@nats-io/jetstream';
import type { NatsConnection, MsgHdrs } from '@nats-io/transport-node';
import { SubjectTrie } from './subject-trie.ts';
import { patternCovers } from '../protocol/subject.ts';
import { RequestError } from './bus.ts';
import type { AckHandle, AckedSubscription, BusMessage, ReplayResult, ReplaySink } from './bus.ts';

export interface HistoryOptions {
  subjects: string[];
  maxAgeSec: number;
  maxMsgs: number;
}

/** The history stream's name with an empty NATS_PREFIX; other prefixes get their own stream. */
export const HISTORY_STREAM = 'WSBRIDGE_HISTORY';
/** reply_to of a stored message: a NATS reply subject would receive JetStream's publish ack. */
export const REPLY_HEADER = 'Wsb-Reply';
export const ORIGIN_HEADER = 'Wsb-Origin';

/** How wsbridge subjects map to NATS subjects and back (NATS_PREFIX, raw subjects). */
export interface SubjectMapping {
  prefix: string;
  toNats(subject: string): string;
  fromNats(subject: string): string;
}

export class JetStreamHistory {
  readonly stream: string;
  #js: JetStreamClient;
  #jsm: JetStreamManager;
  #map: SubjectMapping;
  #patterns: string[];
  #trie = new SubjectTrie<string>();
  #maxAgeSec: number;

  private constructor(stream: string, js: JetStreamClient, jsm: JetStreamManager, map: SubjectMapping, opts: HistoryOptions) {
    this.stream = stream;
    this.#js = js;
    this.#jsm = jsm;
    this.#map = map;
    this.#patterns = opts.subjects;
    this.#maxAgeSec = opts.maxAgeSec;
    for (const p of opts.subjects) this.#trie.insert(p, p);
  }

  /**
   * Creates (or updates) the stream. The window is trimmed from the oldest end only (max age, max
   * messages), so a gap is always visible as `since < first stored sequence - 1`.
   */
  static async create(nc: NatsConnection, stream: string, map: SubjectMapping, opts: HistoryOptions): Promise<JetStreamHistory> {
    const jsm = await jetstreamManager(nc);
    const js = jetstream(nc);
    const config = {
      name: stream,
      subjects: opts.subjects.map((p) => map.prefix + p),
      max_age: opts.maxAgeSec * 1_000_000_000,
      max_msgs: opts.maxMsgs,
      discard: DiscardPolicy.Old,
    };
    try {
      await jsm.streams.add(config);
    } catch {
      await jsm.streams.update(stream, config);
    }
    return new JetStreamHistory(stream, js, jsm, map, opts);
  }

  /** Starts one live consumer per pattern, delivering to `deliverLocal` with the stream sequence. */
  async startLive(deliverLocal: (msg: BusMessage) => void): Promise<void> {
    const map = this.#map;
    for (const p of this.#patterns) {
      const consumer = await this.#js.consumers.get(this.stream, { filter_subjects: map.prefix + p, deliver_policy: DeliverPolicy.New });
      await consumer.consume({
        callback: (m) => {
          const reply = m.headers?.get(REPLY_HEADER) || undefined;
          deliverLocal({
            subject: map.fromNats(m.subject),
            body: m.data,
            replyTo: reply ? map.fromNats(reply) : null,
            origin: m.headers?.get(ORIGIN_HEADER) || undefined,
            seq: m.seq,
          });
        },
      });
    }
  }

  /** Whether `subject` (a concrete subject) is kept in the stream. */
  isHistory(subject: string): boolean {
    return this.#trie.match(subject).length > 0;
  }

  /**
   * Whether every subject `pattern` can match is a history subject: here, when the pattern itself
   * falls under one of the configured patterns.
   */
  covers(pattern: string): boolean {
    return this.#patterns.some((p) => patternCovers(p, pattern));
  }

  /** Stores a message; resolves once JetStream has acknowledged it. */
  async store(subject: string, body: Uint8Array, headers: MsgHdrs): Promise<void> {
    try {
      await this.#js.publish(this.#map.toNats(subject), body, { headers });
    } catch (err) {
      throw new RequestError('bus_unavailable', `JetStream did not store it: ${(err as Error).message}`);
    }
  }

  async subscribeAcked(pattern: string, durableName: string, ackWaitMs: number, deliver: (msg: BusMessage, handle: AckHandle) => void): Promise<AckedSubscription> {
    const map = this.#map;
    const name = durableName;
    const config = {
      durable_name: name,
      filter_subject: map.toNats(pattern),
      ack_policy: AckPolicy.Explicit,
      ack_wait: ackWaitMs * 1_000_000,
      deliver_policy: DeliverPolicy.New,
      // A durable nobody has consumed for a history window is removed.
      inactive_threshold: this.#maxAgeSec * 1_000_000_000,
    };
    try {
      await this.#jsm.consumers.add(this.stream, config);
    } catch {
      // The name is scoped to principal and pattern (scopedDurableName): only ack_wait can differ.
      await this.#jsm.consumers.update(this.stream, name, { ack_wait: config.ack_wait });
    }
    const consumer = await this.#js.consumers.get(this.stream, name);
    // Short pull expiry: after stop(), the server stops routing to this node within 2 s.
    const messages = await consumer.consume({
      expires: 2000,
      callback: (m) => {
        const reply = m.headers?.get(REPLY_HEADER) || undefined;
        deliver(
          { subject: map.fromNats(m.subject), body: m.data, replyTo: reply ? map.fromNats(reply) : null, seq: m.seq, redelivered: m.info.deliveryCount - 1 },
          { ack: () => m.ack(), nak: () => m.nak() },
        );
      },
    });
    return { stop: () => void messages.stop() };
  }

  async replay(pattern: string, since: number, sink: ReplaySink): Promise<ReplayResult> {
    const map = this.#map;
    const info = await this.#jsm.streams.info(this.stream);
    const first = info.state.first_seq;
    const last = info.state.last_seq;
    const lost = info.state.messages > 0 ? since + 1 < first : since < last;
    if (lost) sink.lost(first);
    let lastSeq = since;
    if (since >= last || info.state.messages === 0) return { lost, firstSeq: first, lastSeq };
    const consumer = await this.#js.consumers.get(this.stream, { filter_subjects: map.prefix + pattern, deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: Math.max(since + 1, first) });
    // Read up to the sequence that was last when the replay began; newer ones arrive live.
    while (lastSeq < last) {
      const batch = await consumer.fetch({ max_messages: 256, expires: 1000 });
      let got = 0;
      for await (const m of batch) {
        got++;
        if (m.seq > last) break;
        const reply = m.headers?.get(REPLY_HEADER) || undefined;
        sink.deliver({ subject: map.fromNats(m.subject), body: m.data, replyTo: reply ? map.fromNats(reply) : null, seq: m.seq });
        lastSeq = m.seq;
        if (m.info.pending === 0) break;
      }
      if (got === 0 || (await consumer.info(true)).num_pending === 0) break;
    }
    await consumer.delete().catch(() => {});
    return { lost, firstSeq: first, lastSeq: Math.max(lastSeq, since) };
  }
}
