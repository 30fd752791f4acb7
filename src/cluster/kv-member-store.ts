// Members of subjects, cluster-wide, in NATS JetStream KV. Nothing grows per subject in one value:
//
//   bucket wsbridge_subject_members (max age 1 hour, history 1)
//     m.<subject hash>.<node>.<session>   one key per member, written on join, deleted on leave
//     i.<node>                            "this node has members": the reapers' index
//   bucket wsbridge_subject_nodes (max age PRESENCE_TTL_SEC)
//     <node>                              heartbeat, rewritten every PRESENCE_TTL_SEC/3
//
// A member counts only while its node's heartbeat lives, so a node that dies (SIGKILL) drops out
// of every answer within PRESENCE_TTL_SEC. Every node also reaps, on each heartbeat: for an
// indexed node without a heartbeat it deletes that node's member keys, each with a
// compare-and-set on its revision, so that exactly one node removes each member and publishes its
// leave event. Live nodes rewrite their members every 20 minutes, well inside the hour after
// which JetStream would forget them (and the delete markers leaves leave behind). A node whose
// index key was reaped while it was cut off from NATS writes all its members again on its next
// heartbeat, and they join again.
import { createHash } from 'node:crypto';
import { Kvm } from '@nats-io/kv';
import type { KV, KvEntry } from '@nats-io/kv';
import { jetstream } from '@nats-io/jetstream';
import type { JetStreamOptions, Placement } from '@nats-io/jetstream';
import type { NatsConnection, QueuedIterator } from '@nats-io/transport-node';
import type { Logger } from '../observability/logger.ts';
import { scopedStateName } from '../security/subject-policy.ts';
import type { MemberList, MemberRecord, MemberStore } from './subject-presence.ts';

const MEMBER_MAX_AGE_MS = 60 * 60 * 1000;
const MEMBER_REFRESH_MS = 20 * 60 * 1000;

/** The KV key token for a subject: 128 bits of its SHA-256 (subjects may hold any letters; keys may not). */
export function subjectKey(subject: string): string {
  return createHash('sha256').update(subject).digest('base64url').slice(0, 22);
}

const memberKey = (r: MemberRecord): string => `m.${subjectKey(r.subject)}.${r.node}.${r.session}`;

export interface KvMemberStoreOptions {
  nodeId: string;
  /** NATS_PREFIX: the buckets are named per tenant. */
  prefix: string;
  /** NATS_JS_DOMAIN / NATS_JS_API_PREFIX. */
  js?: JetStreamOptions;
  /** Replicas and placement (NATS_JS_REPLICAS, NATS_JS_PLACEMENT_*). */
  storage?: { replicas: number; placement?: Placement };
  ttlSec: number;
  /** This node's members, to write again when its records were lost. */
  localMembers: () => MemberRecord[];
  /** Told when this node wrote its members again (they join again). */
  onRestored: (recs: MemberRecord[]) => void;
}

export class KvMemberStore implements MemberStore {
  onReaped: (recs: MemberRecord[]) => void = () => {};
  #members: KV;
  #nodes: KV;
  #opts: KvMemberStoreOptions;
  #log: Logger;
  #timer: NodeJS.Timeout;
  #lastRefresh = Date.now();
  #ticking = false;
  #stopped = false;
  /** Writes that failed (NATS unreachable), by key: the record to put, or null to delete. Retried each heartbeat. */
  #retry = new Map<string, MemberRecord | null>();
  /** The KV scans running (presence reads, reaps), each as its stop: close() ends them all. */
  #scans = new Set<() => void>();

  private constructor(members: KV, nodes: KV, opts: KvMemberStoreOptions, log: Logger) {
    this.#members = members;
    this.#nodes = nodes;
    this.#opts = opts;
    this.#log = log;
    this.#timer = setInterval(() => void this.#tick(), Math.max(200, (opts.ttlSec * 1000) / 3));
    this.#timer.unref();
  }

  static async start(nc: NatsConnection, opts: KvMemberStoreOptions, log: Logger): Promise<KvMemberStore> {
    // In the JetStream domain (or API prefix) and with the replicas and placement configured,
    // like the node presence bucket (docs/architecture.md, "Production NATS").
    const kvm = new Kvm(jetstream(nc, opts.js ?? {}));
    const members = await kvm.create(scopedStateName('wsbridge_subject_members', opts.prefix), { ttl: MEMBER_MAX_AGE_MS, history: 1, ...opts.storage });
    const nodes = await kvm.create(scopedStateName('wsbridge_subject_nodes', opts.prefix), { ttl: opts.ttlSec * 1000, history: 1, ...opts.storage });
    const store = new KvMemberStore(members, nodes, opts, log);
    // Heartbeat before the index: no reaper ever sees this node indexed and not alive.
    await nodes.put(opts.nodeId, JSON.stringify({ at: Date.now() }));
    await members.put(`i.${opts.nodeId}`, JSON.stringify({ at: Date.now() }));
    return store;
  }

  async join(rec: MemberRecord): Promise<void> {
    const key = memberKey(rec);
    try {
      await this.#members.put(key, JSON.stringify(rec));
      if (this.#retry.get(key) !== undefined) this.#retry.delete(key);
    } catch (err) {
      this.#retry.set(key, rec);
      throw err;
    }
  }

  async leave(rec: MemberRecord): Promise<void> {
    const key = memberKey(rec);
    try {
      await this.#members.delete(key);
      if (this.#retry.get(key) === null) this.#retry.delete(key);
    } catch (err) {
      this.#retry.set(key, null);
      throw err;
    }
  }

  /**
   * The items of a KV scan (an ordered consumer). It ends with an error when `signal` aborts or
   * the store closes, and its consumer is stopped however the loop ends: no scan outlives its
   * reader or the NATS connection (a stranded one would reset itself on missed heartbeats forever).
   */
  async *#scan<T>(open: () => Promise<QueuedIterator<T>>, signal?: AbortSignal): AsyncGenerator<T> {
    if (this.#stopped) throw new Error('the presence store is closed');
    const it = await open();
    const stop = (): void => it.stop(new Error(this.#stopped ? 'the presence store is closed' : 'the presence read took too long'));
    this.#scans.add(stop);
    signal?.addEventListener('abort', stop);
    if (this.#stopped || signal?.aborted) stop();
    try {
      for await (const item of it) yield item;
    } finally {
      this.#scans.delete(stop);
      signal?.removeEventListener('abort', stop);
      it.stop();
    }
  }

  /** Nodes whose heartbeat lives. */
  async #liveNodes(signal?: AbortSignal): Promise<Set<string>> {
    const live = new Set<string>();
    for await (const k of this.#scan(() => this.#nodes.keys(), signal)) live.add(k);
    return live;
  }

  async list(subject: string, limit: number, signal?: AbortSignal): Promise<MemberList> {
    const live = await this.#liveNodes(signal);
    const members: MemberRecord[] = [];
    let truncated = false;
    for await (const e of this.#scan(() => this.#members.history({ key: `m.${subjectKey(subject)}.>` }), signal)) {
      if (e.operation !== 'PUT' || e.length === 0) continue;
      const node = e.key.split('.')[2]!;
      if (!live.has(node)) continue; // its node died: it leaves when a reaper gets to it
      const rec = e.json<MemberRecord>();
      if (rec.subject !== subject) continue; // a hash collision, however unlikely
      if (members.length >= limit) {
        truncated = true;
        break;
      }
      members.push(rec);
    }
    return { members, truncated };
  }

  async #tick(): Promise<void> {
    if (this.#ticking || this.#stopped) return;
    this.#ticking = true;
    try {
      const me = this.#opts.nodeId;
      await this.#nodes.put(me, JSON.stringify({ at: Date.now() }));
      await this.#flushRetries();
      const index = await this.#members.get(`i.${me}`);
      const refresh = Date.now() - this.#lastRefresh >= MEMBER_REFRESH_MS;
      if (!index || index.operation !== 'PUT' || refresh) await this.#rewrite(!index || index.operation !== 'PUT');
      await this.#reap();
    } catch (err) {
      this.#log.debug({ err: (err as Error).message }, 'presence heartbeat failed (NATS unavailable?)');
    } finally {
      this.#ticking = false;
    }
  }

  async #flushRetries(): Promise<void> {
    for (const [key, rec] of [...this.#retry]) {
      if (rec) await this.#members.put(key, JSON.stringify(rec));
      else await this.#members.delete(key);
      if (this.#retry.get(key) === rec) this.#retry.delete(key);
    }
  }

  /** Writes the index and every local member again; `lost`: they had been reaped, so they join again. */
  async #rewrite(lost: boolean): Promise<void> {
    this.#lastRefresh = Date.now();
    await this.#members.put(`i.${this.#opts.nodeId}`, JSON.stringify({ at: Date.now() }));
    const recs = this.#opts.localMembers();
    await Promise.all(recs.map((r) => this.#members.put(memberKey(r), JSON.stringify(r))));
    if (lost && recs.length > 0) {
      this.#log.warn({ members: recs.length }, 'presence: this node\'s members had been removed (cut off from NATS for longer than PRESENCE_TTL_SEC); written again');
      this.#opts.onRestored(recs);
    }
  }

  /** Removes the members of indexed nodes whose heartbeat is gone, one compare-and-set each. */
  async #reap(): Promise<void> {
    const live = await this.#liveNodes();
    const dead: KvEntry[] = [];
    for await (const e of this.#scan(() => this.#members.history({ key: 'i.*' }))) {
      if (e.operation === 'PUT' && !live.has(e.key.slice(2))) dead.push(e);
    }
    for (const idx of dead) {
      const node = idx.key.slice(2);
      const reaped: MemberRecord[] = [];
      const entries: KvEntry[] = [];
      for await (const e of this.#scan(() => this.#members.history({ key: `m.*.${node}.*` }))) if (e.operation === 'PUT' && e.length > 0) entries.push(e);
      for (const e of entries) {
        try {
          await this.#members.delete(e.key, { previousSeq: e.revision });
          reaped.push(e.json<MemberRecord>());
        } catch {
          // another node removed it first (or it changed): not ours to announce
        }
      }
      await this.#members.delete(idx.key, { previousSeq: idx.revision }).catch(() => {});
      if (reaped.length > 0) {
        this.#log.info({ node, members: reaped.length }, 'presence: removed the members of a node without heartbeat');
        this.onReaped(reaped);
      }
    }
  }

  async close(): Promise<void> {
    this.#stopped = true;
    clearInterval(this.#timer);
    for (const stop of [...this.#scans]) stop();
    const me = this.#opts.nodeId;
    // Members left with their sessions; the index and heartbeat go too, so nobody reaps us.
    await this.#members.delete(`i.${me}`).catch(() => {});
    await this.#nodes.delete(me).catch(() => {});
  }
}
