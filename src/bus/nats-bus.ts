// The bus across nodes: NATS carries messages between gateways (and to and from components in a
// wasmCloud lattice), while each node keeps a MemoryBus for its own subscribers. Local delivery
// never waits for NATS, so a NATS outage leaves same-node traffic working; what needs another node
// (or a remote responder) fails fast with bus_unavailable / no_responders instead of hanging.
//
// Every local (subject, queue) interest is mirrored as one NATS subscription. A message this node
// publishes is delivered locally at once and sent to NATS with the node's id in a header; when it
// comes back from NATS it is skipped, except for queue groups, which NATS alone resolves so that
// each message reaches exactly one member in the whole cluster.
import { readFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { connect, headers, credsAuthenticator, nkeyAuthenticator, RequestError as NatsRequestError, NoRespondersError, TimeoutError } from '@nats-io/transport-node';
import type { NatsConnection, Subscription, MsgHdrs, ConnectionOptions } from '@nats-io/transport-node';
import { jetstream, jetstreamManager, AckPolicy, DeliverPolicy, DiscardPolicy } from '@nats-io/jetstream';
import type { JetStreamClient, JetStreamManager } from '@nats-io/jetstream';
import { MemoryBus } from './memory-bus.ts';
import { SubjectTrie } from './subject-trie.ts';
import { patternCovers } from '../protocol/subject.ts';
import { RequestError, replyError } from './bus.ts';
import type { AckHandle, AckedSubscription, Bus, BusHandler, BusMessage, BusSubscription, ReplayResult, ReplaySink, SubscribeOptions } from './bus.ts';
import type { Logger } from '../observability/logger.ts';

export interface NatsBusOptions {
  servers: string[];
  /** Prepended to every subject on NATS ('' maps subjects one to one). */
  prefix: string;
  user?: string | undefined;
  pass?: string | undefined;
  token?: string | undefined;
  nkeySeedFile?: string | undefined;
  credsFile?: string | undefined;
  tlsCaFile?: string | undefined;
  name: string;
}

export interface HistoryOptions {
  subjects: string[];
  maxAgeSec: number;
  maxMsgs: number;
}

export const HISTORY_STREAM = 'WSBRIDGE_HISTORY';
/** A NATS subject outside NATS_PREFIX (a plain NATS client's inbox), as a wsbridge subject. */
const RAW_PREFIX = '_WSB.RAW.';
const NODE_HEADER = 'Wsb-Node';
const REPLY_HEADER = 'Wsb-Reply';
const ORIGIN_HEADER = 'Wsb-Origin';
/** A reply that reports a failure (BusMessage.errorCode) instead of an answer. */
const ERROR_HEADER = 'Wsb-Error';

export class NatsBus implements Bus {
  readonly nodeId = randomBytes(8).toString('base64url');
  readonly nc: NatsConnection;
  readonly local = new MemoryBus();
  #prefix: string;
  #log: Logger;
  #interest = new Map<string, { sub: Subscription; count: number }>();
  #connected = true;
  #history: { js: JetStreamClient; jsm: JetStreamManager; patterns: string[]; trie: SubjectTrie<string>; maxAgeSec: number } | undefined;
  onStatus: (connected: boolean) => void = () => {};

  private constructor(nc: NatsConnection, opts: NatsBusOptions, log: Logger) {
    this.nc = nc;
    this.#prefix = opts.prefix;
    this.#log = log;
    this.local.onInterest = (subject, queue, delta) => this.#interest$(subject, queue, delta);
    void this.#watch();
  }

  static async connect(opts: NatsBusOptions, log: Logger): Promise<NatsBus> {
    const o: ConnectionOptions = {
      servers: opts.servers,
      name: opts.name,
      maxReconnectAttempts: -1,
      reconnectTimeWait: 1000,
      waitOnFirstConnect: false,
      // Inboxes under the prefix too, so replies map back like every other subject.
      inboxPrefix: `${opts.prefix}_INBOX`,
    };
    if (opts.user !== undefined) Object.assign(o, { user: opts.user, pass: opts.pass });
    if (opts.token !== undefined) o.token = opts.token;
    if (opts.credsFile) o.authenticator = credsAuthenticator(readFileSync(opts.credsFile));
    else if (opts.nkeySeedFile) o.authenticator = nkeyAuthenticator(new TextEncoder().encode(readFileSync(opts.nkeySeedFile, 'utf8').trim()));
    if (opts.tlsCaFile) o.tls = { caFile: opts.tlsCaFile };
    const nc = await connect(o);
    return new NatsBus(nc, opts, log);
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
      if (s.type === 'disconnect' && this.#connected) {
        this.#connected = false;
        this.#log.warn('NATS disconnected: serving local traffic only');
        this.onStatus(false);
      } else if (s.type === 'reconnect' && !this.#connected) {
        this.#connected = true;
        this.#log.info('NATS reconnected');
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
          // Server status messages (503 "no responders" for a publish whose reply subject had
          // no interest) are protocol, not messages: never deliver them to anyone.
          if (h && h.code !== 0) return;
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

  publish(msg: BusMessage): void {
    if (this.#isHistory(msg.subject)) {
      // Stored by JetStream first; every node (this one too) delivers it from its stream
      // consumer, so every subscriber sees the same sequence number.
      if (!this.#connected) throw new RequestError('bus_unavailable', `${msg.subject} keeps history and needs NATS, which is unreachable`);
      // No NATS reply subject: JetStream would send its publish ack there. reply_to rides in a header.
      const h = this.#headers(msg, false);
      if (msg.replyTo) h.set(REPLY_HEADER, this.#toNats(msg.replyTo));
      this.nc.publish(this.#toNats(msg.subject), msg.body, { headers: h });
      return;
    }
    // Local subscribers at once; queue groups are NATS's to resolve while it is reachable.
    this.local.deliverLocal(msg, !this.#connected);
    if (!this.#connected) return; // at most once: other nodes miss what is published during an outage
    try {
      this.nc.publish(this.#toNats(msg.subject), msg.body, {
        headers: this.#headers(msg, true),
        ...(msg.replyTo ? { reply: this.#toNats(msg.replyTo) } : {}),
      });
    } catch (err) {
      throw new RequestError('bus_unavailable', `NATS: ${(err as Error).message}`);
    }
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
        await this.#history!.js.publish(this.#toNats(msg.subject), msg.body, { headers: h });
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

  async request(subject: string, body: Uint8Array, timeoutMs: number): Promise<BusMessage> {
    if (!this.#connected) return this.local.request(subject, body, timeoutMs);
    try {
      // Not stamped: local responders receive it through NATS like everyone else.
      const m = await this.nc.request(this.#toNats(subject), body, { timeout: timeoutMs, headers: this.#headers({ subject, body }, false) });
      const failed = m.headers?.get(ERROR_HEADER);
      if (failed) throw replyError(subject, failed);
      return { subject: this.#fromNats(m.subject), body: m.data, replyTo: m.reply ? this.#fromNats(m.reply) : null };
    } catch (err) {
      if (err instanceof RequestError) throw err;
      const cause = (err as Error).cause;
      if (err instanceof NoRespondersError || cause instanceof NoRespondersError || (err instanceof NatsRequestError && err.isNoResponders())) {
        throw new RequestError('no_responders', `no subscribers on ${subject}`);
      }
      if (err instanceof TimeoutError || cause instanceof TimeoutError) throw new RequestError('timeout', `no reply on ${subject} within ${timeoutMs} ms`);
      throw new RequestError('bus_unavailable', `NATS: ${(err as Error).message}`);
    }
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
    const jsm = await jetstreamManager(this.nc);
    const js = jetstream(this.nc);
    const config = {
      name: HISTORY_STREAM,
      subjects: opts.subjects.map((p) => this.#prefix + p),
      max_age: opts.maxAgeSec * 1_000_000_000,
      max_msgs: opts.maxMsgs,
      discard: DiscardPolicy.Old,
    };
    try {
      await jsm.streams.add(config);
    } catch {
      await jsm.streams.update(HISTORY_STREAM, config);
    }
    const trie = new SubjectTrie<string>();
    for (const p of opts.subjects) trie.insert(p, p);
    this.#history = { js, jsm, patterns: opts.subjects, trie, maxAgeSec: opts.maxAgeSec };
    for (const p of opts.subjects) {
      const consumer = await js.consumers.get(HISTORY_STREAM, { filter_subjects: this.#prefix + p, deliver_policy: DeliverPolicy.New });
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

  async subscribeAcked(pattern: string, durable: string, ackWaitMs: number, deliver: (msg: BusMessage, handle: AckHandle) => void): Promise<AckedSubscription> {
    const h = this.#history;
    if (!h) throw new RequestError('bus_unavailable', 'no history configured');
    const name = `wsb_${durable}`;
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
      await h.jsm.consumers.add(HISTORY_STREAM, config);
    } catch {
      await h.jsm.consumers.update(HISTORY_STREAM, name, { ack_wait: config.ack_wait, filter_subject: config.filter_subject });
    }
    const consumer = await h.js.consumers.get(HISTORY_STREAM, name);
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
    const info = await h.jsm.streams.info(HISTORY_STREAM);
    const first = info.state.first_seq;
    const last = info.state.last_seq;
    const lost = info.state.messages > 0 ? since + 1 < first : since < last;
    if (lost) sink.lost(first);
    let lastSeq = since;
    if (since >= last || info.state.messages === 0) return { lost, firstSeq: first, lastSeq };
    const consumer = await h.js.consumers.get(HISTORY_STREAM, { filter_subjects: this.#prefix + pattern, deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: Math.max(since + 1, first) });
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
