// Secrets (the admin and metrics tokens, the static session token) are compared in constant
// time: both sides are hashed to SHA-256 first, so neither the content nor the length of the
// expected secret leaks through how long a comparison takes.
import { createHash, timingSafeEqual } from 'node:crypto';

const digest = (s: string): Buffer => createHash('sha256').update(s).digest();

/** Whether `given` equals `expected`, in time independent of either. */
export function secretMatches(given: string, expected: string): boolean {
  return timingSafeEqual(digest(given), digest(expected));
}

/** Whether an Authorization header is `Bearer <expected>` (compared in constant time). */
export function bearerMatches(header: string | undefined, expected: string): boolean {
  const m = /^Bearer (.+)$/.exec(header ?? '');
  // A missing header still costs one comparison, like a wrong one.
  return secretMatches(m?.[1] ?? '', expected) && m !== null;
}
