// Per-IP throttles in front of the WebSocket upgrade, so that a static token or a JWT secret
// cannot be guessed at line rate and one address cannot open connections as fast as it can:
//   - HANDSHAKE_RATE_PER_IP: a token bucket of upgrades per second (bursts up to one second's worth);
//   - AUTH_FAILURE_BACKOFF_MS: after FREE_FAILURES failed authentications, the address is shut
//     out for the backoff, doubled per further failure up to MAX_BACKOFF_MS; the count is
//     forgotten FORGET_MS after the last failure.
// Both answer 429 with Retry-After. The state per address is one small object in a map bounded
// by MAX_TRACKED (least recently seen first out), swept of stale entries by the sweepers.

export const FREE_FAILURES = 5;
export const MAX_BACKOFF_MS = 5 * 60_000;
export const FORGET_MS = 10 * 60_000;
const MAX_TRACKED = 100_000;

interface PerIp {
  tokens: number;
  refilledAt: number;
  failures: number;
  lastFailure: number;
  blockedUntil: number;
}

export interface ThrottleStats {
  /** Upgrades refused by HANDSHAKE_RATE_PER_IP. */
  rateLimited: number;
  /** Upgrades refused while the address is in its failed-authentication backoff. */
  authBackoff: number;
}

export type Verdict = { ok: true } | { ok: false; reason: 'rate' | 'auth_backoff'; retryAfterSec: number };

export class HandshakeThrottle {
  readonly stats: ThrottleStats = { rateLimited: 0, authBackoff: 0 };
  #rate: number;
  #backoffMs: number;
  #ips = new Map<string, PerIp>();

  constructor(ratePerSec: number, backoffMs: number) {
    this.#rate = ratePerSec;
    this.#backoffMs = backoffMs;
  }

  get enabled(): boolean {
    return this.#rate > 0 || this.#backoffMs > 0;
  }

  /** Tracked addresses (bounded by MAX_TRACKED). */
  get tracked(): number {
    return this.#ips.size;
  }

  #entry(ip: string, now: number): PerIp {
    let e = this.#ips.get(ip);
    if (e) {
      // Most recently seen last: the map's first entry is the one to evict.
      this.#ips.delete(ip);
    } else {
      e = { tokens: this.#rate, refilledAt: now, failures: 0, lastFailure: 0, blockedUntil: 0 };
      if (this.#ips.size >= MAX_TRACKED) this.#ips.delete(this.#ips.keys().next().value!);
    }
    this.#ips.set(ip, e);
    return e;
  }

  /** Called for every upgrade before anything else is done for it. */
  admit(ip: string, now = Date.now()): Verdict {
    if (!this.enabled) return { ok: true };
    // Without a rate limit only addresses that have failed are tracked.
    if (this.#rate === 0 && !this.#ips.has(ip)) return { ok: true };
    const e = this.#entry(ip, now);
    if (e.blockedUntil > now) {
      this.stats.authBackoff++;
      return { ok: false, reason: 'auth_backoff', retryAfterSec: Math.ceil((e.blockedUntil - now) / 1000) };
    }
    if (this.#rate > 0) {
      e.tokens = Math.min(this.#rate, e.tokens + ((now - e.refilledAt) / 1000) * this.#rate);
      e.refilledAt = now;
      if (e.tokens < 1) {
        this.stats.rateLimited++;
        return { ok: false, reason: 'rate', retryAfterSec: Math.max(1, Math.ceil((1 - e.tokens) / this.#rate)) };
      }
      e.tokens -= 1;
    }
    return { ok: true };
  }

  /** A failed authentication from `ip` (handshake token or first-frame auth). */
  failed(ip: string, now = Date.now()): void {
    if (this.#backoffMs === 0) return;
    const e = this.#entry(ip, now);
    if (now - e.lastFailure > FORGET_MS) e.failures = 0;
    e.failures++;
    e.lastFailure = now;
    if (e.failures > FREE_FAILURES) {
      const doublings = Math.min(e.failures - FREE_FAILURES - 1, 30);
      e.blockedUntil = now + Math.min(this.#backoffMs * 2 ** doublings, MAX_BACKOFF_MS);
    }
  }

  /** Forgets addresses with a full bucket, no block and no recent failure. */
  sweep(now = Date.now()): void {
    for (const [ip, e] of this.#ips) {
      const idle = this.#rate === 0 || now - e.refilledAt >= 1000;
      if (idle && e.blockedUntil <= now && now - e.lastFailure > FORGET_MS) this.#ips.delete(ip);
    }
  }
}
