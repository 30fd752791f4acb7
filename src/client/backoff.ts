// When a client-mode link dials again after a failure, and when it gives up. Exponential backoff
// with full jitter (the delay is drawn from [0, d], d = min(max, base × 2^(failures-1))), so a fleet
// of gateways does not reconnect in lockstep; a connection counts as a success only once it has
// stayed open for RECONNECT_STABLE_SEC, so a remote that accepts and closes at once cannot make
// the link spin; permanent refusals (401, 403, close 1008) follow PERMANENT_FAILURE_POLICY; a
// Retry-After from the server is honoured.

/** Full jitter: a random delay in [0, min(max, base × 2^attempt)]. */
export function backoffDelay(attempt: number, baseMs: number, maxMs: number, random: () => number = Math.random): number {
  const d = Math.min(maxMs, baseMs * 2 ** Math.min(attempt, 30));
  return Math.round(random() * d);
}

/** A Retry-After longer than this is cut to it: a server cannot park a link for days. */
export const RETRY_AFTER_CAP_MS = 3_600_000;

/** Retry-After (delay-seconds or an HTTP-date) in ms from `now`; undefined when absent or unreadable. */
export function parseRetryAfter(value: string | string[] | undefined, now = Date.now()): number | undefined {
  const v = Array.isArray(value) ? value[0] : value;
  if (v === undefined) return undefined;
  const t = v.trim();
  if (/^\d+$/.test(t)) return Math.min(Number(t) * 1000, RETRY_AFTER_CAP_MS);
  const at = Date.parse(t);
  if (Number.isNaN(at)) return undefined;
  return Math.min(Math.max(0, at - now), RETRY_AFTER_CAP_MS);
}

export interface ReconnectSettings {
  baseMs: number;
  maxMs: number;
  /** Consecutive failures after which the link gives up; 0: never. */
  maxAttempts: number;
  /** How long a connection must stay open to count as a success (resets the failures). */
  stableMs: number;
  /** What a permanent refusal (401, 403, close 1008) does: wait RECONNECT_MAX_MS, or give up. */
  onPermanent: 'retry' | 'give_up';
}

export interface Failure {
  /** 401 or 403 at the handshake, or close 1008 from the server. */
  permanent: boolean;
  /** The server's Retry-After, in ms. */
  retryAfterMs?: number | undefined;
}

export type NextStep = { retryInMs: number } | { giveUp: string };

/** The reconnect decisions of one link: consecutive failures, and what follows each. */
export class ReconnectPolicy {
  #s: ReconnectSettings;
  #failures = 0;
  #random: () => number;

  constructor(settings: ReconnectSettings, random: () => number = Math.random) {
    this.#s = settings;
    this.#random = random;
  }

  /** Consecutive failed attempts (connections that did not stay open RECONNECT_STABLE_SEC count). */
  get failures(): number {
    return this.#failures;
  }

  /** The connection stayed open long enough: it was a success. */
  stable(): void {
    this.#failures = 0;
  }

  /** A connection that had been stable closed: dial again soon (the first backoff step). */
  afterStableClose(): NextStep {
    return { retryInMs: backoffDelay(0, this.#s.baseMs, this.#s.maxMs, this.#random) };
  }

  /** An attempt failed (or closed before it was stable): the delay before the next, or give up. */
  failed(f: Failure): NextStep {
    this.#failures++;
    const s = this.#s;
    if (f.permanent && s.onPermanent === 'give_up') return { giveUp: 'the server refused the link permanently (PERMANENT_FAILURE_POLICY=give_up)' };
    if (s.maxAttempts > 0 && this.#failures >= s.maxAttempts) return { giveUp: `${this.#failures} consecutive failed attempts (RECONNECT_MAX_ATTEMPTS=${s.maxAttempts})` };
    const delay = f.permanent ? s.maxMs : backoffDelay(this.#failures - 1, s.baseMs, s.maxMs, this.#random);
    return { retryInMs: Math.max(delay, f.retryAfterMs ?? 0) };
  }
}
