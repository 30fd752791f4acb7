// Subject syntax: NATS token rules, so a subject means the same thing on the in-memory bus and on
// NATS. Tokens are separated by '.', may not be empty, and may contain no whitespace, control or
// invisible formatting characters (any Unicode Cc, Cf, Z* or lone surrogate: U+0085, U+00A0,
// U+2028, U+200B and U+3000 are refused like a space, so two subjects that look alike are alike).
// `*` (one token) and `>` (one or more trailing tokens) are wildcards, allowed only in
// subscriptions, and only as whole tokens; `>` only as the last token.
//
// What a subject may be USED for (reserved namespaces, reply capabilities, permissions) is decided
// in src/security/subject-policy.ts; this file is syntax only.

export const MAX_SUBJECT_LENGTH = 256;

/** Prefix of the gateway's own subjects (reply subjects, request inboxes, node channels). */
export const INTERNAL_PREFIX = '_WSB.';

// Checked only when a subject has a non-ASCII character (the ASCII loop below is the fast path).
const FORBIDDEN_UNICODE = /[\p{Cc}\p{Cf}\p{Z}\p{Cs}]/u;

/** Returns null when `subject` is valid, else a human-readable reason. */
export function subjectError(subject: unknown, allowWildcards: boolean): string | null {
  if (typeof subject !== 'string') return 'subject must be a string';
  const len = subject.length;
  if (len === 0) return 'subject must not be empty';
  if (len > MAX_SUBJECT_LENGTH) return `subject is longer than ${MAX_SUBJECT_LENGTH} characters`;
  let tokenStart = 0;
  let nonAscii = false;
  for (let i = 0; i <= len; i++) {
    const c = i === len ? 46 /* '.' */ : subject.charCodeAt(i);
    if (c === 46) {
      const tokenLen = i - tokenStart;
      if (tokenLen === 0) return 'subject has an empty token';
      if (tokenLen === 1) {
        const t = subject.charCodeAt(tokenStart);
        if (t === 42 /* * */ || t === 62 /* > */) {
          if (!allowWildcards) return 'wildcards (* and >) are only allowed in subscriptions';
          if (t === 62 && i !== len) return "'>' must be the last token";
        }
      }
      tokenStart = i + 1;
      continue;
    }
    if (c > 127) {
      nonAscii = true;
      continue;
    }
    // Control characters, space and DEL are not allowed anywhere.
    if (c <= 32 || c === 127) return 'subject must not contain whitespace or control characters';
    if (c === 42 || c === 62) {
      // A wildcard character inside a longer token ("a*", "*b") is not a wildcard and is refused
      // so that nobody thinks it is one.
      const next = i + 1 < len ? subject.charCodeAt(i + 1) : 46;
      if (i !== tokenStart || next !== 46) return "'*' and '>' may only be used as whole tokens";
    }
  }
  if (nonAscii && FORBIDDEN_UNICODE.test(subject)) return 'subject must not contain whitespace, control or invisible formatting characters';
  return null;
}

/** Whether every subject `inner` can match is also matched by `outer` (both patterns). */
export function patternCovers(outer: string, inner: string): boolean {
  const o = outer.split('.');
  const i = inner.split('.');
  for (let k = 0; k < o.length; k++) {
    if (o[k] === '>') return k < i.length;
    if (k >= i.length || i[k] === '>') return false;
    if (o[k] !== '*' && o[k] !== i[k]) return false;
  }
  return o.length === i.length;
}

/** Whether some subject matches both patterns. */
export function patternsIntersect(a: string, b: string): boolean {
  const x = a.split('.');
  const y = b.split('.');
  for (let k = 0; ; k++) {
    // `>` stands for one or more tokens: it meets anything that still has a token here.
    if (x[k] === '>') return k < y.length;
    if (y[k] === '>') return k < x.length;
    if (k >= x.length || k >= y.length) return x.length === y.length;
    if (x[k] !== '*' && y[k] !== '*' && x[k] !== y[k]) return false;
  }
}

/** Whether the literal `subject` matches `pattern` (NATS rules). */
export function subjectMatches(pattern: string, subject: string): boolean {
  return patternCovers(pattern, subject);
}
