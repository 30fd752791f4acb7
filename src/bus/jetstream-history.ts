// History on NATS JetStream: the stream that keeps messages on HISTORY_SUBJECTS, the live
// consumers that deliver them to this node's subscribers with their sequence, acknowledged
// subscriptions on durable consumers, and replay from a position. NatsBus mirrors interest and
// routes plain traffic; everything that needs JetStream lives here (nats.js keeps JetStream in
// its own package for the same reason).
import { createHash } from 'node:crypto';
import { jetstream, jetstreamManager, AckPolicy, DeliverPolicy, DiscardPolicy } from '@nats-io/jetstream';
import type { JetStreamClient, JetStreamManager, StreamInfo } from '@nats-io/jetstream';
import type { NatsConnection, MsgHdrs } from '@nats-io/transport-node';
import { SubjectTrie } from './subject-trie.ts';
import { patternCovers } from '../protocol/subject.ts';
import { RequestError } from './bus.ts';
import type { AckHandle, AckedSubscription, BusMessage, ReplayResult, ReplaySink, StreamPosition } from './bus.ts';
import { readStream } from './stream-reader.ts';

/** JetStream API calls (stream info, consumers) fail after this long: an outage is an error within a second. */
export const JS_API_TIMEOUT_MS = 1000;
/** How long a publish waits for JetStream's acknowledgement. */
export const PUBLISH_ACK_TIMEOUT_MS = 5000;

/**
 * The epoch of a stream: derived from its creation time, so every node computes the same one, and
 * a stream made again (a JetStream reset, a fresh store) has another.
 */
export function epochOf(info: StreamInfo): string {
  return createHash('sha256').update(`${info.config.name}\0${info.created}`).digest('base64url').slice(0, 12);
}

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
    const jsm = await jetstreamManager(nc, { timeout: JS_API_TIMEOUT_MS });
    const js = jetstream(nc, { timeout: JS_API_TIMEOUT_MS });
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
      await this.#js.publish(this.#map.toNats(subject), body, { headers, timeout: PUBLISH_ACK_TIMEOUT_MS });
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
    } catch (err) {
      // The name is scoped to principal and pattern (scopedDurableName): only ack_wait can differ.
      if (!/already (exists|in use)/i.test((err as Error).message)) throw err;
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

  /** The stream's last sequence and epoch. */
  async position(): Promise<StreamPosition> {
    const info = await this.#jsm.streams.info(this.stream);
    return { seq: info.state.last_seq, epoch: epochOf(info) };
  }

  /**
   * Sends every stored message matching `pattern` after `since` up to the stream's last sequence
   * when the replay began, in order. When `since` belongs to another stream (its epoch is not
   * this one's, or it is past the last sequence this stream ever had), `sink.lost(…, 'epoch')`
   * and everything stored; when messages after `since` left the window, `sink.lost(…, 'window')`
   * and what is still stored. Fails (never stops short silently) when JetStream does not deliver.
   */
  async replay(pattern: string, since: number, epoch: string | undefined, sink: ReplaySink): Promise<ReplayResult> {
    const map = this.#map;
    const info = await this.#jsm.streams.info(this.stream);
    const first = info.state.first_seq;
    const last = info.state.last_seq;
    const position = { seq: last, epoch: epochOf(info) };
    let lost: 'window' | 'epoch' | undefined;
    let from: number;
    if ((epoch !== undefined && epoch !== position.epoch) || since > last) {
      lost = 'epoch';
      from = first;
    } else {
      if (info.state.messages > 0 ? since + 1 < first : since < last) lost = 'window';
      from = Math.max(since + 1, first);
    }
    if (lost) sink.lost(first, lost, position);
    let lastSeq = lost === 'epoch' ? from - 1 : since;
    if (info.state.messages > 0 && from <= last) {
      await readStream(this.#jsm, this.#js, this.stream, { filter: map.prefix + pattern, startSeq: from, upTo: last }, (m) => {
        const reply = m.headers?.get(REPLY_HEADER) || undefined;
        sink.deliver({ subject: map.fromNats(m.subject), body: m.data, replyTo: reply ? map.fromNats(reply) : null, seq: m.seq });
        lastSeq = m.seq;
      });
    }
    return { lost: lost !== undefined, firstSeq: first, lastSeq, position };
  }
}
