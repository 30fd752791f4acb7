// Whether a clustered node can serve everything, checked every second so that /readyz is honest
// within about two seconds: NATS connected and answering (a PING round trip: a frozen or
// partitioned server stops answering long before the client's own ping timer notices),
// JetStream answering, the history stream present (made again if JetStream lost it) with this
// node's configuration, and the presence buckets present with this node's heartbeat written.
// The checks run one after another, each bounded by a one-second deadline, never overlapping.
import type { NatsConnection } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import type { JetStreamManager } from '@nats-io/jetstream';
import type { JetStreamHistory } from '../bus/jetstream-history.ts';
import type { Presence } from './presence.ts';
import type { Logger } from '../observability/logger.ts';

/** How often the checks run, and how long each may take. */
export const READINESS_INTERVAL_MS = 1000;
export const CHECK_TIMEOUT_MS = 1000;

export type CheckName = 'nats' | 'jetstream' | 'history' | 'presence';

export interface CheckState {
  ok: boolean;
  /** 'ok', or what is wrong. */
  detail: string;
}

function deadline<T>(p: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<T>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what} did not answer within ${CHECK_TIMEOUT_MS} ms`)), CHECK_TIMEOUT_MS);
    }),
  ]);
}

export class ClusterReadiness {
  readonly checks = new Map<CheckName, CheckState>();
  #nc: NatsConnection;
  #connected: () => boolean;
  #history: JetStreamHistory | undefined;
  #presence: Presence;
  #log: Logger;
  #jsm: JetStreamManager | undefined;
  #timer: NodeJS.Timeout | undefined;
  #running = false;
  #stopped = false;
  /** A PING still unanswered from an earlier round: the server is not answering. */
  #flushing: Promise<void> | undefined;

  constructor(nc: NatsConnection, connected: () => boolean, history: JetStreamHistory | undefined, presence: Presence, log: Logger) {
    this.#nc = nc;
    this.#connected = connected;
    this.#history = history;
    this.#presence = presence;
    this.#log = log;
    this.checks.set('nats', { ok: connected(), detail: connected() ? 'ok' : 'disconnected' });
    this.checks.set('jetstream', { ok: true, detail: 'ok' });
    if (history) this.checks.set('history', { ok: true, detail: 'ok' });
    this.checks.set('presence', { ok: presence.healthy, detail: presence.healthy ? 'ok' : (presence.problem ?? 'not started') });
  }

  start(): void {
    this.#timer = setInterval(() => void this.run(), READINESS_INTERVAL_MS);
    this.#timer.unref();
  }

  get ready(): boolean {
    for (const c of this.checks.values()) if (!c.ok) return false;
    return true;
  }

  #set(name: CheckName, ok: boolean, detail: string): void {
    const was = this.checks.get(name);
    this.checks.set(name, { ok, detail: ok ? 'ok' : detail });
    if (was && was.ok !== ok) {
      if (ok) this.#log.info({ check: name }, 'readiness check passes again');
      else this.#log.warn({ check: name, detail }, 'readiness check fails: not ready');
    }
  }

  /** One round of checks (exposed for tests); rounds never overlap. */
  async run(): Promise<void> {
    if (this.#running || this.#stopped) return;
    this.#running = true;
    try {
      if (!this.#connected()) {
        this.#set('nats', false, 'disconnected');
        this.#set('jetstream', false, 'NATS disconnected');
        if (this.#history) this.#set('history', false, 'NATS disconnected');
        this.#set('presence', false, 'NATS disconnected');
        return;
      }
      try {
        this.#flushing ??= this.#nc.flush().finally(() => (this.#flushing = undefined));
        await deadline(this.#flushing, 'NATS (PING)');
        this.#set('nats', true, 'ok');
      } catch (err) {
        this.#set('nats', false, `not responding: ${(err as Error).message}`);
        this.#set('jetstream', false, 'NATS not responding');
        if (this.#history) this.#set('history', false, 'NATS not responding');
        this.#set('presence', false, 'NATS not responding');
        return;
      }
      if (this.#history) {
        try {
          const h = await deadline(this.#history.check(), 'JetStream (history stream)');
          this.#set('jetstream', !h.problem?.startsWith('JetStream did not answer'), h.problem ?? 'ok');
          this.#set('history', h.ok, h.problem ?? 'ok');
        } catch (err) {
          this.#set('jetstream', false, (err as Error).message);
          this.#set('history', false, (err as Error).message);
        }
      } else {
        try {
          this.#jsm ??= await jetstreamManager(this.#nc, { timeout: CHECK_TIMEOUT_MS });
          await deadline(this.#jsm.getAccountInfo(), 'JetStream');
          this.#set('jetstream', true, 'ok');
        } catch (err) {
          this.#set('jetstream', false, (err as Error).message);
        }
      }
      try {
        const ok = await deadline(this.#presence.check(), 'presence');
        this.#set('presence', ok, this.#presence.problem ?? 'unavailable');
      } catch (err) {
        this.#set('presence', false, (err as Error).message);
      }
    } finally {
      this.#running = false;
    }
  }

  stop(): void {
    this.#stopped = true;
    clearInterval(this.#timer);
  }
}
