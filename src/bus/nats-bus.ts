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
import { MemoryBus } from './memory-bus.ts';
import { RequestError } from './bus.ts';
import type { Bus, BusHandler, BusMessage, BusSubscription, SubscribeOptions } from './bus.ts';
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

const NODE_HEADER = 'Wsb-Node';
const ORIGIN_HEADER = 'Wsb-Origin';

export class NatsBus implements Bus {
  readonly nodeId = randomBytes(8).toString('base64url');
  readonly nc: NatsConnection;
  readonly local = new MemoryBus();
  #prefix: string;
  #log: Logger;
  #interest = new Map<string, { sub: Subscription; count: number }>();
  #connected = true;
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
          const msg: BusMessage = {
            subject: m.subject.slice(this.#prefix.length),
            body: m.data,
            replyTo: m.reply ? (m.reply.startsWith(this.#prefix) ? m.reply.slice(this.#prefix.length) : m.reply) : null,
            origin: h?.get(ORIGIN_HEADER) || undefined,
          };
          if (queue !== undefined) {
            this.local.deliverToQueue(subject, queue, msg);
            return;
          }
          // Published here: already delivered to this node's subscribers.
          if (h?.get(NODE_HEADER) === this.nodeId) return;
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
    return h;
  }

  publish(msg: BusMessage): void {
    // Local subscribers at once; queue groups are NATS's to resolve while it is reachable.
    this.local.deliverLocal(msg, !this.#connected);
    if (!this.#connected) return; // at most once: other nodes miss what is published during an outage
    try {
      this.nc.publish(this.#prefix + msg.subject, msg.body, {
        headers: this.#headers(msg, true),
        ...(msg.replyTo ? { reply: this.#prefix + msg.replyTo } : {}),
      });
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
      const m = await this.nc.request(this.#prefix + subject, body, { timeout: timeoutMs, headers: this.#headers({ subject, body }, false) });
      return { subject: m.subject.startsWith(this.#prefix) ? m.subject.slice(this.#prefix.length) : m.subject, body: m.data, replyTo: m.reply ?? null };
    } catch (err) {
      const cause = (err as Error).cause;
      if (err instanceof NoRespondersError || cause instanceof NoRespondersError || (err instanceof NatsRequestError && err.isNoResponders())) {
        throw new RequestError('no_responders', `no subscribers on ${subject}`);
      }
      if (err instanceof TimeoutError || cause instanceof TimeoutError) throw new RequestError('timeout', `no reply on ${subject} within ${timeoutMs} ms`);
      throw new RequestError('bus_unavailable', `NATS: ${(err as Error).message}`);
    }
  }

  async close(): Promise<void> {
    await this.local.close();
    await this.nc.drain().catch(() => this.nc.close());
  }
}
