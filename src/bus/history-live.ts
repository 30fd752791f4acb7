// The live side of history on one node: one consumer per history pattern, delivering what the
// stream stores to this node's subscribers with its sequence. Each consumer is this node's own
// (ephemeral, in memory, removed by the server 30 s after the node stops pulling), so when it goes
// away (a JetStream restart, a lost server, a long outage) it is made again from the sequence
// after the last one it delivered: nothing is skipped and nothing delivered twice. When the
// stream itself is another one (a new epoch), every consumer starts over from its beginning.
import { randomBytes } from 'node:crypto';
import { AckPolicy, DeliverPolicy } from '@nats-io/jetstream';
import type { ConsumerMessages, JetStreamClient, JetStreamManager } from '@nats-io/jetstream';
import type { BusMessage } from './bus.ts';
import type { Logger } from '../observability/logger.ts';

export interface LiveMapping {
  prefix: string;
  fromNats(subject: string): string;
  /** Turns a stored message's headers into reply_to and origin. */
  headersOf(m: { headers?: { get(k: string): string } | undefined }): { replyTo: string | null; origin: string | undefined };
}

interface Live {
  pattern: string;
  /** The last sequence delivered (0: none yet in this epoch). */
  lastSeq: number;
  messages: ConsumerMessages | undefined;
  name: string | undefined;
  /** A re-open is scheduled or running. */
  reopening: boolean;
  failures: number;
  /** Opened at least once in this epoch (else a re-open starts with what is new). */
  opened: boolean;
  /** Bumped by restartAll: opens and deliveries of an older generation are dropped. */
  gen: number;
}

export interface LiveStats {
  /** Consumers made again after theirs went away. */
  recreated: number;
}

/** Heartbeats a live consumer may miss in a row before it is made again (HEARTBEAT_MS each). */
const MISSED_HEARTBEATS = 2;
/** The idle heartbeat asked of a live consumer's pulls: a stall shows within two of them. */
const HEARTBEAT_MS = 2000;
/** How long a live consumer outlives this node's last pull (then the server removes it). */
const INACTIVE_NS = 30_000_000_000;

export class LiveConsumers {
  readonly stats: LiveStats = { recreated: 0 };
  #jsm: JetStreamManager;
  #js: JetStreamClient;
  #stream: string;
  #map: LiveMapping;
  #deliver: (msg: BusMessage) => void;
  #log: Logger;
  #live: Live[];
  #stopped = false;

  constructor(jsm: JetStreamManager, js: JetStreamClient, stream: string, patterns: string[], map: LiveMapping, deliver: (msg: BusMessage) => void, log: Logger) {
    this.#jsm = jsm;
    this.#js = js;
    this.#stream = stream;
    this.#map = map;
    this.#deliver = deliver;
    this.#log = log;
    this.#live = patterns.map((pattern) => ({ pattern, lastSeq: 0, messages: undefined, name: undefined, reopening: false, failures: 0, opened: false, gen: 0 }));
  }

  /**
   * Starts every consumer with what is stored from now on. One that cannot be made (a pattern the
   * stream does not hold: another node's configuration) is retried with backoff, and `running`
   * stays false meanwhile.
   */
  async start(): Promise<void> {
    for (const l of this.#live) await this.#open(l, 'new', l.gen).catch((err: unknown) => this.#lost(l, err));
  }

  /** How many consumers are running. */
  get runningCount(): number {
    return this.#live.filter((l) => l.messages !== undefined && !l.reopening).length;
  }

  /** Whether every consumer is running. */
  get running(): boolean {
    return this.#live.every((l) => l.messages !== undefined && !l.reopening);
  }

  /**
   * The stream is another one (new epoch): every consumer starts over from its first message. A
   * re-open still under way from before (another generation) is dropped when it completes.
   */
  async restartAll(): Promise<void> {
    for (const l of this.#live) {
      l.gen++;
      this.#close(l);
      l.lastSeq = 0;
      l.failures = 0;
      l.reopening = false;
      l.opened = true; // from the new stream's first message
    }
    for (const l of this.#live) await this.#open(l, 'all', l.gen).catch((err: unknown) => this.#lost(l, err));
  }

  /** Makes again, now, any consumer that is not running (the stream came back). */
  async heal(): Promise<void> {
    for (const l of this.#live) if (l.messages === undefined && !l.reopening) this.#lost(l, new Error('not running'));
  }

  #close(l: Live): void {
    const m = l.messages;
    l.messages = undefined;
    if (m) void m.close().catch(() => {});
    const name = l.name;
    l.name = undefined;
    if (name) void this.#jsm.consumers.delete(this.#stream, name).catch(() => {});
  }

  /** Opens a consumer for `l` in generation `gen`; one that completes in a later generation removes itself. */
  async #open(l: Live, from: 'new' | 'all' | 'after', gen: number): Promise<void> {
    const name = `wsb_live_${randomBytes(9).toString('base64url').replace(/[-_]/g, 'x')}`;
    const ci = await this.#jsm.consumers.add(this.#stream, {
      name,
      ack_policy: AckPolicy.None,
      filter_subject: this.#map.prefix + l.pattern,
      ...(from === 'new' ? { deliver_policy: DeliverPolicy.New } : from === 'all' ? { deliver_policy: DeliverPolicy.All } : { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: l.lastSeq + 1 }),
      inactive_threshold: INACTIVE_NS,
      mem_storage: true,
      num_replicas: 1,
    });
    if (this.#stopped || gen !== l.gen) {
      void this.#jsm.consumers.delete(this.#stream, name).catch(() => {});
      return;
    }
    // Starting at "new": everything after the stream's last sequence now is this consumer's, so a
    // consumer made again later starts right after it.
    if (from === 'new') l.lastSeq = Math.max(l.lastSeq, ci.delivered.stream_seq);
    const consumer = this.#js.consumers.getConsumerFromInfo(ci);
    const messages = await consumer.consume({
      // Gone (deleted, stream gone): stop, so it is made again here from the right sequence.
      abort_on_missing_resource: true,
      // Short pulls with frequent heartbeats: a stalled consumer shows within seconds.
      expires: 2 * HEARTBEAT_MS,
      idle_heartbeat: HEARTBEAT_MS,
      callback: (m) => {
        if (gen !== l.gen || m.seq <= l.lastSeq) return; // another generation's stream, or already delivered
        l.lastSeq = m.seq;
        const { replyTo, origin } = this.#map.headersOf(m);
        this.#deliver({ subject: this.#map.fromNats(m.subject), body: m.data, replyTo, origin, seq: m.seq });
      },
    });
    if (this.#stopped || gen !== l.gen) {
      void messages.close().catch(() => {});
      void this.#jsm.consumers.delete(this.#stream, name).catch(() => {});
      return;
    }
    this.#close(l);
    l.messages = messages;
    l.name = name;
    l.failures = 0;
    l.opened = true;
    void messages.closed().then((err) => {
      if (l.messages === messages && gen === l.gen && !this.#stopped) this.#lost(l, err ?? new Error('consumer closed'));
    });
    // Stalled: the server holding the consumer stopped answering (its heartbeats stopped) while
    // the connection stays up. nats.js would keep asking the same consumer; make a new one instead,
    // wherever JetStream places it, from the sequence after the last delivered.
    void (async () => {
      for await (const st of messages.status()) {
        if (l.messages !== messages || gen !== l.gen || this.#stopped) return;
        if (st.type === 'heartbeats_missed' && st.count >= MISSED_HEARTBEATS) {
          this.#lost(l, new Error(`${st.count} heartbeats missed: the consumer stalled`));
          return;
        }
      }
    })().catch(() => {});
  }

  /** A consumer went away: make it again after a short backoff, from the sequence after the last delivered. */
  #lost(l: Live, err: unknown): void {
    if (this.#stopped || l.reopening) return;
    this.#close(l);
    l.reopening = true;
    const gen = l.gen;
    const delay = Math.min(2000, 100 * 2 ** Math.min(l.failures++, 5));
    if (l.failures === 1) this.#log.warn({ pattern: l.pattern, err: (err as Error)?.message }, 'live history consumer lost: making it again');
    setTimeout(() => {
      if (this.#stopped || gen !== l.gen) return; // restarted meanwhile (new epoch)
      this.#open(l, l.opened ? 'after' : 'new', gen).then(() => {
        if (gen !== l.gen) return;
        l.reopening = false;
        this.stats.recreated++;
        this.#log.info({ pattern: l.pattern, from: l.lastSeq + 1 }, 'live history consumer made again');
      }, (e: unknown) => {
        if (gen !== l.gen) return;
        l.reopening = false;
        this.#lost(l, e);
      });
    }, delay).unref();
  }

  stop(): void {
    this.#stopped = true;
    for (const l of this.#live) this.#close(l);
  }
}
