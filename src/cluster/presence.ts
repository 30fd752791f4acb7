// Cluster-wide presence of nodes and sessions in two JetStream KV buckets:
//
// - `wsbridge_nodes`: one key per node (its id), whose value is the node's identity (host, listen
//   address, pid, start time, version, session count). Rewritten every PRESENCE_TTL_SEC/3 as a
//   heartbeat; the bucket's max age is PRESENCE_TTL_SEC, so a node that stops writing leaves it
//   within the TTL. A node is live exactly while its key exists.
// - `wsbridge_sessions`: one key per session (its id), whose value is that session's info and node,
//   a few hundred bytes whatever the number of sessions (its subscription list is bounded too).
//   Written when the session opens or changes (changes within 50 ms coalesce), removed by purging
//   its subject (no tombstone is left), and rewritten every 30 minutes so the bucket's two-hour
//   max age only ever removes entries of nodes that died without cleaning up.
//
// No value grows with the number of sessions, so presence has no ceiling from NATS's payload
// limit and one change costs one small write. Readers take a snapshot (one ordered consumer,
// deleted afterwards) and keep the sessions of live nodes only. Writes that fail are retried,
// counted and logged at warn. A JetStream that lost its state (a reset, a fresh store) is noticed
// by the bucket's creation time changing or vanishing: the buckets are made again and every live
// session is written again.
import os from 'node:os';
import { Kvm } from '@nats-io/kv';
import type { KV } from '@nats-io/kv';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { readStream } from '../bus/stream-reader.ts';
import type { JetStreamClient, JetStreamManager, JetStreamOptions, Placement } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import type { SessionInfo } from '../sessions/session.ts';
import type { Logger } from '../observability/logger.ts';
import { scopedStateName } from '../security/subject-policy.ts';

export interface ClusterSession extends SessionInfo {
  node: string;
}

/** What an operator reads about a node (GET /api/nodes, GET /api/sessions). */
export interface NodeIdentity {
  node: string;
  host: string;
  /** The address the node's listener is bound to (null: no listener, or not yet bound). */
  listen: string | null;
  pid: number;
  started_at: string;
  version: string;
  /** Sessions open on the node when it last wrote its entry. */
  sessions: number;
  /** When the node last wrote its entry (its clock). */
  at: string;
  /** Fingerprint of its history configuration (HISTORY_SUBJECTS, HISTORY_MAX_*), null without history. */
  history: string | null;
}

export interface PresenceStats {
  /** Entries written (node heartbeats, sessions added, changed, refreshed, removed). */
  writes: number;
  /** Entry writes that failed (each is retried). */
  writeFailures: number;
  /** Full rewrites of this node's sessions (start, bucket recreated, node entry expired). */
  resyncs: number;
  /** Times this node created a bucket that had gone missing. */
  bucketsRecreated: number;
}

/** What Presence needs of a session on this node. */
export interface PresentSession {
  readonly id: string;
  info(): SessionInfo;
}

export const NODES_BUCKET = 'wsbridge_nodes';
export const SESSIONS_BUCKET = 'wsbridge_sessions';
/** Every remote operation of presence fails within this long. */
export const PRESENCE_OP_TIMEOUT_MS = 1000;
const SESSIONS_MAX_AGE_MS = 2 * 3600_000;
const SESSION_REFRESH_MS = 30 * 60_000;
const COALESCE_MS = 50;
/** Writes in flight at once (a resync of 20,000 sessions goes out 256 at a time). */
const WRITE_CONCURRENCY = 256;
/** A session's entry lists subscriptions up to this many bytes of subjects (then a count). */
const SUBSCRIPTIONS_BUDGET = 8 * 1024;
/** Failed writes are logged at most this often (with the count since the last line). */
const WARN_EVERY_MS = 10_000;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** The session's entry: its info and node, with the subscription list bounded in bytes. */
export function sessionEntry(info: SessionInfo, node: string, now = Date.now()): Uint8Array {
  let budget = SUBSCRIPTIONS_BUDGET;
  let n = 0;
  for (const s of info.subscriptions) {
    budget -= s.length + 3;
    if (budget < 0) break;
    n++;
  }
  const subscriptions = n === info.subscriptions.length ? info.subscriptions : info.subscriptions.slice(0, n);
  const extra = info.subscriptions.length - n;
  return encoder.encode(JSON.stringify({ ...info, subscriptions, ...(extra > 0 ? { subscriptions_omitted: extra } : {}), node, updated_at: new Date(now).toISOString() }));
}

/** Where the presence buckets live: NATS_JS_DOMAIN / NATS_JS_API_PREFIX, NATS_JS_REPLICAS and placement. */
export interface PresenceWhere {
  js?: JetStreamOptions;
  storage?: { replicas: number; placement?: Placement };
}

export class Presence {
  readonly stats: PresenceStats = { writes: 0, writeFailures: 0, resyncs: 0, bucketsRecreated: 0 };
  readonly nodesBucket: string;
  readonly sessionsBucket: string;
  #nc: NatsConnection;
  #js: JetStreamClient;
  #jsm: JetStreamManager | undefined;
  #nodes: KV | undefined;
  #sessions: KV | undefined;
  /** Creation times of the two bucket streams as last seen: a change means JetStream was reset. */
  #created: { nodes: string; sessions: string } | undefined;
  #nodeId: string;
  #ttlMs: number;
  #local: Map<string, PresentSession>;
  #log: Logger;
  #identity: Omit<NodeIdentity, 'sessions' | 'at'>;
  /** Revision of this node's own entry as last written (a mismatch: it expired or was reset). */
  #nodeRevision = 0;
  /** Sessions whose entry must be written (a session) or removed (null). */
  #dirty = new Map<string, PresentSession | null>();
  /** Sessions with an entry in the bucket, and when it was written. */
  #written = new Map<string, number>();
  #inflight = new Set<string>();
  #flushTimer: NodeJS.Timeout | undefined;
  #heartbeat: NodeJS.Timeout;
  #stopped = false;
  /** The JetStream domain (or API prefix), replicas and placement of the buckets. */
  #where: PresenceWhere;
  #ensuring: Promise<boolean> | undefined;
  #lastEnsure = 0;
  #lastWarn = 0;
  #failuresSinceWarn = 0;
  /** Whether the buckets exist and this node's last heartbeat was written. */
  healthy = false;
  /** Why presence is not healthy, for /readyz. */
  problem: string | undefined = 'presence not started';

  constructor(nc: NatsConnection, prefix: string, nodeId: string, ttlSec: number, local: Map<string, PresentSession>, log: Logger, version: string, where: PresenceWhere = {}) {
    this.#nc = nc;
    this.#where = where;
    this.#js = jetstream(nc, { ...where.js, timeout: PRESENCE_OP_TIMEOUT_MS });
    this.#nodeId = nodeId;
    this.#ttlMs = ttlSec * 1000;
    this.#local = local;
    this.#log = log;
    this.nodesBucket = scopedStateName(NODES_BUCKET, prefix);
    this.sessionsBucket = scopedStateName(SESSIONS_BUCKET, prefix);
    this.#identity = { node: nodeId, host: os.hostname(), listen: null, pid: process.pid, started_at: new Date().toISOString(), version, history: null };
    this.#heartbeat = setInterval(() => void this.#beat(), Math.max(200, this.#ttlMs / 3));
    this.#heartbeat.unref();
  }

  /**
   * Starts presence: creates the buckets and writes this node and its sessions. Never throws:
   * without JetStream (or with it unreachable) presence keeps trying every heartbeat and says so
   * in `healthy`/`problem`.
   */
  static async start(nc: NatsConnection, prefix: string, nodeId: string, ttlSec: number, local: Map<string, PresentSession>, log: Logger, version: string, history: string | null, where: PresenceWhere = {}): Promise<Presence> {
    const p = new Presence(nc, prefix, nodeId, ttlSec, local, log, version, where);
    p.#identity.history = history;
    await p.#beat();
    return p;
  }

  /**
   * The readiness check: the buckets exist (made again when missing, this node's sessions written
   * again) and this node's entry is written. Returns whether presence is healthy.
   */
  async check(): Promise<boolean> {
    if (this.#stopped) return false;
    if (!(await this.#ensure())) return false;
    if (this.#nodeRevision === 0) await this.#beat();
    return this.healthy;
  }

  /** The listener's address, once bound (part of the node's identity). */
  set listen(address: string | null) {
    this.#identity.listen = address;
    void this.#beat();
  }

  get identity(): NodeIdentity {
    return { ...this.#identity, sessions: this.#local.size, at: new Date().toISOString() };
  }

  /** A session on this node opened or changed (`gone`: it closed): its entry is written soon. */
  changed(session: PresentSession, gone: boolean): void {
    if (this.#stopped) return;
    if (gone && !this.#written.has(session.id) && !this.#inflight.has(session.id)) {
      this.#dirty.delete(session.id); // opened and closed before it was ever written
      return;
    }
    this.#dirty.set(session.id, gone ? null : session);
    this.#flushTimer ??= setTimeout(() => {
      this.#flushTimer = undefined;
      this.#flush();
    }, COALESCE_MS);
  }

  /** NATS came back: write everything again (entries may have expired or JetStream reset meanwhile). */
  reconnected(): void {
    void this.#beat();
  }

  #warn(what: string, err: unknown): void {
    this.stats.writeFailures++;
    this.#failuresSinceWarn++;
    const now = Date.now();
    if (now - this.#lastWarn < WARN_EVERY_MS) return;
    this.#log.warn({ err: (err as Error)?.message ?? String(err), failures: this.#failuresSinceWarn }, `presence write failed (${what}); retrying`);
    this.#lastWarn = now;
    this.#failuresSinceWarn = 0;
  }

  /** Writes dirty entries, at most WRITE_CONCURRENCY at a time; called again as writes finish. */
  #flush(): void {
    if (this.#stopped || !this.#sessions) return;
    for (const [id, s] of this.#dirty) {
      if (this.#inflight.size >= WRITE_CONCURRENCY) return;
      if (this.#inflight.has(id)) continue; // one write per key at a time: the next one waits
      this.#dirty.delete(id);
      this.#inflight.add(id);
      void this.#write(id, s).then((ok) => {
        this.#inflight.delete(id);
        if (!ok && !this.#dirty.has(id)) this.#dirty.set(id, s === null ? null : (this.#local.get(id) ?? null));
        if (this.#dirty.size > 0 && !this.#flushTimer) {
          // Failures wait for the next heartbeat's retry instead of spinning.
          if (ok) this.#flush();
        }
      });
    }
  }

  async #write(id: string, s: PresentSession | null): Promise<boolean> {
    const kv = this.#sessions;
    if (!kv || this.#stopped) return false;
    try {
      if (s === null || s !== this.#local.get(id)) {
        // Purged from the stream, not deleted: a delete would leave a tombstone per session ever seen.
        await this.#jsm!.streams.purge(`KV_${this.sessionsBucket}`, { filter: `$KV.${this.sessionsBucket}.${id}` });
        this.#written.delete(id);
      } else {
        await kv.put(id, sessionEntry(s.info(), this.#nodeId));
        this.#written.set(id, Date.now());
      }
      this.stats.writes++;
      return true;
    } catch (err) {
      this.#warn(s === null ? 'session removed' : 'session', err);
      // Perhaps the bucket is gone (a JetStream reset): check, at most once a second.
      if (Date.now() - this.#lastEnsure > 1000) void this.#ensure();
      return false;
    }
  }

  /**
   * The heartbeat: checks the buckets (recreating what a JetStream reset took), writes this
   * node's entry, refreshes old session entries and retries failed writes.
   */
  async #beat(): Promise<void> {
    if (this.#stopped) return;
    if (!(await this.#ensure())) return;
    const kv = this.#nodes!;
    const value = encoder.encode(JSON.stringify(this.identity));
    try {
      let rev: number;
      try {
        // Expected revision: if our entry expired (a long outage) or vanished, this fails.
        rev = this.#nodeRevision > 0 ? await kv.update(this.#nodeId, value, this.#nodeRevision) : await kv.put(this.#nodeId, value);
      } catch (err) {
        if (this.#nodeRevision === 0 || !/wrong last sequence|10071/i.test((err as Error).message)) throw err;
        rev = await kv.put(this.#nodeId, value);
        // Other nodes may have purged our sessions as a dead node's meanwhile.
        this.#resync('this node left presence (its entry expired)');
      }
      this.#nodeRevision = rev;
      this.stats.writes++;
      this.healthy = true;
      this.problem = undefined;
    } catch (err) {
      this.healthy = false;
      this.problem = `presence heartbeat failed: ${(err as Error).message}`;
      this.#warn('node heartbeat', err);
      return;
    }
    const stale = Date.now() - SESSION_REFRESH_MS;
    for (const [id, at] of this.#written) if (at < stale && !this.#dirty.has(id)) this.#dirty.set(id, this.#local.get(id) ?? null);
    for (const [id, s] of this.#local) if (!this.#written.has(id) && !this.#dirty.has(id) && !this.#inflight.has(id)) this.#dirty.set(id, s);
    this.#flush();
  }

  /** Every session of this node goes into the bucket again. */
  #resync(why: string): void {
    this.stats.resyncs++;
    this.#log.info({ why, sessions: this.#local.size }, 'writing this node\'s sessions to presence again');
    this.#written.clear();
    for (const [id, s] of this.#local) this.#dirty.set(id, s);
  }

  /**
   * Makes sure both buckets exist and are the ones this node wrote into; creates them when
   * missing. Returns whether presence can be written. One check at a time.
   */
  #ensure(): Promise<boolean> {
    this.#lastEnsure = Date.now();
    this.#ensuring ??= this.#ensureOnce().finally(() => (this.#ensuring = undefined));
    return this.#ensuring;
  }

  async #ensureOnce(): Promise<boolean> {
    try {
      this.#jsm ??= await jetstreamManager(this.#nc, { ...this.#where.js, timeout: PRESENCE_OP_TIMEOUT_MS });
      const nodes = await this.#bucket(this.nodesBucket);
      const sessions = await this.#bucket(this.sessionsBucket);
      const seen = this.#created;
      if (seen && (nodes.made || sessions.made)) {
        this.stats.bucketsRecreated++;
        this.#log.warn({ nodes: this.nodesBucket, sessions: this.sessionsBucket }, 'presence buckets were missing (JetStream reset?): created them again');
      }
      if (!seen || !this.#nodes || !this.#sessions || nodes.time !== seen.nodes || sessions.time !== seen.sessions) {
        // New buckets (ours or another node's): everything this node wrote before is gone.
        const kvm = new Kvm(this.#js);
        this.#nodes = await kvm.create(this.nodesBucket, { ttl: this.#ttlMs, history: 1, ...this.#where.storage });
        this.#sessions = await kvm.create(this.sessionsBucket, { ttl: SESSIONS_MAX_AGE_MS, history: 1, ...this.#where.storage });
        this.#created = { nodes: nodes.time, sessions: sessions.time };
        this.#nodeRevision = 0;
        this.#resync(seen ? 'the presence buckets were made again' : 'presence started');
      }
      return true;
    } catch (err) {
      this.healthy = false;
      this.problem = `presence buckets unavailable: ${(err as Error).message}`;
      return false;
    }
  }

  /** A bucket stream's creation time; creates the bucket when it is missing (made: true). */
  async #bucket(name: string): Promise<{ time: string; made: boolean }> {
    try {
      const info = await this.#jsm!.streams.info(`KV_${name}`);
      return { time: info.created, made: false };
    } catch (err) {
      if (!/stream not found/i.test((err as Error).message)) throw err;
      const kvm = new Kvm(this.#js);
      const ttl = name === this.nodesBucket ? this.#ttlMs : SESSIONS_MAX_AGE_MS;
      await kvm.create(name, { ttl, history: 1, ...this.#where.storage });
      const info = await this.#jsm!.streams.info(`KV_${name}`);
      return { time: info.created, made: true };
    }
  }

  /** Every key's value in a bucket (one short-lived consumer, deleted after it: src/bus/stream-reader.ts). */
  async #snapshot(bucket: string): Promise<Map<string, Uint8Array>> {
    const out = new Map<string, Uint8Array>();
    const jsm = this.#jsm ?? (this.#jsm = await jetstreamManager(this.#nc, { ...this.#where.js, timeout: PRESENCE_OP_TIMEOUT_MS }));
    const stream = `KV_${bucket}`;
    const info = await jsm.streams.info(stream);
    if (info.state.messages === 0) return out;
    const prefixLen = `$KV.${bucket}.`.length;
    await readStream(jsm, this.#js, stream, { filter: `$KV.${bucket}.>`, lastPerSubject: true, upTo: info.state.last_seq }, (m) => {
      const key = m.subject.slice(prefixLen);
      if (m.headers?.get('KV-Operation')) out.delete(key);
      else out.set(key, m.data);
    });
    return out;
  }

  /** The live nodes (those whose entry has not expired). */
  async nodes(): Promise<NodeIdentity[]> {
    const out: NodeIdentity[] = [];
    for (const v of (await this.#snapshot(this.nodesBucket)).values()) {
      try {
        out.push(JSON.parse(decoder.decode(v)) as NodeIdentity);
      } catch {
        // not an entry of ours
      }
    }
    const self = out.find((n) => n.node === this.#nodeId);
    if (self) Object.assign(self, this.identity);
    else out.push(this.identity);
    return out;
  }

  /**
   * Every session of every live node: this node's from memory, the others' from the bucket (as of
   * their last write). Entries of nodes that are gone are left out, and removed.
   */
  async list(): Promise<{ sessions: ClusterSession[]; nodes: NodeIdentity[] }> {
    const nodes = await this.nodes();
    const live = new Set(nodes.map((n) => n.node));
    const sessions: ClusterSession[] = [];
    for (const s of this.#local.values()) sessions.push({ ...s.info(), node: this.#nodeId });
    const orphans: string[] = [];
    for (const [id, v] of await this.#snapshot(this.sessionsBucket)) {
      let e: ClusterSession;
      try {
        e = JSON.parse(decoder.decode(v)) as ClusterSession;
      } catch {
        continue;
      }
      if (e.node === this.#nodeId) continue; // this node's own, listed from memory
      if (live.has(e.node)) sessions.push(e);
      else orphans.push(id);
    }
    this.#dropOrphans(orphans);
    return { sessions, nodes };
  }

  /** Removes the entries of sessions whose node is gone (bounded per call). */
  #dropOrphans(ids: string[]): void {
    const jsm = this.#jsm;
    if (!jsm) return;
    for (const id of ids.slice(0, WRITE_CONCURRENCY)) {
      void jsm.streams.purge(`KV_${this.sessionsBucket}`, { filter: `$KV.${this.sessionsBucket}.${id}` }).catch(() => {});
    }
  }

  /** The node that holds a session by the bucket (undefined: no entry), without asking the node. */
  async find(sessionId: string): Promise<string | undefined> {
    if (!/^[A-Za-z0-9_-]{1,64}$/.test(sessionId)) return undefined;
    const kv = this.#sessions;
    if (!kv) throw new Error(this.problem ?? 'presence unavailable');
    const e = await kv.get(sessionId);
    if (!e || e.operation !== 'PUT' || e.length === 0) return undefined;
    try {
      return (e.json<{ node: string }>()).node;
    } catch {
      return undefined;
    }
  }

  /** Forgets a session another node no longer has (it answered so, or is gone). */
  forget(sessionId: string): void {
    if (!/^[A-Za-z0-9_-]{1,64}$/.test(sessionId)) return;
    void this.#jsm?.streams.purge(`KV_${this.sessionsBucket}`, { filter: `$KV.${this.sessionsBucket}.${sessionId}` }).catch(() => {});
  }

  /** Sessions whose entry waits to be written or removed (for tests and metrics). */
  get backlog(): number {
    return this.#dirty.size + this.#inflight.size;
  }

  /** Leaves presence: this node's entry and its sessions' entries are removed. */
  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    clearInterval(this.#heartbeat);
    clearTimeout(this.#flushTimer);
    const jsm = this.#jsm;
    if (!jsm || !this.#nodes) return;
    await Promise.all([
      jsm.streams.purge(`KV_${this.nodesBucket}`, { filter: `$KV.${this.nodesBucket}.${this.#nodeId}` }).catch(() => {}),
      ...[...this.#written.keys()].slice(0, 10_000).map((id) => jsm.streams.purge(`KV_${this.sessionsBucket}`, { filter: `$KV.${this.sessionsBucket}.${id}` }).catch(() => {})),
    ]);
  }
}
