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
import { NodeRequests, ClusterUnavailable } from '../cluster/node-requests.ts';
import type { BroadcastReach } from '../cluster/node-requests.ts';
import type { NodeIdentity, Presence } from '../cluster/presence.ts';
import os from 'node:os';
import { readFileSync } from 'node:fs';

const VERSION = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;
const STARTED_AT = new Date().toISOString();

/** The cluster-wide session list, and whether every live node's sessions are in it. */
export interface SessionList {
  sessions: Array<SessionInfo & { node: string }>;
  /** Live nodes (this one included); null when they could not be read. */
  nodes: NodeIdentity[] | null;
  /** True when some node's sessions may be missing (NATS or presence unavailable). */
  partial: boolean;
}

export interface GatewayStats {
  /** Sends, closes and broadcasts another node had to answer, by `op:result`. */
  nodeRequests: Record<string, number>;
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
  readonly stats: GatewayStats = { nodeRequests: {}, handlerCalls: 0, handlerErrors: 0, outbound: { open: 0, opened: 0, bytesIn: 0, bytesOut: 0 } };
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
  /** Sends, closes and broadcasts that another node answers. */
  readonly #nodeRequests: NodeRequests;
  #readiness: import('../cluster/readiness.ts').ClusterReadiness | undefined;
  /** Live node ids by presence, cached briefly (broadcasts wait for each of them). */
  #liveNodes: { at: number; nodes: string[] } | undefined;

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
    this.#nodeRequests = new NodeRequests(bus, this.inbox, {
      send: (id, msg) => this.hub.sendToLocalSession(id, msg),
      close: (id) => this.closeSession(id),
      broadcast: (msg) => this.hub.broadcastLocal(msg),
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
      if (gw.#presence) gw.#presence.listen = gw.server.url;
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
    const { ClusterReadiness } = await import('../cluster/readiness.ts');
    const { historyFingerprint } = await import('../bus/jetstream-history.ts');
    const { NODES_BUCKET, SESSIONS_BUCKET } = await import('../cluster/presence.ts');
    const history = this.config.history;
    const fingerprint = history.subjects.length > 0 ? historyFingerprint(history) : null;
    // The buckets are named per NATS_PREFIX: tenants sharing a NATS never see each other's sessions.
    const buckets = [NODES_BUCKET, SESSIONS_BUCKET].map((b) => scopedStateName(b, bus.prefix));
    // Replicas and placement first: settings JetStream cannot honour stop startup here, naming
    // the setting. JetStream unavailable is not fatal here (history says so below, if used).
    try {
      await bus.placement.resolve([bus.historyStream, ...buckets.map((b) => `KV_${b}`)]);
    } catch (e) {
      if (e instanceof PlacementError) throw new NatsUnavailableError(e.message);
      this.log.warn({ err: (e as Error).message, jetstream: bus.placement.where }, `${bus.placement.where} did not answer: replicas of history and presence not known yet`);
    }
    // Presence never fails the start: without JetStream it keeps trying every heartbeat.
    const presence = await Presence.start(bus.nc, bus.prefix, bus.nodeId, this.config.presenceTtlSec, this.hub.sessions, this.log, VERSION, fingerprint, { js: bus.jsOptions(), storage: await bus.placement.kv().catch(() => undefined) });
    this.#presence = presence;
    if (!presence.healthy) this.log.warn({ problem: presence.problem, jetstream: bus.placement.where }, `cluster presence unavailable in ${bus.placement.where}: retrying every heartbeat`);
    else {
      // KV create leaves an existing bucket's replicas as they were: bring them to the setting.
      for (const b of buckets) await bus.placement.ensure(`KV_${b}`).catch((e: unknown) => this.log.warn({ err: (e as Error).message, bucket: b }, 'could not check a presence bucket\'s replicas'));
    }
    if (fingerprint !== null) {
      // Another configuration in the stream is a change only when no live node uses it.
      const othersUseStream = async (): Promise<boolean> => {
        try {
          return (await presence.nodes()).some((n) => n.node !== bus.nodeId && n.history !== null && n.history !== fingerprint);
        } catch {
          return true; // cannot tell: never overwrite what others may use
        }
      };
      try {
        const h = await bus.enableHistory(history, othersUseStream);
        h.onEpochChange = (e) => this.hub.historyReset(e.epoch, e.previousLastSeq, e.firstSeq);
      } catch (e) {
        await presence.stop();
        throw new NatsUnavailableError(`cannot set up history (HISTORY_SUBJECTS) in ${bus.placement.where}: ${(e as Error).message}`);
      }
    }
    this.hub.onChange = (session, gone) => presence.changed(session, gone);
    bus.onStatus = (connected) => {
      if (connected) presence.reconnected();
      void this.#readiness?.run();
    };
    this.#readiness = new ClusterReadiness(bus.nc, () => bus.connected, bus.history, presence, this.log);
    await this.#readiness.run();
    this.#readiness.start();
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

  /** Whether NATS (when configured) is connected: remote operations are possible at all. */
  get #busConnected(): boolean {
    const bus = this.bus as Bus & { connected?: boolean };
    return bus.connected !== false;
  }

  /** Whether every client-mode link is open (a link reconnecting or given up is not). */
  get linksReady(): boolean {
    return this.links.every((l) => l.state === 'open');
  }

  /** Whether the NATS connection is up (true without NATS). */
  get natsConnected(): boolean {
    return this.#busConnected;
  }

  /**
   * Whether this node can serve everything. Without NATS, always; with NATS, while it is connected
   * and answering, JetStream answers, the history stream exists with this node's configuration
   * and presence is written (src/cluster/readiness.ts).
   */
  get ready(): boolean {
    if (!this.#busConnected) return false;
    return this.#readiness?.ready ?? true;
  }

  /** Each readiness check and its state (for /readyz); empty without NATS. */
  get readinessChecks(): Record<string, string> {
    const out: Record<string, string> = {};
    for (const [name, c] of this.#readiness?.checks ?? []) out[name] = c.detail;
    return out;
  }

  /** The history stream's keeper (for metrics); undefined without HISTORY_SUBJECTS. */
  get history(): import('../bus/jetstream-history.ts').JetStreamHistory | undefined {
    return (this.bus as { history?: import('../bus/jetstream-history.ts').JetStreamHistory }).history;
  }

  /** Who this node is, as presence shows it. */
  get identity(): NodeIdentity {
    if (this.#presence) return this.#presence.identity;
    return { node: this.bus.nodeId, host: os.hostname(), listen: this.server?.url ?? null, pid: process.pid, started_at: STARTED_AT, version: VERSION, sessions: this.hub.sessions.size, at: new Date().toISOString(), history: null };
  }

  /** Presence counters (for metrics); undefined without NATS. */
  get presence(): Presence | undefined {
    return this.#presence;
  }

  #localList(): Array<SessionInfo & { node: string }> {
    const node = this.bus.nodeId;
    return [...this.hub.sessions.values()].map((s) => ({ ...s.info(), node }));
  }

  /**
   * Sessions of every live node (with NATS presence), else of this node; each with its node id.
   * When the other nodes cannot be read (NATS or JetStream unavailable), this node's sessions with
   * `partial: true`.
   */
  async listAllSessions(): Promise<SessionList> {
    const presence = this.#presence;
    if (!presence) return { sessions: this.#localList(), nodes: [this.identity], partial: false };
    if (!this.#busConnected) return { sessions: this.#localList(), nodes: null, partial: true };
    try {
      const r = await presence.list();
      return { sessions: r.sessions, nodes: r.nodes, partial: false };
    } catch (e) {
      this.log.warn({ err: (e as Error).message }, 'presence read failed: listing this node\'s sessions only');
      return { sessions: this.#localList(), nodes: null, partial: true };
    }
  }

  /** The live nodes; null (with partial) when presence cannot be read. */
  async listNodes(): Promise<{ nodes: NodeIdentity[] | null; partial: boolean }> {
    const presence = this.#presence;
    if (!presence) return { nodes: [this.identity], partial: false };
    if (!this.#busConnected) return { nodes: null, partial: true };
    try {
      return { nodes: await presence.nodes(), partial: false };
    } catch (e) {
      this.log.warn({ err: (e as Error).message }, 'presence read failed: nodes unknown');
      return { nodes: null, partial: true };
    }
  }

  /**
   * Where a session lives: 'local', a node id, or undefined when no node has it. Throws
   * ClusterUnavailable when that cannot be known (NATS down, presence unreadable).
   */
  async #locate(sessionId: string): Promise<string | undefined> {
    if (this.hub.sessions.has(sessionId)) return 'local';
    const presence = this.#presence;
    if (!presence) return undefined;
    if (!this.#busConnected) throw new ClusterUnavailable('bus_unavailable', 'NATS is unreachable: cannot tell which node holds the session');
    let node: string | undefined;
    try {
      node = await presence.find(sessionId);
    } catch (e) {
      throw new ClusterUnavailable('presence_unavailable', `cannot read presence: ${(e as Error).message}`);
    }
    return node === this.bus.nodeId ? undefined : node;
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
      // The code first, so callers tell "not stored" (bus_unavailable) from "unknown" (unconfirmed).
      if (e2 instanceof RequestError) return err(`${e2.code}: ${e2.message}`);
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
   * operator, component and TypeScript-API operation, never a client one): 'delivered', 'dropped'
   * (the session exists but its slow-consumer policy dropped the message), or 'not_found' (no
   * node has it; a node that is gone has none). Throws SubjectRefused when the subject or
   * reply_to may not be used, ClusterUnavailable when the outcome cannot be known within about a
   * second (NATS down, presence unreadable, the session's node not answering).
   */
  async sendToSession(sessionId: string, msg: BrokerMessage): Promise<'delivered' | 'dropped' | 'not_found'> {
    this.#checkOutgoing(msg);
    const where = await this.#counted('send', this.#locate(sessionId));
    if (where === undefined) return 'not_found';
    if (where === 'local') {
      const r = this.hub.sendToLocalSession(sessionId, msg);
      return r === undefined ? 'not_found' : r ? 'delivered' : 'dropped';
    }
    const r = await this.#counted('send', this.#nodeRequests.sendTo(where, sessionId, msg));
    this.#count('send', r);
    if (r === 'not_found') this.#presence?.forget(sessionId);
    return r;
  }

  #count(op: string, result: string): void {
    const k = `${op}:${result}`;
    this.stats.nodeRequests[k] = (this.stats.nodeRequests[k] ?? 0) + 1;
  }

  /** Counts a cluster operation that could not be completed (by its code), and passes it on. */
  async #counted<T>(op: string, p: Promise<T>): Promise<T> {
    try {
      return await p;
    } catch (e) {
      if (e instanceof ClusterUnavailable) this.#count(op, e.code);
      throw e;
    }
  }

  /** Sends to every session of this node and (through NATS) of every other; returns how many local sessions it was written to. */
  broadcast(msg: BrokerMessage): number {
    this.#checkOutgoing(msg);
    this.#nodeRequests.publishBroadcast(msg);
    return this.hub.sessions.size;
  }

  /**
   * Broadcasts and says what it reached: every live node answers how many sessions it wrote to,
   * within about a second; nodes that did not answer are listed and the answer is `partial`.
   */
  async broadcastReach(msg: BrokerMessage): Promise<BroadcastReach> {
    this.#checkOutgoing(msg);
    const reach = await this.#nodeRequests.broadcast(msg, await this.#expectedNodes());
    this.#count('broadcast', reach.partial ? 'partial' : 'complete');
    return reach;
  }

  /** The nodes a broadcast should reach; undefined when presence cannot say. */
  async #expectedNodes(): Promise<string[] | undefined> {
    const presence = this.#presence;
    if (!presence) return [this.bus.nodeId];
    if (!this.#busConnected) return undefined;
    const now = Date.now();
    if (this.#liveNodes && now - this.#liveNodes.at < 1000) return this.#liveNodes.nodes;
    try {
      const nodes = (await presence.nodes()).map((n) => n.node);
      this.#liveNodes = { at: now, nodes };
      return nodes;
    } catch {
      return undefined;
    }
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

  /** Closes a session on whichever node holds it; false when no node has it. Throws ClusterUnavailable like sendToSession. */
  async closeAnySession(sessionId: string): Promise<boolean> {
    const where = await this.#counted('close', this.#locate(sessionId));
    if (where === undefined) return false;
    if (where === 'local') return this.closeSession(sessionId);
    const closed = await this.#counted('close', this.#nodeRequests.closeOn(where, sessionId));
    this.#count('close', closed ? 'closed' : 'not_found');
    if (!closed) this.#presence?.forget(sessionId);
    return closed;
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
      this.#nodeRequests.close();
      this.inbox.close();
      // Sessions are gone: their leaves are written (within a bound) before NATS closes.
      await this.#subjectPresence?.close(Math.max(1000, timeout));
      this.#readiness?.stop();
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
