// A gateway node: the bus, the server-mode sessions, the client-mode links, and the linked
// handlers and consumers, behind the wasmcloud:messaging contract and the seed's operations
// (link as target / as source, delete link, list sessions, send to session, broadcast, shutdown).
import { MemoryBus } from '../bus/memory-bus.ts';
import type { Bus, BusMessage, BusSubscription } from '../bus/bus.ts';
import { RequestError } from '../bus/bus.ts';
import { RequestInbox } from '../bus/request-inbox.ts';
import { SessionHub } from '../sessions/hub.ts';
import type { SessionInfo } from '../sessions/session.ts';
import { GatewayServer } from '../server/gateway-server.ts';
import { loadConfig, ConfigError, resolveLinkConfig } from '../config/load.ts';
import type { RemoteLink } from '../client/remote-link.ts';
import { LinkRegistry } from '../client/link-registry.ts';
import type { Config, LinkConfig } from '../config/load.ts';
import { silentLogger } from '../observability/logger.ts';
import type { Logger } from '../observability/logger.ts';
import { subjectError } from '../protocol/subject.ts';
import { checkPublish, checkReplyTo, checkRequest, isReserved, NODE_PREFIX, ReplyGrants, scopedStateName } from '../security/subject-policy.ts';
import type { Actor, Denial, GrantLimits } from '../security/subject-policy.ts';
import { ok, err } from './messaging.ts';
import type { ComponentConfig } from '../components/component-config.ts';
import type { RunningComponent } from '../components/component-host.ts';
import type { OutboundStats } from '../components/outbound/socket.ts';
import type { BrokerMessage, Consumer, Handler, Result, Subscription } from './messaging.ts';

export interface GatewayStats {
  handlerCalls: number;
  handlerErrors: number;
  /** Outbound WebSockets opened by components. */
  outbound: OutboundStats;
}

interface LinkedComponent {
  subscriptions: BusSubscription[];
  /** The client-mode links held for it (their ids). */
  linkIds: Set<string>;
  /** What the component may publish to: user subjects, and reply subjects it was handed. */
  actor: { role: 'component'; grants: ReplyGrants };
}

/** The operator API and the TypeScript API: user subjects and the gateway's reply subjects. */
export const OPERATOR: Actor = { role: 'operator' };

/**
 * A component answers many messages at once (its pool and queue): it may hold more grants than a
 * session, at least 4096, so a burst of requests never forgets the first ones before they are
 * answered.
 */
function componentGrantLimits(l: GrantLimits): GrantLimits {
  return { ...l, maxGrants: Math.max(l.maxGrants, 4096) };
}

/** The wasmcloud:messaging error string for a refused subject: "<code>: <message>". */
const refused = (d: Denial): Result<never, string> => err(`${d.code}: ${d.message}`);

/** The id under which links from the gateway's own configuration are held. */
const CONFIG_OWNER = '\0config';
/** The owner of links added over the operator API. */
const OPERATOR_OWNER = '\0operator';
/** How /api/stats and /api/links name a link's owner: "config", "operator" or a component id. */
export const ownerName = (o: string): string => (o.startsWith('\0') ? o.slice(1) : o);

export class Gateway {
  readonly config: Config;
  readonly log: Logger;
  readonly bus: Bus;
  /** This node's request inbox (client req, consumer.request, the TypeScript API). */
  readonly inbox: RequestInbox;
  readonly hub: SessionHub;
  readonly stats: GatewayStats = { handlerCalls: 0, handlerErrors: 0, outbound: { open: 0, opened: 0, bytesIn: 0, bytesOut: 0 } };
  server: GatewayServer | undefined;
  /** Client-mode links (from the configuration, components and the operator API). */
  readonly remoteLinks: LinkRegistry;
  #components = new Map<string, LinkedComponent>();
  /** Component ids being loaded (addComponent), taken before its first await. */
  #loading = new Set<string>();
  /** Observes component calls (metrics): seconds and result (ok, err, trap, timeout). */
  onComponentCall: (component: string, seconds: number, result: string) => void = () => {};
  /** WebAssembly components running in this process, by link id. */
  readonly wasm = new Map<string, RunningComponent>();
  #closing: Promise<void> | undefined;
  #presence: import('../cluster/presence.ts').Presence | undefined;
  #subjectPresence: import('../cluster/subject-presence.ts').SubjectPresence | undefined;

  private constructor(config: Config, log: Logger, bus: Bus) {
    this.config = config;
    this.log = log;
    this.bus = bus;
    if (bus instanceof MemoryBus) {
      bus.onHandlerError = (e, subject) => log.error({ err: e, subject }, 'bus subscriber threw');
    }
    this.inbox = new RequestInbox(bus);
    this.remoteLinks = new LinkRegistry(bus, log, config.grants);
    this.hub = new SessionHub(bus, this.inbox, log, {
      defaultRequestTimeoutMs: config.requestTimeoutMs,
      maxRequestTimeoutMs: config.maxRequestTimeoutMs,
      maxPendingRequests: config.maxPendingRequests,
      maxSubscriptions: config.maxSubscriptions,
    });
  }

  /** Starts a node: the listener when one is configured, and the configured client-mode links. */
  static async start(config: Config, opts: { log?: Logger; bus?: Bus } = {}): Promise<Gateway> {
    const log = opts.log ?? silentLogger;
    let bus = opts.bus;
    if (!bus && config.nats) {
      const { NatsBus } = await import('../bus/nats-bus.ts');
      try {
        bus = await NatsBus.connect({ ...config.nats, name: 'wsbridge' }, log);
      } catch (e) {
        if (e instanceof ConfigError) throw e; // a file nats.js cannot use: exit 2, naming the setting
        throw new NatsUnavailableError(`cannot connect to NATS at ${config.nats.servers.join(', ')} (NATS_URL): ${(e as Error).message}`);
      }
    }
    const gw = new Gateway(config, log, bus ?? new MemoryBus());
    try {
      await gw.#startCluster();
      await gw.#startSubjectPresence();
    } catch (e) {
      await gw.shutdown(); // the NATS connection too: a failed start leaves nothing running
      throw e;
    }
    // Components first: no client traffic arrives before their subscriptions exist.
    try {
      for (const c of config.components) await gw.addComponent(c);
    } catch (e) {
      await gw.shutdown();
      throw e;
    }
    if (config.listen) {
      gw.server = new GatewayServer(gw, config);
      await gw.server.listen(config.listen);
    }
    for (const link of config.links) gw.remoteLinks.acquire(CONFIG_OWNER, link);
    return gw;
  }

  async #startCluster(): Promise<void> {
    const { NatsBus } = await import('../bus/nats-bus.ts');
    const bus = this.bus;
    if (!(bus instanceof NatsBus)) return;
    const { Presence } = await import('../cluster/presence.ts');
    const { PlacementError } = await import('../bus/jetstream-placement.ts');
    // The bucket is named per NATS_PREFIX: tenants sharing a NATS never see each other's sessions.
    const bucket = scopedStateName('wsbridge_presence', bus.prefix);
    // Replicas and placement first: settings JetStream cannot honour stop startup here, naming
    // the setting. JetStream unavailable is not fatal here (history says so below, if used).
    try {
      await bus.placement.resolve([bus.historyStream, `KV_${bucket}`]);
    } catch (e) {
      if (e instanceof PlacementError) throw new NatsUnavailableError(e.message);
      this.log.warn({ err: (e as Error).message, jetstream: bus.placement.where }, `${bus.placement.where} did not answer: replicas of history and presence not known yet`);
    }
    if (this.config.history.subjects.length > 0) {
      try {
        await bus.enableHistory(this.config.history);
      } catch (e) {
        throw new NatsUnavailableError(`cannot set up history (HISTORY_SUBJECTS) in ${bus.placement.where}: ${(e as Error).message}`);
      }
    }
    // Operator closes of sessions on this node, sent from any node.
    bus.subscribe(`${NODE_PREFIX}${bus.nodeId}.close`, (m) => this.closeSession(Buffer.from(m.body).toString()));
    try {
      this.#presence = await Presence.start(bus.nc, bucket, bus.nodeId, this.config.presenceTtlSec, () => this.listSessions(), this.log, { js: bus.jsOptions(), storage: await bus.placement.kv() });
      // KV create leaves an existing bucket's replicas as they were: bring them to the setting.
      await bus.placement.ensure(`KV_${bucket}`).catch((e: unknown) => this.log.warn({ err: (e as Error).message }, 'could not check the presence bucket\'s replicas'));
      this.hub.onChange = () => this.#presence?.changed();
    } catch (e) {
      this.log.warn({ err: (e as Error).message, jetstream: bus.placement.where }, `cluster presence unavailable in ${bus.placement.where}: listing local sessions only`);
    }
  }

  /** Presence per subject (PRESENCE_SUBJECTS): in NATS KV with a cluster, in memory on one node. */
  async #startSubjectPresence(): Promise<void> {
    const cfg = this.config.subjectPresence;
    if (cfg.subjects.length === 0) return;
    const { SubjectPresence, LocalMemberStore } = await import('../cluster/subject-presence.ts');
    const { NatsBus } = await import('../bus/nats-bus.ts');
    let presence: import('../cluster/subject-presence.ts').SubjectPresence | undefined;
    let store: import('../cluster/subject-presence.ts').MemberStore = new LocalMemberStore();
    const bus = this.bus;
    if (bus instanceof NatsBus) {
      try {
        const { KvMemberStore } = await import('../cluster/kv-member-store.ts');
        store = await KvMemberStore.start(bus.nc, {
          nodeId: bus.nodeId,
          prefix: bus.prefix,
          js: bus.jsOptions(),
          storage: await bus.placement.kv(),
          ttlSec: this.config.presenceTtlSec,
          localMembers: () => presence?.localMembers() ?? [],
          onRestored: (recs) => presence?.restored(recs),
        }, this.log);
      } catch (e) {
        this.log.warn({ err: (e as Error).message }, 'presence per subject unavailable cluster-wide (is JetStream enabled on the NATS server?): members of this node only');
      }
    }
    presence = new SubjectPresence(bus, store, cfg, this.log);
    this.#subjectPresence = presence;
    this.hub.presence = presence;
  }

  /**
   * The members of a subject on every node (operator and TypeScript API). Throws SubjectRefused
   * for a subject that is not a literal user subject, PresenceUnavailable when its members are not
   * kept (PRESENCE_SUBJECTS).
   */
  async presenceOf(subject: string): Promise<{ subject: string; members: Array<import('../cluster/subject-presence.ts').MemberRecord>; truncated: boolean }> {
    const e = subjectError(subject, false);
    if (e) throw new SubjectRefused('invalid_subject', e);
    if (isReserved(subject)) throw new SubjectRefused('invalid_subject', `${subject} is reserved: presence is kept for user subjects`);
    const p = this.#subjectPresence;
    if (!p?.tracks(subject)) throw new PresenceUnavailable(`presence is not kept for ${subject} (PRESENCE_SUBJECTS)`);
    const r = await p.membersWithNodes(subject);
    return { subject, members: r.members, truncated: r.truncated };
  }

  /** Whether this node can serve everything: with NATS, only while NATS is connected. */
  get ready(): boolean {
    const bus = this.bus as Bus & { connected?: boolean };
    return bus.connected !== false;
  }

  /** Whether every client-mode link is open (a link reconnecting or given up is not). */
  get linksReady(): boolean {
    return this.links.every((l) => l.state === 'open');
  }

  /** Sessions of every node (with NATS presence), else of this node; each with its node id. */
  async listAllSessions(): Promise<Array<SessionInfo & { node?: string }>> {
    if (this.#presence && this.ready) {
      try {
        return await this.#presence.list();
      } catch (e) {
        this.log.warn({ err: (e as Error).message }, 'presence read failed: listing local sessions');
      }
    }
    return this.listSessions();
  }

  /** Where a session lives: 'local', a node id, or undefined when no node has it. */
  async #locate(sessionId: string): Promise<string | undefined> {
    if (this.hub.sessions.has(sessionId)) return 'local';
    if (!this.#presence || !this.ready) return undefined;
    return this.#presence.find(sessionId).catch(() => undefined);
  }

  /** The remote links this node holds open, for status and tests. */
  get links(): RemoteLink[] {
    return this.remoteLinks.list();
  }

  /**
   * Adds a client-mode link at runtime (the operator API): `values` are a config-file link's keys
   * (URI, AUTH_TOKEN, HEADER_<Name>, …) over the gateway's own top-level values. Held by `owner`
   * until deleteRemoteLink. Throws ConfigError for a bad value or a sharing conflict.
   */
  addRemoteLink(values: Record<string, unknown>, owner = OPERATOR_OWNER, where = 'link'): RemoteLink {
    return this.remoteLinks.acquire(owner, resolveLinkConfig(values, this.config.linkBase, where));
  }

  /** Closes a client-mode link, whoever holds it; false when there is none with that id. */
  deleteRemoteLink(id: string): Promise<boolean> {
    return this.remoteLinks.remove(id);
  }

  /** The seed-style link values of a programmatic link, over the gateway's own. */
  #resolve(componentId: string, remote: Record<string, string>) {
    return resolveLinkConfig(remote, this.config.linkBase, `link of ${componentId}`);
  }

  // ── wasmcloud:messaging/consumer ──────────────────────────────────────────────────────────

  /** Checks a message against the subject policy for `actor`; null when it may go out. */
  #check(msg: BrokerMessage, actor: Actor): Result<never, string> | null {
    const e = subjectError(msg.subject, false) ?? (msg.replyTo ? subjectError(msg.replyTo, false) : null);
    if (e) return err(`invalid_subject: ${e}`);
    // reply_to first: a refused message must not use up a reply grant.
    const d = (msg.replyTo ? checkReplyTo(actor, msg.replyTo) : null) ?? checkPublish(actor, msg.subject);
    return d ? refused(d) : null;
  }

  /** Publishes as `actor` (default: the operator, i.e. the TypeScript API itself). */
  publish(msg: BrokerMessage, actor: Actor = OPERATOR): Result<void, string> {
    const refusal = this.#check(msg, actor);
    if (refusal) return refusal;
    try {
      this.bus.publish({ subject: msg.subject, body: msg.body, replyTo: msg.replyTo ?? null });
      return ok(undefined);
    } catch (e2) {
      return err(e2 instanceof Error ? e2.message : String(e2));
    }
  }

  /** publish, resolved once the bus has accepted the message (NATS ack, JetStream store). */
  async publishAcked(msg: BrokerMessage, actor: Actor = OPERATOR): Promise<Result<void, string>> {
    if (!this.bus.publishAcked) return this.publish(msg, actor);
    const refusal = this.#check(msg, actor);
    if (refusal) return refusal;
    try {
      await this.bus.publishAcked({ subject: msg.subject, body: msg.body, replyTo: msg.replyTo ?? null });
      return ok(undefined);
    } catch (e2) {
      return err(e2 instanceof Error ? e2.message : String(e2));
    }
  }

  async request(subject: string, body: Uint8Array, timeoutMs: number, actor: Actor = OPERATOR): Promise<Result<BrokerMessage, string>> {
    const e = subjectError(subject, false);
    if (e) return err(`invalid_subject: ${e}`);
    const d = checkRequest(actor, subject);
    if (d) return refused(d);
    const timeout = Math.min(timeoutMs > 0 ? timeoutMs : this.config.requestTimeoutMs, this.config.maxRequestTimeoutMs);
    try {
      const reply = await this.inbox.request(subject, body, timeout);
      // The requester (a component) may answer the reply's own reply_to.
      if (reply.replyTo && actor.grants) actor.grants.grant(reply.replyTo);
      return ok({ subject: reply.subject, body: reply.body, replyTo: reply.replyTo ?? null });
    } catch (e2) {
      // The error string starts with the protocol's code so callers can tell the cases apart.
      if (e2 instanceof RequestError) return err(`${e2.code}: ${e2.message}`);
      return err(e2 instanceof Error ? e2.message : String(e2));
    }
  }

  // ── links (the seed's receive_link_config_as_target / _as_source / delete_link) ───────────

  /**
   * Links a component as target: it gets a Consumer. With `remote` (seed keys such as URI,
   * AUTH_TOKEN, HEADER_<name>), the gateway dials that server; links with the same URL and
   * handshake share one connection.
   */
  linkTarget(componentId: string, remote?: Record<string, string>): Consumer & { publishAcked(msg: BrokerMessage): Promise<Result<void, string>> } {
    const c = this.#component(componentId);
    if (remote) c.linkIds.add(this.remoteLinks.acquire(componentId, this.#resolve(componentId, remote)).id);
    // A component publishes as itself: user subjects, and the reply subjects it was handed.
    return {
      publish: (msg) => this.publish(msg, c.actor),
      publishAcked: (msg) => this.publishAcked(msg, c.actor),
      request: (subject, body, timeoutMs) => this.request(subject, body, timeoutMs, c.actor),
    };
  }

  /** Links a component as source: every message on its subscriptions calls its handler. */
  linkSource(componentId: string, handler: Handler, subscriptions: Array<string | Subscription>, remote?: Record<string, string>): void {
    const c = this.#component(componentId);
    for (const s of subscriptions) {
      const { subject, queue } = typeof s === 'string' ? { subject: s, queue: undefined } : s;
      const e = subjectError(subject, true);
      if (e) throw new Error(`subscription ${JSON.stringify(subject)}: ${e}`);
      if (isReserved(subject)) throw new Error(`subscription ${subject}: reserved (_WSB., _INBOX. and $ subjects are the gateway's and NATS's own)`);
      c.subscriptions.push(this.bus.subscribe(subject, (msg) => this.#callHandler(componentId, c, handler, msg), { queue }));
    }
    if (remote) c.linkIds.add(this.remoteLinks.acquire(componentId, this.#resolve(componentId, remote)).id);
  }

  /**
   * Loads a WebAssembly component and links it: its consumer imports call this gateway, its
   * subscriptions call handle-message through an instance pool. jco is loaded on first use.
   */
  async addComponent(cfg: ComponentConfig): Promise<RunningComponent> {
    if (this.wasm.has(cfg.id) || this.#components.has(cfg.id) || this.#loading.has(cfg.id)) throw new Error(`a link with id ${JSON.stringify(cfg.id)} exists already`);
    // The id is taken before the first await: two loads of one id at once (the operator API) never both run.
    this.#loading.add(cfg.id);
    try {
      const { startComponent } = await import('../components/component-host.ts');
      const running = await startComponent(this, cfg, this.config.componentCacheDir);
      this.wasm.set(cfg.id, running);
      return running;
    } finally {
      this.#loading.delete(cfg.id);
    }
  }

  /** Removes a component's links: its subscriptions end; a remote connection closes with its last link. */
  async deleteLink(componentId: string): Promise<void> {
    const running = this.wasm.get(componentId);
    this.wasm.delete(componentId);
    const c = this.#components.get(componentId);
    this.#components.delete(componentId);
    // Subscriptions first, so no message reaches the instances while they close.
    for (const s of c?.subscriptions ?? []) s.unsubscribe();
    await Promise.all([running?.pool.close(), ...[...(c?.linkIds ?? [])].map((id) => this.remoteLinks.release(componentId, id))]);
  }

  #component(id: string): LinkedComponent {
    let c = this.#components.get(id);
    if (!c) this.#components.set(id, (c = { subscriptions: [], linkIds: new Set(), actor: { role: 'component', grants: new ReplyGrants(componentGrantLimits(this.config.grants)) } }));
    return c;
  }

  #callHandler(componentId: string, c: LinkedComponent, handler: Handler, msg: BusMessage): void {
    // Reserved subjects never reach a handler's subscription: the bus filters them.
    this.stats.handlerCalls++;
    if (msg.replyTo) c.actor.grants.grant(msg.replyTo);
    const failed = (reason: string) => {
      this.stats.handlerErrors++;
      this.log.warn({ component: componentId, subject: msg.subject, reason }, 'handler failed');
    };
    try {
      const r = handler.handleMessage({ subject: msg.subject, body: msg.body, replyTo: msg.replyTo ?? null });
      if (r instanceof Promise) {
        r.then((res) => { if (res?.tag === 'err') failed(res.val); }, (e: unknown) => failed(e instanceof Error ? e.message : String(e)));
      } else if (r?.tag === 'err') failed(r.val);
    } catch (e) {
      failed(e instanceof Error ? e.message : String(e));
    }
  }

  // ── sessions (server mode) ─────────────────────────────────────────────────────────────────

  listSessions(): SessionInfo[] {
    return [...this.hub.sessions.values()].map((s) => s.info());
  }

  /**
   * Sends to one session on any node, as a message on `msg.subject` (the seed's operation; an
   * operator, component and TypeScript-API operation, never a client one). False when no node
   * has the session. Throws SubjectRefused when the subject or reply_to may not be used.
   */
  async sendToSession(sessionId: string, msg: BrokerMessage): Promise<boolean> {
    this.#checkOutgoing(msg);
    const where = await this.#locate(sessionId);
    if (where === undefined) return false;
    if (where === 'local') return this.hub.sendToLocalSession(sessionId, msg);
    this.hub.sendToRemoteSession(where, sessionId, msg);
    return true;
  }

  /** Sends to every session; returns how many local sessions it was written to. */
  broadcast(msg: BrokerMessage): number {
    this.#checkOutgoing(msg);
    this.hub.broadcast(msg);
    return this.hub.sessions.size;
  }

  /** What the operator sends to sessions goes to a user subject, with a reply_to it may name. */
  #checkOutgoing(msg: BrokerMessage): void {
    const e = subjectError(msg.subject, false) ?? (msg.replyTo ? subjectError(msg.replyTo, false) : null);
    if (e) throw new SubjectRefused('invalid_subject', e);
    if (isReserved(msg.subject)) throw new SubjectRefused('invalid_subject', `${msg.subject} is reserved: sessions receive user subjects only`);
    const d = msg.replyTo ? checkReplyTo(OPERATOR, msg.replyTo) : null;
    if (d) throw new SubjectRefused(d.code, d.message);
  }

  closeSession(sessionId: string, code = 1000, reason = 'closed by operator'): boolean {
    const s = this.hub.sessions.get(sessionId);
    if (!s) return false;
    s.close(code, reason);
    return true;
  }

  /** Closes a session on whichever node holds it. */
  async closeAnySession(sessionId: string): Promise<boolean> {
    const where = await this.#locate(sessionId);
    if (where === undefined) return false;
    if (where === 'local') return this.closeSession(sessionId);
    this.bus.publish({ subject: `${NODE_PREFIX}${where}.close`, body: Buffer.from(sessionId), replyTo: null });
    return true;
  }

  /** Counters for the operator API's GET /api/stats. */
  statsSnapshot(): Record<string, unknown> {
    return {
      sessions: this.hub.sessions.size,
      hub: { ...this.hub.stats },
      handlers: { calls: this.stats.handlerCalls, errors: this.stats.handlerErrors },
      outbound_websockets: { ...this.stats.outbound },
      components: Object.fromEntries([...this.wasm].map(([id, c]) => [id, { pool_size: c.pool.size, ...c.pool.load, ...c.pool.stats }])),
      traffic: { ...this.hub.totals },
      links: this.links.map((l) => ({ ...l.info(), owners: this.remoteLinks.owners(l.id).map(ownerName) })),
    };
  }

  /** Stops accepting, closes sessions with 1001 and links, drains, then closes the bus. */
  shutdown(): Promise<void> {
    this.#closing ??= (async () => {
      const timeout = this.config.shutdownTimeoutMs;
      await Promise.all([
        this.server?.close(timeout),
        this.remoteLinks.closeAll(),
      ]);
      for (const c of this.#components.values()) for (const s of c.subscriptions) s.unsubscribe();
      this.#components.clear();
      await Promise.all([...this.wasm.values()].map((w) => w.pool.close()));
      this.wasm.clear();
      await this.hub.close();
      this.inbox.close();
      // Sessions are gone: their leaves are written (within a bound) before NATS closes.
      await this.#subjectPresence?.close(Math.max(1000, timeout));
      await this.#presence?.stop();
      await this.bus.close();
    })();
    return this.#closing;
  }
}

/** The subject policy refused a subject the operator or TypeScript API named. */
export class SubjectRefused extends Error {
  readonly code: 'invalid_subject' | 'permission_denied';
  constructor(code: 'invalid_subject' | 'permission_denied', message: string) {
    super(message);
    this.code = code;
  }
}

/** Presence per subject is not kept for that subject (PRESENCE_SUBJECTS). */
export class PresenceUnavailable extends Error {}

/** NATS was configured but could not be reached at startup. */
export class NatsUnavailableError extends Error {}

/** Resolves seed-style link values ({URI, AUTH_TOKEN, HEADER_x, …}) over the defaults alone. */
export function resolveLink(values: Record<string, string>): LinkConfig {
  return resolveLinkConfig(values, {}, 'link');
}
