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
import type { JetStreamOptions } from '@nats-io/jetstream';
import { connectAtStartup, jetStreamOptions, jetStreamWhere } from './nats-connection.ts';
import type { NatsConnectionSettings, JetStreamSettings } from './nats-connection.ts';
import { JetStreamPlacement } from './jetstream-placement.ts';
import type { PlacementSettings } from './jetstream-placement.ts';
import { MemoryBus } from './memory-bus.ts';
import { JetStreamHistory, HISTORY_STREAM, REPLY_HEADER, ORIGIN_HEADER } from './jetstream-history.ts';
import type { HistoryOptions } from './jetstream-history.ts';
import { RequestError } from './bus.ts';
import type { AckHandle, AckedOptions, AckedSubscription, Bus, BusHandler, BusMessage, BusSubscription, PublishAck, ReplayResult, ReplaySink, StreamPosition, SubscribeOptions } from './bus.ts';
import type { Logger } from '../observability/logger.ts';
import { RAW_PREFIX, INBOX_PREFIX, scopedStateName } from '../security/subject-policy.ts';

export interface NatsBusOptions extends NatsConnectionSettings, JetStreamSettings, PlacementSettings {
  /** Prepended to every subject on NATS ('' maps subjects one to one). */
  prefix: string;
  name: string;
}

export type { HistoryOptions } from './jetstream-history.ts';
export { HISTORY_STREAM } from './jetstream-history.ts';

/** How long a publish with an id waits for NATS to confirm it (a PING round trip). */
const FLUSH_CONFIRM_MS = 1000;
const NODE_HEADER = 'Wsb-Node';
/** A reply that is an error (BusMessage.errorCode), such as handler_failed. */
const ERROR_HEADER = 'Wsb-Error';

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
  /** The NATS socket is corked until the end of this event-loop turn. */
  #corked = false;
  #history: JetStreamHistory | undefined;
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

  /**
   * nats.js writes its buffer to the socket once per microtask checkpoint, which under load is one
   * write syscall per WebSocket frame read (the profile of a two-node echo: a third of the CPU in
   * writeBuffer). Corking the socket until the event loop's check phase coalesces every publish of
   * one I/O phase into one writev, as ws frames to a session are (src/sessions/preframed.ts).
   * Reaches into nats.js 3.4 (`protocol.transport.socket`, a net.Socket); without it, a no-op.
   */
  #corkUntilTickEnd(): void {
    if (this.#corked) return;
    const socket = (this.nc as unknown as { protocol?: { transport?: { socket?: { cork?: () => void; uncork?: () => void } } } }).protocol?.transport?.socket;
    if (!socket || typeof socket.cork !== 'function' || typeof socket.uncork !== 'function') return;
    socket.cork();
    this.#corked = true;
    setImmediate(() => {
      this.#corked = false;
      socket.uncork!();
    });
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
    this.#corkUntilTickEnd();
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

  async publishAcked(msg: BusMessage, opts: { dedupKey?: string | undefined } = {}): Promise<PublishAck | void> {
    if (!this.#connected) {
      if (this.#isHistory(msg.subject)) throw new RequestError('bus_unavailable', `${msg.subject} keeps history and needs NATS, which is unreachable: not stored`);
      this.local.deliverLocal(msg, true);
      throw new RequestError('bus_unavailable', 'NATS is unreachable: delivered on this node only');
    }
    if (this.#isHistory(msg.subject)) {
      const h = this.#headers(msg, false);
      if (msg.replyTo) h.set(REPLY_HEADER, this.#toNats(msg.replyTo));
      return this.#history!.store(msg.subject, msg.body, h, opts.dedupKey);
    }
    this.publish(msg);
    // A PING round trip: the server has everything sent before it. Bounded: a frozen server
    // never answers, and then whether it got the message is unknown.
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        this.nc.flush(),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`no answer within ${FLUSH_CONFIRM_MS} ms`)), FLUSH_CONFIRM_MS);
        }),
      ]);
    } catch (err) {
      throw new RequestError('unconfirmed', `NATS did not confirm (${(err as Error).message}): the message may have been delivered`);
    } finally {
      clearTimeout(timer);
    }
  }

  subscribe(subject: string, handler: BusHandler, opts?: SubscribeOptions): BusSubscription {
    return this.local.subscribe(subject, handler, opts);
  }

  #isHistory(subject: string): boolean {
    return this.#history !== undefined && this.#history.isHistory(subject);
  }

  /**
   * Keeps messages on `opts.subjects` in this tenant's JetStream stream (src/bus/jetstream-history.ts).
   * `othersUseStream` says whether live nodes use the stream's present configuration (then a
   * different one here is a mismatch, not a change).
   */
  async enableHistory(opts: HistoryOptions, othersUseStream: () => Promise<boolean>): Promise<JetStreamHistory> {
    const map = { prefix: this.#prefix, toNats: (s: string) => this.#toNats(s), fromNats: (s: string) => this.#fromNats(s) };
    // In the configured JetStream domain, with the configured replicas, placement and publish-ack timeout.
    const where = { js: this.jsOptions(), storage: await this.placement.stream(), ...(this.#publishAckTimeoutMs ? { publishAckTimeoutMs: this.#publishAckTimeoutMs } : {}) };
    this.#history = await JetStreamHistory.create(this.nc, this.historyStream, map, { ...opts, ...where }, this.#log, othersUseStream);
    await this.#history.startLive((msg) => this.local.deliverLocal(msg, true));
    return this.#history;
  }

  /** The history stream's keeper, when HISTORY_SUBJECTS is set. */
  get history(): JetStreamHistory | undefined {
    return this.#history;
  }

  /** JetStream operations fail at once while NATS is unreachable (no waiting for a timeout). */
  #needJetStream(): JetStreamHistory {
    if (!this.#history) throw new RequestError('bus_unavailable', 'no history configured');
    if (!this.#connected) throw new RequestError('bus_unavailable', 'NATS is unreachable: history is not available');
    return this.#history;
  }

  async subscribeAcked(pattern: string, durableName: string, ackWaitMs: number, deliver: (msg: BusMessage, handle: AckHandle) => void, opts?: AckedOptions): Promise<AckedSubscription> {
    return this.#needJetStream().subscribeAcked(pattern, durableName, ackWaitMs, deliver, opts);
  }

  hasHistory(pattern: string): boolean {
    return this.#history?.covers(pattern) ?? false;
  }

  async replay(pattern: string, since: number, epoch: string | undefined, sink: ReplaySink): Promise<ReplayResult> {
    return this.#needJetStream().replay(pattern, since, epoch, sink);
  }

  async position(): Promise<StreamPosition> {
    return this.#needJetStream().position();
  }

  async close(): Promise<void> {
    this.#history?.stop();
    await this.local.close();
    await this.nc.drain().catch(() => this.nc.close());
  }
}
