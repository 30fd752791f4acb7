// Replicas and placement of the JetStream state the gateway keeps (the history stream, the
// presence bucket). With one replica, losing the one server that holds it loses history or
// presence, so the default is 3 where the JetStream cluster can place 3 (NATS_JS_REPLICAS=0).
// Whether it can is asked of JetStream itself, once, by creating and deleting a tiny in-memory
// probe stream: server INFO describes the server the node dialled, which is not the cluster that
// holds the state when NATS_JS_DOMAIN points across a leafnode. The probe also checks an explicit
// NATS_JS_REPLICAS and the placement settings, so a number or a placement JetStream cannot honour
// stops startup naming the setting instead of failing inside every later create. With the
// default, state that already has more replicas keeps them when the probe cannot place 3 at the
// moment (a server down, JetStream slow to answer): a node starting during an outage must not
// scale the shared history and presence down to one server.
import { jetstreamManager, JetStreamApiError, StorageType } from '@nats-io/jetstream';
import type { JetStreamManager, JetStreamOptions, Placement, StreamConfig } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import type { Logger } from '../observability/logger.ts';

export interface PlacementSettings {
  /** 0: 3 where the JetStream cluster can place 3, else 1. */
  jsReplicas?: number | undefined;
  jsPlacementCluster?: string | undefined;
  jsPlacementTags?: string[] | undefined;
}

/** JetStream's answer to a stream create, reduced to what placement needs. */
type Verdict = 'ok' | 'not_clustered' | 'no_peers' | { refused: string };

// JetStream API error codes (nats-server): replicas > 1 without clustering; no peers for placement.
const NOT_CLUSTERED = 10074;
const NO_SUITABLE_PEERS = 10005;
const INSUFFICIENT_RESOURCES = 10023;

/** A replica count or placement JetStream cannot honour: startup stops, naming the setting. */
export class PlacementError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PlacementError';
  }
}

export class JetStreamPlacement {
  #nc: NatsConnection;
  #jsOptions: () => JetStreamOptions;
  #settings: PlacementSettings;
  #probeName: string;
  #log: Logger;
  #resolved: Promise<number> | undefined;
  /** The streams holding the gateway's state (history stream, presence bucket's). */
  #state: string[] = [];
  /** The replica count in use, once known. */
  replicas: number | undefined;
  /** Where the state lives, for messages: the JetStream domain or API prefix and its setting. */
  readonly where: string;

  constructor(nc: NatsConnection, jsOptions: () => JetStreamOptions, settings: PlacementSettings, probeName: string, where: string, log: Logger) {
    this.#nc = nc;
    this.#jsOptions = jsOptions;
    this.#settings = settings;
    this.#probeName = probeName;
    this.where = where;
    this.#log = log;
  }

  get placement(): Placement | undefined {
    const cluster = this.#settings.jsPlacementCluster;
    const tags = this.#settings.jsPlacementTags ?? [];
    if (!cluster && tags.length === 0) return undefined;
    return { cluster: cluster ?? '', tags };
  }

  /** `num_replicas` and `placement` for a stream config (the history stream). */
  async stream(): Promise<{ num_replicas: number; placement?: Placement }> {
    const replicas = await this.resolve();
    const placement = this.placement;
    return placement ? { num_replicas: replicas, placement } : { num_replicas: replicas };
  }

  /** `replicas` and `placement` for a KV bucket (the presence bucket). */
  async kv(): Promise<{ replicas: number; placement?: Placement }> {
    const replicas = await this.resolve();
    const placement = this.placement;
    return placement ? { replicas, placement } : { replicas };
  }

  /**
   * The replica count, found once. Rejects with PlacementError when the settings cannot be
   * honoured; with another error (JetStream unavailable) it is asked again next time. `state`
   * names the streams that hold the gateway's state (kept for later calls): with
   * NATS_JS_REPLICAS=0 they are never placed on fewer replicas than they already have.
   */
  resolve(state?: string[]): Promise<number> {
    if (state) this.#state = state;
    this.#resolved ??= this.#resolve().then((r) => {
      this.replicas = r;
      return r;
    }, (e: unknown) => {
      if (!(e instanceof PlacementError)) this.#resolved = undefined;
      throw e;
    });
    return this.#resolved;
  }

  async #resolve(): Promise<number> {
    const jsm = await jetstreamManager(this.#nc, this.#jsOptions());
    const want = this.#settings.jsReplicas ?? 0;
    const placed = this.placement ? ` with placement ${JSON.stringify(this.placement)} (NATS_JS_PLACEMENT_CLUSTER, NATS_JS_PLACEMENT_TAGS)` : '';
    const three = await this.#probe(jsm, want >= 2 ? want : 3);
    // The default never scales existing state down (to 1 when the probe fails during an outage,
    // nor an operator's 5 to 3).
    const existing = want === 0 ? await this.#existingReplicas(jsm) : 1;
    let replicas: number;
    if (existing > (three === 'ok' ? 3 : 1)) {
      replicas = existing;
      if (three !== 'ok') this.#log.warn({ replicas, err: typeof three === 'object' ? three.refused : three, streams: this.#state }, `JetStream cannot place 3 replicas now: keeping the ${existing} the existing history stream or presence bucket has`);
    } else if (typeof three === 'object') {
      // JetStream refused the probe for another reason (an account allowed only its own stream
      // names, say): nothing learnt, so the setting (or 1) is used and the creates will tell.
      replicas = want || 1;
      this.#log.warn({ replicas, err: three.refused }, `could not ask JetStream how many replicas it can place: using ${replicas}${want ? '' : '; set NATS_JS_REPLICAS (3 on a JetStream cluster)'}`);
    } else if (want >= 2) {
      if (three !== 'ok') {
        throw new PlacementError(`NATS_JS_REPLICAS=${want}: ${this.where} cannot place ${want} replicas${placed} (${three === 'not_clustered' ? 'JetStream is not clustered' : 'not enough servers with JetStream'})`);
      }
      replicas = want;
    } else if (three === 'ok') {
      replicas = want === 1 ? 1 : 3;
      if (want === 1) this.#log.warn({ replicas: 1, where: this.where }, 'NATS_JS_REPLICAS=1 on a JetStream cluster: the history stream and the presence bucket live on ONE server; losing it loses history or presence. Set NATS_JS_REPLICAS=3 (or 0).');
    } else {
      // One replica fits anywhere, unless the placement itself matches no server.
      if (this.placement && (await this.#probe(jsm, 1)) === 'no_peers') throw new PlacementError(`${this.where} has no server${placed}`);
      replicas = 1;
      // A JetStream that is not clustered takes any placement and ignores it: say so.
      if (three === 'not_clustered' && this.placement) this.#log.warn({ replicas: 1, placement: this.placement, where: this.where }, 'JetStream is not clustered: NATS_JS_PLACEMENT_CLUSTER and NATS_JS_PLACEMENT_TAGS do not apply; the history stream and the presence bucket live on the one server');
      if (three === 'no_peers') this.#log.warn({ replicas: 1, where: this.where }, 'the JetStream cluster cannot place 3 replicas: the history stream and the presence bucket live on ONE server; losing it loses history or presence. Give the cluster 3 JetStream servers.');
    }
    const domain = await jsm.getAccountInfo().then((a) => a.domain, () => undefined);
    this.#log.info({ replicas, placement: this.placement, domain: domain ?? null }, 'JetStream state (history stream, presence bucket) placed');
    return replicas;
  }

  /** The most replicas any existing state stream has (1 when none exists or none answers). */
  async #existingReplicas(jsm: JetStreamManager): Promise<number> {
    let most = 1;
    for (const name of this.#state) {
      const info = await jsm.streams.info(name).catch(() => undefined);
      most = Math.max(most, info?.config.num_replicas ?? 1);
    }
    return most;
  }

  /** Creates and deletes an empty in-memory stream with `replicas`; JetStream's verdict. */
  async #probe(jsm: JetStreamManager, replicas: number): Promise<Verdict> {
    const placement = this.placement;
    const config: Partial<StreamConfig> & { name: string } = {
      name: this.#probeName,
      subjects: [`_WSB_PROBE.${this.#probeName}`],
      storage: StorageType.Memory,
      num_replicas: replicas,
      max_msgs: 1,
      ...(placement ? { placement } : {}),
    };
    try {
      await jsm.streams.add(config);
    } catch (e) {
      const code = e instanceof JetStreamApiError ? e.code : undefined;
      if (code === NOT_CLUSTERED) return 'not_clustered';
      if (code === NO_SUITABLE_PEERS || code === INSUFFICIENT_RESOURCES) return 'no_peers';
      // Any other answer from JetStream is a refusal; so is no answer while JetStream answers
      // other requests (a permission violation is not answered). Unavailable: thrown.
      if (e instanceof JetStreamApiError) return { refused: e.message };
      await jsm.getAccountInfo().catch(() => {
        throw e;
      });
      return { refused: (e as Error).message };
    }
    await jsm.streams.delete(this.#probeName).catch((e: unknown) => this.#log.warn({ err: (e as Error).message, stream: this.#probeName }, 'could not delete the JetStream placement probe stream'));
    return 'ok';
  }

  /**
   * Brings an existing stream (the presence bucket's, which KV create leaves as it was) to the
   * replica count in use, never down with NATS_JS_REPLICAS=0; logs and leaves it when JetStream
   * refuses.
   */
  async ensure(stream: string): Promise<void> {
    const replicas = await this.resolve();
    const jsm = await jetstreamManager(this.#nc, this.#jsOptions());
    const info = await jsm.streams.info(stream);
    if (info.config.num_replicas === replicas || (!this.#settings.jsReplicas && info.config.num_replicas > replicas)) return;
    try {
      await jsm.streams.update(stream, { ...info.config, num_replicas: replicas });
      this.#log.info({ stream, from: info.config.num_replicas, to: replicas }, 'JetStream replicas changed');
    } catch (e) {
      this.#log.warn({ stream, replicas: info.config.num_replicas, want: replicas, err: (e as Error).message }, 'could not change the replicas of a JetStream stream');
    }
  }
}
