// Exponential backoff with full jitter: attempt n waits a random time in [d/2, d], where
// d = min(max, base * 2^n). Jitter keeps a fleet of clients from reconnecting in lockstep.
export function backoffDelay(attempt: number, baseMs: number, maxMs: number, random: () => number = Math.random): number {
  const d = Math.min(maxMs, baseMs * 2 ** Math.min(attempt, 30));
  return Math.round(d / 2 + random() * (d / 2));
}
