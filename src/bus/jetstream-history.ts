// History on NATS JetStream: the stream that keeps messages on HISTORY_SUBJECTS (made again when
// JetStream lost it, checked against this node's configuration), the live consumers that deliver
// them to this node's subscribers with their sequence (src/bus/history-live.ts), acknowledged
// subscriptions on durable consumers, and replay from a position. NatsBus mirrors interest and
// routes plain traffic; everything that needs JetStream lives here (nats.js keeps JetStream in
// its own package for the same reason).
import { createHash } from 'node:crypto';
import { jetstream, jetstreamManager, DiscardPolicy } from '@nats-io/jetstream';
import type { JetStreamClient, JetStreamManager, StreamConfig, StreamInfo } from '@nats-io/jetstream';
import type { NatsConnection, MsgHdrs } from '@nats-io/transport-node';
import { SubjectTrie } from './subject-trie.ts';
import { patternCovers } from '../protocol/subject.ts';
import { RequestError } from './bus.ts';
import type { AckHandle, AckedSubscription, AckedOptions, BusMessage, PublishAck, ReplayResult, ReplaySink, StreamPosition } from './bus.ts';
import { readStream } from './stream-reader.ts';
import { LiveConsumers } from './history-live.ts';
import { subscribeDurable } from './history-acked.ts';
import type { Logger } from '../observability/logger.ts';

/** JetStream API calls (stream info, consumers) fail after this long: an outage is an error within a second. */
export const JS_API_TIMEOUT_MS = 1000;
/** How long a publish waits for JetStream's acknowledgement. */
export const PUBLISH_ACK_TIMEOUT_MS = 5000;
/** The history stream's duplicate window: a publish id seen within it is stored once. */
export const DUPLICATE_WINDOW_MS = 120_000;

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

/** The part of the stream's configuration every node must agree on. */
export interface HistoryShape {
  subjects: string[];
  maxAgeSec: number;
  maxMsgs: number;
}

/** A short fingerprint of a history configuration, for logs and presence. */
export function historyFingerprint(shape: HistoryShape): string {
  return createHash('sha256').update(JSON.stringify([[...shape.subjects].sort(), shape.maxAgeSec, shape.maxMsgs])).digest('hex').slice(0, 12);
}

function shapeOf(config: StreamConfig, prefix: string): HistoryShape {
  return {
    subjects: (config.subjects ?? []).map((s) => (s.startsWith(prefix) ? s.slice(prefix.length) : s)),
    maxAgeSec: Math.round((config.max_age ?? 0) / 1_000_000_000),
    maxMsgs: config.max_msgs ?? -1,
  };
}

function sameShape(a: HistoryShape, b: HistoryShape): boolean {
  return historyFingerprint(a) === historyFingerprint(b);
}

export interface HistoryHealth {
  /** JetStream answered and the stream exists with this node's configuration. */
  ok: boolean;
  /** What is wrong, when not ok. */
  problem?: string;
  /** The stream's configuration differs from this node's (HISTORY_SUBJECTS, HISTORY_MAX_*). */
  mismatch: boolean;
}

export interface HistoryStats {
  /** Times this node found the stream missing and made it again. */
  streamRecreated: number;
  /** Times the stream's epoch changed under this node (made again by it or another node). */
  epochChanges: number;
  /** Messages delivered to acknowledged subscriptions again (redelivered ≥ 1). */
  redeliveries: number;
  /** Messages given back for redelivery (their session went, or they were on their way as it did). */
  givenBack: number;
  /** Publishes whose acknowledgement did not come in time: stored or not, unknown. */
  publishTimeouts: number;
  /** Publishes JetStream refused or could not take (not stored). */
  publishFailures: number;
  /** Acknowledged subscriptions ended because their durable went away. */
  durablesLost: number;
}

export class JetStreamHistory {
  readonly stream: string;
  readonly stats: HistoryStats = { streamRecreated: 0, epochChanges: 0, redeliveries: 0, givenBack: 0, publishTimeouts: 0, publishFailures: 0, durablesLost: 0 };
  /** JetStream consumers on the stream (all nodes: live, durable, replays) at the last check. */
  consumerCount = 0;
  #js: JetStreamClient;
  #jsm: JetStreamManager;
  #map: SubjectMapping;
  #patterns: string[];
  #trie = new SubjectTrie<string>();
  #maxAgeSec: number;
  /** The stream's duplicate window: 2 minutes, or the history window when that is shorter. */
  get #dupWindowSec(): number {
    return Math.min(DUPLICATE_WINDOW_MS / 1000, this.#maxAgeSec);
  }
  #config: StreamConfig;
  #shape: HistoryShape;
  #log: Logger;
  #nc: NatsConnection;
  #live: LiveConsumers | undefined;
  /** This node's acknowledged subscriptions (their durables go with the stream). */
  #acked = new Set<(reason: string) => void>();
  /** The stream's epoch and last sequence as last seen. */
  #epoch: string | undefined;
  #lastSeq = 0;
  #mismatch: string | undefined;
  /** Told when the stream became another one: subscribers must hear history_lost. */
  onEpochChange: (info: { epoch: string; previousLastSeq: number; firstSeq: number }) => void = () => {};

  private constructor(nc: NatsConnection, stream: string, js: JetStreamClient, jsm: JetStreamManager, map: SubjectMapping, opts: HistoryOptions, config: StreamConfig, log: Logger) {
    this.#nc = nc;
    this.stream = stream;
    this.#js = js;
    this.#jsm = jsm;
    this.#map = map;
    this.#patterns = opts.subjects;
    this.#maxAgeSec = opts.maxAgeSec;
    this.#config = config;
    this.#shape = { subjects: opts.subjects, maxAgeSec: opts.maxAgeSec, maxMsgs: opts.maxMsgs };
    this.#log = log;
    for (const p of opts.subjects) this.#trie.insert(p, p);
  }

  /** This node's history configuration's fingerprint. */
  get fingerprint(): string {
    return historyFingerprint(this.#shape);
  }

  /**
   * Makes the stream when it does not exist. When it exists with another configuration, it is
   * changed to this node's only when `othersAgreeWithStream()` says no live node uses the stream's
   * (the whole cluster was restarted with a new configuration); otherwise this node reports the
   * mismatch (logged at error, readiness fails) and leaves the stream as it is, so nodes never
   * overwrite each other's configuration. The window is trimmed from the oldest end only (max age,
   * max messages), so a gap is always visible as `since < first stored sequence - 1`.
   */
  static async create(nc: NatsConnection, stream: string, map: SubjectMapping, opts: HistoryOptions, log: Logger, othersUseStream: () => Promise<boolean>): Promise<JetStreamHistory> {
    const jsm = await jetstreamManager(nc, { timeout: JS_API_TIMEOUT_MS });
    const js = jetstream(nc, { timeout: JS_API_TIMEOUT_MS });
    const config: Partial<StreamConfig> & { name: string } = {
      name: stream,
      subjects: opts.subjects.map((p) => map.prefix + p),
      max_age: opts.maxAgeSec * 1_000_000_000,
      max_msgs: opts.maxMsgs,
      discard: DiscardPolicy.Old,
      // JetStream refuses a duplicate window longer than the stream's max age.
      duplicate_window: Math.min(DUPLICATE_WINDOW_MS, opts.maxAgeSec * 1000) * 1_000_000,
    };
    const h = new JetStreamHistory(nc, stream, js, jsm, map, opts, config as StreamConfig, log);
    let info: StreamInfo;
    try {
      info = await jsm.streams.info(stream);
    } catch (err) {
      if (!isNotFound(err)) throw err;
      info = await h.#make();
    }
    if (!sameShape(shapeOf(info.config, map.prefix), h.#shape)) {
      if (await othersUseStream()) {
        h.#reportMismatch(info.config);
      } else {
        log.warn({ stream, from: shapeOf(info.config, map.prefix), to: h.#shape }, 'history stream reconfigured to this node\'s HISTORY_SUBJECTS / HISTORY_MAX_* (no live node uses the old configuration)');
        info = await jsm.streams.update(stream, { ...info.config, ...config });
      }
    }
    h.#epoch = epochOf(info);
    h.#lastSeq = info.state.last_seq;
    return h;
  }

  async #make(): Promise<StreamInfo> {
    try {
      return await this.#jsm.streams.add(this.#config);
    } catch (err) {
      // Another node made it first.
      if (!/already in use|already exists/i.test((err as Error).message)) throw err;
      return this.#jsm.streams.info(this.stream);
    }
  }

  #reportMismatch(config: StreamConfig): void {
    const theirs = shapeOf(config, this.#map.prefix);
    const text = `history configuration differs from the stream ${this.stream}: this node has HISTORY_SUBJECTS=${this.#shape.subjects.join(',')} HISTORY_MAX_AGE_SEC=${this.#shape.maxAgeSec} HISTORY_MAX_MSGS=${this.#shape.maxMsgs}, the stream (other nodes) ${theirs.subjects.join(',')} / ${theirs.maxAgeSec} / ${theirs.maxMsgs}`;
    if (this.#mismatch !== text) this.#log.error({ stream: this.stream, node: this.#shape, stream_config: theirs }, `${text}: not ready until they agree (give every node the same settings)`);
    this.#mismatch = text;
  }

  /** Starts one live consumer per pattern, delivering to `deliverLocal` with the stream sequence. */
  async startLive(deliverLocal: (msg: BusMessage) => void): Promise<void> {
    const map = this.#map;
    this.#live = new LiveConsumers(this.#jsm, this.#js, this.stream, this.#patterns, {
      prefix: map.prefix,
      fromNats: (s) => map.fromNats(s),
      headersOf: (m) => {
        const reply = m.headers?.get(REPLY_HEADER) || undefined;
        return { replyTo: reply ? map.fromNats(reply) : null, origin: m.headers?.get(ORIGIN_HEADER) || undefined };
      },
    }, deliverLocal, this.#log);
    await this.#live.start();
  }

  /** Whether this node's history configuration differs from the stream's. */
  get mismatch(): boolean {
    return this.#mismatch !== undefined;
  }

  /** Acknowledged subscriptions on this node. */
  get ackedSubscriptions(): number {
    return this.#acked.size;
  }

  /** Live consumers of this node that are running. */
  get liveRunning(): number {
    return this.#live?.runningCount ?? 0;
  }

  /** Live consumers made again after theirs went away. */
  get liveRecreated(): number {
    return this.#live?.stats.recreated ?? 0;
  }

  /**
   * The periodic check (readiness, self-healing): the stream exists (else it is made again), is
   * the one the live consumers read (else they start over in the new epoch and subscribers are
   * told), and has this node's configuration (else: mismatch, logged at error once).
   */
  async check(): Promise<HistoryHealth> {
    let info: StreamInfo;
    try {
      info = await this.#jsm.streams.info(this.stream);
    } catch (err) {
      if (!isNotFound(err)) return { ok: false, mismatch: this.#mismatch !== undefined, problem: `JetStream did not answer: ${(err as Error).message}` };
      try {
        info = await this.#make();
      } catch (e) {
        return { ok: false, mismatch: false, problem: `history stream ${this.stream} is missing and could not be made: ${(e as Error).message}` };
      }
      this.stats.streamRecreated++;
      this.#log.warn({ stream: this.stream }, 'history stream was missing (JetStream lost its state?): made it again');
    }
    const epoch = epochOf(info);
    if (epoch !== this.#epoch) {
      const previousLastSeq = this.#lastSeq;
      this.#epoch = epoch;
      this.stats.epochChanges++;
      this.#log.warn({ stream: this.stream, epoch }, 'history stream is a new one (new epoch): live delivery starts over from its beginning; subscribers are told history_lost');
      await this.#live?.restartAll();
      // Durables belonged to the old stream: those subscriptions have ended.
      for (const end of [...this.#acked]) end('the history stream was made again (JetStream lost its state)');
      this.onEpochChange({ epoch, previousLastSeq, firstSeq: info.state.first_seq });
    } else {
      await this.#live?.heal();
    }
    this.#lastSeq = info.state.last_seq;
    this.consumerCount = info.state.consumer_count;
    if (!sameShape(shapeOf(info.config, this.#map.prefix), this.#shape)) {
      this.#reportMismatch(info.config);
      return { ok: false, mismatch: true, problem: this.#mismatch };
    }
    if (this.#mismatch !== undefined) {
      this.#log.info({ stream: this.stream }, 'history configuration agrees with the stream again');
      this.#mismatch = undefined;
    }
    if (this.#live && !this.#live.running) return { ok: false, mismatch: false, problem: 'a live history consumer is being made again' };
    return { ok: true, mismatch: false };
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

  /**
   * Stores a message; resolves once JetStream has acknowledged it, with its sequence. `msgId`
   * becomes its Nats-Msg-Id: JetStream stores a message once per id within the duplicate window
   * (DUPLICATE_WINDOW_MS) and answers a repeat as a duplicate. Rejects with 'bus_unavailable'
   * when it is known not to be stored (no stream took it, JetStream refused it) and 'unconfirmed'
   * when that is unknown (no acknowledgement within PUBLISH_ACK_TIMEOUT_MS, the connection went).
   */
  async store(subject: string, body: Uint8Array, headers: MsgHdrs, msgId?: string): Promise<PublishAck> {
    try {
      const ack = await this.#js.publish(this.#map.toNats(subject), body, { headers, timeout: PUBLISH_ACK_TIMEOUT_MS, ...(msgId !== undefined ? { msgID: msgId } : {}) });
      return { seq: ack.seq, duplicate: ack.duplicate || undefined };
    } catch (err) {
      const name = (err as Error)?.name;
      // Known: nobody took it (no stream for the subject), or JetStream answered with an error.
      if (name === 'JetStreamNotEnabled' || name === 'JetStreamApiError' || name === 'NoRespondersError') {
        this.stats.publishFailures++;
        throw new RequestError('bus_unavailable', `JetStream did not store it: ${(err as Error).message}`);
      }
      this.stats.publishTimeouts++;
      throw new RequestError('unconfirmed', `JetStream did not confirm within ${PUBLISH_ACK_TIMEOUT_MS} ms (${(err as Error).message}): it may have been stored${msgId !== undefined ? `; publishing again with the same id is safe (stored once within ${this.#dupWindowSec} s)` : ''}`);
    }
  }

  /**
   * Acknowledged delivery through the durable `durableName` (src/bus/history-acked.ts). When the
   * durable does not exist it is made: from `opts.since` (in `opts.epoch`) when the client gives
   * its position, so nothing after it is skipped even if the durable was lost (a JetStream reset,
   * its inactivity limit); else with what is stored from now on.
   */
  subscribeAcked(pattern: string, durableName: string, ackWaitMs: number, deliver: (msg: BusMessage, handle: AckHandle) => void, opts: AckedOptions = {}): Promise<AckedSubscription> {
    return subscribeDurable({ nc: this.#nc, jsm: this.#jsm, stream: this.stream, map: this.#map, maxAgeSec: this.#maxAgeSec, stats: this.stats, log: this.#log, active: this.#acked }, pattern, durableName, ackWaitMs, deliver, opts);
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

  stop(): void {
    this.#live?.stop();
  }
}

export function isNotFound(err: unknown): boolean {
  return /not found/i.test((err as Error)?.message ?? '');
}
