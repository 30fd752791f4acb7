// The bus across nodes: NATS carries messages between gateways (and to and from components in a
// wasmCloud lattice), while each node keeps a MemoryBus for its own subscribers. Local delivery
// never waits for NATS, so a NATS outage leaves same-node traffic working; what needs another node
// (or a remote responder) fails fast with bus_unavailable / no_responders instead of hanging.
//
// Every local (subject, queue) interest is mirrored as one NATS subscription. A message this node
// publishes is delivered locally at once and sent to NATS with the node's id in a header; when it
// comes back from NATS it is skipped, except for queue groups, which NATS alone resolves so that
// each message reaches exactly one member in the whole cluster.
import { randomBytes } from 'node:crypto';
import { headers } from '@nats-io/transport-node';
import type { NatsConnection, Subscription, MsgHdrs } from '@nats-io/transport-node';
import { jetstream, jetstreamManager, AckPolicy, DeliverPolicy, DiscardPolicy } from '@nats-io/jetstream';
import type { JetStreamClient, JetStreamManager, JetStreamOptions } from '@nats-io/jetstream';
import { connectAtStartup, jetStreamOptions, jetStreamWhere } from './nats-connection.ts';
import type { NatsConnectionSettings, JetStreamSettings } from './nats-connection.ts';
import { JetStreamPlacement } from './jetstream-placement.ts';
import type { PlacementSettings } from './jetstream-placement.ts';
import { MemoryBus } from './memory-bus.ts';
import { SubjectTrie } from './subject-trie.ts';
import { patternCovers } from '../protocol/subject.ts';
import { RequestError } from './bus.ts';
import type { AckHandle, AckedSubscription, Bus, BusHandler, BusMessage, BusSubscription, ReplayResult, ReplaySink, SubscribeOptions } from './bus.ts';
import type { Logger } from '../observability/logger.ts';
import { RAW_PREFIX, INBOX_PREFIX, scopedStateName } from '../security/subject-policy.ts';

export interface NatsBusOptions extends NatsConnectionSettings, JetStreamSettings, PlacementSettings {
  /** Prepended to every subject on NATS ('' maps subjects one to one). */
  prefix: string;
  name: string;
}

export interface HistoryOptions {
  subjects: string[];
  maxAgeSec: number;
  maxMsgs: number;
}

/** The history stream's name with an empty NATS_PREFIX; other prefixes get their own stream. */
export const HISTORY_STREAM = 'WSBRIDGE_HISTORY';
const NODE_HEADER = 'Wsb-Node';
/** A reply that is an error (BusMessage.errorCode), such as handler_failed. */
const ERROR_HEADER = 'Wsb-Error';
const REPLY_HEADER = 'Wsb-Reply';
const ORIGIN_HEADER = 'Wsb-Origin';

export class NatsBus implements Bus {
  readonly nodeId = randomBytes(8).toString('base64url');
  readonly nc: NatsConnection;
  readonly local = new MemoryBus();
  /** NATS_PREFIX: the wall around this tenant's subjects and state. */
  readonly prefix: string;
  /** This tenant's history stream. */
  readonly historyStream: string;
  #prefix: string;
  #log: Logger;
  #interest = new Map<string, { sub: Subscription; count: number }>();
  #connected = true;
  #history: { js: JetStreamClient; jsm: JetStreamManager; patterns: string[]; trie: SubjectTrie<string>; maxAgeSec: number } | undefined;
  #jetStream: JetStreamSettings;
  #publishAckTimeoutMs: number | undefined;
  /** Replicas and placement of the history stream and the presence bucket. */
  readonly placement: JetStreamPlacement;
  onStatus: (connected: boolean) => void = () => {};

  private constructor(nc: NatsConnection, opts: NatsBusOptions, log: Logger) {
    this.nc = nc;
    this.#prefix = opts.prefix;
    this.prefix = opts.prefix;
    this.historyStream = scopedStateName(HISTORY_STREAM, opts.prefix);
    this.#log = log;
    this.#jetStream = { jsDomain: opts.jsDomain, jsApiPrefix: opts.jsApiPrefix };
    this.#publishAckTimeoutMs = opts.publishAckTimeoutMs;
    this.placement = new JetStreamPlacement(nc, () => this.jsOptions(), opts, `${this.historyStream}_PROBE_${this.nodeId.replace(/[^A-Za-z0-9]/g, '')}`, jetStreamWhere(opts), log);
    this.local.onInterest = (subject, queue, delta) => this.#interest$(subject, queue, delta);
    void this.#watch();
  }

  /** Connects (bounded, logged: see nats-connection.ts); rejects with NatsStartupError. */
  static async connect(opts: NatsBusOptions, log: Logger): Promise<NatsBus> {
    const nc = await connectAtStartup(opts, opts.name, `${opts.prefix}_INBOX`, log);
    return new NatsBus(nc, opts, log);
  }

  /** Options for every JetStream client and manager (NATS_JS_DOMAIN / NATS_JS_API_PREFIX). */
  jsOptions(): JetStreamOptions {
    return jetStreamOptions(this.#jetStream);
  }

  /** The NATS server this node is connected to (host:port), or the last one while disconnected. */
  get server(): string {
    return this.nc.getServer();
  }

  /** NATS subject → wsbridge subject: strip the prefix, or mark subjects outside it as raw. */
  #fromNats(subject: string): string {
    if (this.#prefix === '') return subject;
    return subject.startsWith(this.#prefix) ? subject.slice(this.#prefix.length) : RAW_PREFIX + subject;
  }

  /** wsbridge subject → NATS subject. */
  #toNats(subject: string): string {
    return subject.startsWith(RAW_PREFIX) ? subject.slice(RAW_PREFIX.length) : this.#prefix + subject;
  }

  get connected(): boolean {
    return this.#connected;
  }

  async #watch(): Promise<void> {
    for await (const s of this.nc.status()) {
      if (s.type === 'staleConnection') {
        // Pings unanswered (NATS_PING_INTERVAL_SEC × NATS_MAX_PINGS_OUT): a frozen or
        // partitioned server. nats.js drops the connection and dials the next server.
        this.#log.warn({ server: this.nc.getServer() }, 'NATS server stopped answering pings: connection stale, dialling the next server');
      }
      if ((s.type === 'disconnect' || s.type === 'staleConnection') && this.#connected) {
        this.#connected = false;
        this.#log.warn('NATS disconnected: serving local traffic only');
        this.onStatus(false);
      } else if (s.type === 'reconnect' && !this.#connected) {
        this.#connected = true;
        this.#log.info({ server: this.nc.getServer() }, 'NATS reconnected');
        this.onStatus(true);
      }
    }
  }

  #interest$(subject: string, queue: string | undefined, delta: 1 | -1): void {
    const key = queue === undefined ? subject : `${subject}\0${queue}`;
    const entry = this.#interest.get(key);
    if (delta === 1) {
      if (entry) {
        entry.count++;
        return;
      }
      const sub = this.nc.subscribe(this.#prefix + subject, {
        ...(queue !== undefined ? { queue } : {}),
        callback: (err, m) => {
          if (err) {
            this.#log.warn({ err: err.message, subject }, 'NATS subscription error');
            return;
          }
          const h = m.headers;
          // Server status messages are protocol, not messages. A 503 "no responders" on one of
          // this node's request inboxes answers that request; any other goes to nobody.
          if (h && h.code !== 0) {
            const inbox = this.#fromNats(m.subject);
            if (h.code === 503 && inbox.startsWith(INBOX_PREFIX)) this.local.deliverToPattern(subject, { subject: inbox, body: m.data, replyTo: null, errorCode: 'no_responders' });
            return;
          }
          const msg: BusMessage = {
            subject: this.#fromNats(m.subject),
            body: m.data,
            replyTo: m.reply ? this.#fromNats(m.reply) : null,
            origin: h?.get(ORIGIN_HEADER) || undefined,
            errorCode: h?.get(ERROR_HEADER) || undefined,
          };
          if (queue !== undefined) {
            this.local.deliverToQueue(subject, queue, msg);
            return;
          }
          // Published here: already delivered to this node's subscribers.
          if (h?.get(NODE_HEADER) === this.nodeId) return;
          // History subjects reach subscribers through the node's stream consumer, with their sequence.
          if (this.#isHistory(msg.subject)) return;
          // One NATS delivery per matching NATS subscription: deliver only to the local
          // subscribers of exactly this pattern, so overlapping patterns do not double up.
          this.local.deliverToPattern(subject, msg);
        },
      });
      this.#interest.set(key, { sub, count: 1 });
      return;
    }
    if (!entry) return;
    if (--entry.count === 0) {
      entry.sub.unsubscribe();
      this.#interest.delete(key);
    }
  }

  #headers(msg: BusMessage, stamp: boolean): MsgHdrs {
    const h = headers();
    if (stamp) h.set(NODE_HEADER, this.nodeId);
    if (msg.origin) h.set(ORIGIN_HEADER, msg.origin);
    if (msg.errorCode) h.set(ERROR_HEADER, msg.errorCode);
    return h;
  }

  publish(msg: BusMessage): number | undefined {
    if (this.#isHistory(msg.subject)) {
      // Stored by JetStream first; every node (this one too) delivers it from its stream
      // consumer, so every subscriber sees the same sequence number.
      if (!this.#connected) throw new RequestError('bus_unavailable', `${msg.subject} keeps history and needs NATS, which is unreachable`);
      // No NATS reply subject: JetStream would send its publish ack there. reply_to rides in a header.
      const h = this.#headers(msg, false);
      if (msg.replyTo) h.set(REPLY_HEADER, this.#toNats(msg.replyTo));
      this.nc.publish(this.#toNats(msg.subject), msg.body, { headers: h });
      return undefined;
    }
    // Local subscribers at once; queue groups are NATS's to resolve while it is reachable.
    const local = this.local.deliverLocal(msg, !this.#connected);
    if (!this.#connected) return local; // at most once: other nodes miss what is published during an outage
    try {
      this.nc.publish(this.#toNats(msg.subject), msg.body, {
        headers: this.#headers(msg, true),
        ...(msg.replyTo ? { reply: this.#toNats(msg.replyTo) } : {}),
      });
    } catch (err) {
      throw new RequestError('bus_unavailable', `NATS: ${(err as Error).message}`);
    }
    return undefined;
  }

  async publishAcked(msg: BusMessage): Promise<void> {
    if (!this.#connected) {
      if (this.#isHistory(msg.subject)) throw new RequestError('bus_unavailable', `${msg.subject} keeps history and needs NATS, which is unreachable`);
      this.local.deliverLocal(msg, true);
      throw new RequestError('bus_unavailable', 'NATS is unreachable: delivered on this node only');
    }
    if (this.#isHistory(msg.subject)) {
      const h = this.#headers(msg, false);
      if (msg.replyTo) h.set(REPLY_HEADER, this.#toNats(msg.replyTo));
      try {
        await this.#history!.js.publish(this.#toNats(msg.subject), msg.body, { headers: h, ...(this.#publishAckTimeoutMs ? { timeout: this.#publishAckTimeoutMs } : {}) });
      } catch (err) {
        throw new RequestError('bus_unavailable', `JetStream did not store it: ${(err as Error).message}`);
      }
      return;
    }
    this.publish(msg);
    try {
      await this.nc.flush();
    } catch (err) {
      throw new RequestError('bus_unavailable', `NATS: ${(err as Error).message}`);
    }
  }

  subscribe(subject: string, handler: BusHandler, opts?: SubscribeOptions): BusSubscription {
    return this.local.subscribe(subject, handler, opts);
  }

  #isHistory(subject: string): boolean {
    return this.#history !== undefined && this.#history.trie.match(subject).length > 0;
  }

  /**
   * Keeps messages on `subjects` in a JetStream stream (created or updated here) and delivers
   * them to this node's subscribers from an ordered consumer, with their stream sequence. The
   * window is trimmed from the oldest end only (max age, max messages), so a gap is always
   * visible as `since < first stored sequence - 1`.
   */
  async enableHistory(opts: HistoryOptions): Promise<void> {
    const jsm = await jetstreamManager(this.nc, this.jsOptions());
    const js = jetstream(this.nc, this.jsOptions());
    const config = {
      name: this.historyStream,
      subjects: opts.subjects.map((p) => this.#prefix + p),
      max_age: opts.maxAgeSec * 1_000_000_000,
      max_msgs: opts.maxMsgs,
      discard: DiscardPolicy.Old,
      ...(await this.placement.stream()),
    };
    try {
      await jsm.streams.add(config);
    } catch {
      await jsm.streams.update(this.historyStream, config);
    }
    const trie = new SubjectTrie<string>();
    for (const p of opts.subjects) trie.insert(p, p);
    this.#history = { js, jsm, patterns: opts.subjects, trie, maxAgeSec: opts.maxAgeSec };
    for (const p of opts.subjects) {
      const consumer = await js.consumers.get(this.historyStream, { filter_subjects: this.#prefix + p, deliver_policy: DeliverPolicy.New });
      await consumer.consume({
        callback: (m) => {
          const reply = m.headers?.get(REPLY_HEADER) || undefined;
          this.local.deliverLocal({
            subject: this.#fromNats(m.subject),
            body: m.data,
            replyTo: reply ? this.#fromNats(reply) : null,
            origin: m.headers?.get(ORIGIN_HEADER) || undefined,
            seq: m.seq,
          }, true);
        },
      });
    }
  }

  async subscribeAcked(pattern: string, durableName: string, ackWaitMs: number, deliver: (msg: BusMessage, handle: AckHandle) => void): Promise<AckedSubscription> {
    const h = this.#history;
    if (!h) throw new RequestError('bus_unavailable', 'no history configured');
    const name = durableName;
    const config = {
      durable_name: name,
      filter_subject: this.#toNats(pattern),
      ack_policy: AckPolicy.Explicit,
      ack_wait: ackWaitMs * 1_000_000,
      deliver_policy: DeliverPolicy.New,
      // A durable nobody has consumed for a history window is removed.
      inactive_threshold: h.maxAgeSec * 1_000_000_000,
    };
    try {
      await h.jsm.consumers.add(this.historyStream, config);
    } catch {
      // The name is scoped to principal and pattern (scopedDurableName): only ack_wait can differ.
      await h.jsm.consumers.update(this.historyStream, name, { ack_wait: config.ack_wait });
    }
    const consumer = await h.js.consumers.get(this.historyStream, name);
    // Short pull expiry: after stop(), the server stops routing to this node within 2 s.
    const messages = await consumer.consume({
      expires: 2000,
      callback: (m) => {
        const reply = m.headers?.get(REPLY_HEADER) || undefined;
        deliver(
          { subject: this.#fromNats(m.subject), body: m.data, replyTo: reply ? this.#fromNats(reply) : null, seq: m.seq, redelivered: m.info.deliveryCount - 1 },
          { ack: () => m.ack(), nak: () => m.nak() },
        );
      },
    });
    return { stop: () => void messages.stop() };
  }

  hasHistory(pattern: string): boolean {
    // Covered when every subject the pattern can match is a history subject: here, when the
    // pattern itself falls under one of the configured patterns.
    const h = this.#history;
    if (!h) return false;
    return h.patterns.some((p) => patternCovers(p, pattern));
  }

  async replay(pattern: string, since: number, sink: ReplaySink): Promise<ReplayResult> {
    const h = this.#history;
    if (!h) throw new RequestError('bus_unavailable', 'no history configured');
    const info = await h.jsm.streams.info(this.historyStream);
    const first = info.state.first_seq;
    const last = info.state.last_seq;
    const lost = info.state.messages > 0 ? since + 1 < first : since < last;
    if (lost) sink.lost(first);
    let lastSeq = since;
    if (since >= last || info.state.messages === 0) return { lost, firstSeq: first, lastSeq };
    const consumer = await h.js.consumers.get(this.historyStream, { filter_subjects: this.#prefix + pattern, deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: Math.max(since + 1, first) });
    // Read up to the sequence that was last when the replay began; newer ones arrive live.
    while (lastSeq < last) {
      const batch = await consumer.fetch({ max_messages: 256, expires: 1000 });
      let got = 0;
      for await (const m of batch) {
        got++;
        if (m.seq > last) break;
        const reply = m.headers?.get(REPLY_HEADER) || undefined;
        sink.deliver({ subject: this.#fromNats(m.subject), body: m.data, replyTo: reply ? this.#fromNats(reply) : null, seq: m.seq });
        lastSeq = m.seq;
        if (m.info.pending === 0) break;
      }
      if (got === 0 || (await consumer.info(true)).num_pending === 0) break;
    }
    await consumer.delete().catch(() => {});
    return { lost, firstSeq: first, lastSeq: Math.max(lastSeq, since) };
  }

  async close(): Promise<void> {
    await this.local.close();
    await this.nc.drain().catch(() => this.nc.close());
  }
}
