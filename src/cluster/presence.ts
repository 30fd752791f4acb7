// Cluster-wide presence in a NATS KV bucket: each node keeps one key, its id, whose value lists
// its sessions. The key is rewritten on every change (debounced) and at least every ttl/3 as a
// heartbeat; the bucket's max age is the TTL, so a node that dies disappears from presence within
// PRESENCE_TTL_SEC (plus one heartbeat interval at most).
import { Kvm } from '@nats-io/kv';
import type { KV } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import { jetstream } from '@nats-io/jetstream';
import type { JetStreamOptions, Placement } from '@nats-io/jetstream';
import type { SessionInfo } from '../sessions/session.ts';
import type { Logger } from '../observability/logger.ts';

export interface ClusterSession extends SessionInfo {
  node: string;
}

export class Presence {
  #kv: KV;
  #nodeId: string;
  #list: () => SessionInfo[];
  #log: Logger;
  #timer: NodeJS.Timeout;
  #dirty: NodeJS.Timeout | undefined;
  #stopped = false;

  private constructor(kv: KV, nodeId: string, ttlSec: number, list: () => SessionInfo[], log: Logger) {
    this.#kv = kv;
    this.#nodeId = nodeId;
    this.#list = list;
    this.#log = log;
    this.#timer = setInterval(() => void this.#write(), Math.max(200, (ttlSec * 1000) / 3));
    this.#timer.unref();
  }

  static async start(nc: NatsConnection, bucket: string, nodeId: string, ttlSec: number, list: () => SessionInfo[], log: Logger, where: { js?: JetStreamOptions; storage?: { replicas: number; placement?: Placement } } = {}): Promise<Presence> {
    // In the JetStream domain (or API prefix) and with the replicas and placement configured.
    const kv = await new Kvm(jetstream(nc, where.js ?? {})).create(bucket, { ttl: ttlSec * 1000, history: 1, ...where.storage });
    const p = new Presence(kv, nodeId, ttlSec, list, log);
    await p.#write();
    return p;
  }

  /** Sessions changed on this node: rewrite its key soon (changes within 50 ms coalesce). */
  changed(): void {
    if (this.#dirty || this.#stopped) return;
    this.#dirty = setTimeout(() => {
      this.#dirty = undefined;
      void this.#write();
    }, 50);
  }

  async #write(): Promise<void> {
    if (this.#stopped) return;
    try {
      await this.#kv.put(this.#nodeId, JSON.stringify({ node: this.#nodeId, at: Date.now(), sessions: this.#list() }));
    } catch (err) {
      this.#log.debug({ err: (err as Error).message }, 'presence write failed (NATS unavailable?)');
    }
  }

  /** Every session of every live node. */
  async list(): Promise<ClusterSession[]> {
    const out: ClusterSession[] = [];
    for await (const key of await this.#kv.keys()) {
      const e = await this.#kv.get(key);
      if (!e || e.operation !== 'PUT' || e.length === 0) continue;
      const v = e.json<{ node: string; sessions: SessionInfo[] }>();
      for (const s of v.sessions) out.push({ ...s, node: v.node });
    }
    return out;
  }

  /** The node that holds a session, if any live node does. */
  async find(sessionId: string): Promise<string | undefined> {
    return (await this.list()).find((s) => s.id === sessionId)?.node;
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    clearInterval(this.#timer);
    clearTimeout(this.#dirty);
    await this.#kv.delete(this.#nodeId).catch(() => {});
  }
}
