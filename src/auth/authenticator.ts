// Who may open a session and what it may do. A static token (AUTH_TOKEN in server mode) or a
// JWT verified with jose (HS256 secret, a PEM public key for RS256/ES256/EdDSA, or a JWKS file or
// URL). JWT claims `pub` and `subs` (arrays of subject patterns) limit publishing and subscribing;
// `exp` ends the session with 1008 unless a new token arrives in-band first.
import { readFileSync } from 'node:fs';
import { createPublicKey, createHash, timingSafeEqual } from 'node:crypto';
import { jwtVerify, createLocalJWKSet, createRemoteJWKSet } from 'jose';
import type { JWTVerifyGetKey, KeyObject } from 'jose';
import { SubjectTrie } from '../bus/subject-trie.ts';
import { patternCovers } from '../protocol/subject.ts';

export interface Identity {
  /** Who, for logs: the JWT `sub`, a token's name, or "token". */
  subject: string;
  /**
   * Whose durable cursors the session uses: `jwt:<iss>:<sub>` for a JWT with `sub`, `token:<name>`
   * for a named token (config file `tokens`); undefined (the session alone) otherwise.
   */
  principal: string | undefined;
  /** Epoch milliseconds when the credential expires, if it does. */
  expiresAt: number | undefined;
  /** null: anything. */
  publish: Permission | null;
  subscribe: Permission | null;
}

/** A set of allowed subject patterns. */
export class Permission {
  readonly patterns: string[];
  #trie = new SubjectTrie<true>();
  constructor(patterns: string[]) {
    this.patterns = patterns;
    for (const p of patterns) this.#trie.insert(p, true);
  }
  /** A literal subject (publish) is allowed when a pattern matches it. */
  allowsSubject(subject: string): boolean {
    return this.#trie.match(subject).length > 0;
  }
  /** A subscription pattern is allowed when an allowed pattern covers all it can match. */
  allowsPattern(pattern: string): boolean {
    return this.patterns.some((p) => patternCovers(p, pattern));
  }
}

export class AuthError extends Error {}

/** A static token with a name and its own permissions (config file `tokens`). */
export interface NamedToken {
  name: string;
  token: string;
  /** Subject patterns it may publish (and request) to; undefined: anything. */
  pub: string[] | undefined;
  /** Subject patterns it may subscribe to; undefined: anything. */
  subs: string[] | undefined;
}

export interface AuthConfig {
  token: string | undefined;
  /** Named static tokens with permissions. */
  tokens?: NamedToken[] | undefined;
  jwtSecret: string | undefined;
  jwtPublicKeyFile: string | undefined;
  jwks: string | undefined;
  jwtIssuer: string | undefined;
  jwtAudience: string | undefined;
}

export interface Authenticator {
  verify(token: string): Promise<Identity>;
}

function patterns(claim: unknown, name: string): Permission | null {
  if (claim === undefined) return null;
  if (!Array.isArray(claim) || !claim.every((p) => typeof p === 'string')) throw new AuthError(`claim ${name} must be an array of subject patterns`);
  return new Permission(claim as string[]);
}

/** Builds the configured authenticator, or undefined when authentication is off. */
export function createAuthenticator(c: AuthConfig): Authenticator | undefined {
  const verifiers: Array<(t: string) => Promise<Identity | undefined>> = [];
  if (c.token !== undefined) {
    const want = createHash('sha256').update(c.token).digest();
    verifiers.push(async (t) => (timingSafeEqual(createHash('sha256').update(t).digest(), want) ? { subject: 'token', principal: undefined, expiresAt: undefined, publish: null, subscribe: null } : undefined));
  }
  if (c.tokens !== undefined && c.tokens.length > 0) {
    const entries = c.tokens.map((e) => ({
      digest: createHash('sha256').update(e.token).digest(),
      identity: { subject: e.name, principal: `token:${e.name}`, expiresAt: undefined, publish: e.pub ? new Permission(e.pub) : null, subscribe: e.subs ? new Permission(e.subs) : null } satisfies Identity,
    }));
    verifiers.push(async (t) => {
      // Every entry is compared, in constant time, whichever matches.
      const given = createHash('sha256').update(t).digest();
      let found: Identity | undefined;
      for (const e of entries) if (timingSafeEqual(given, e.digest) && found === undefined) found = e.identity;
      return found;
    });
  }
  let key: Uint8Array | KeyObject | JWTVerifyGetKey | undefined;
  let algorithms: string[] = [];
  if (c.jwtSecret !== undefined) {
    key = new TextEncoder().encode(c.jwtSecret);
    algorithms = ['HS256'];
  } else if (c.jwtPublicKeyFile !== undefined) {
    key = createPublicKey(readFileSync(c.jwtPublicKeyFile)) as unknown as KeyObject;
    algorithms = ['RS256', 'ES256', 'EdDSA'];
  } else if (c.jwks !== undefined) {
    key = /^https?:\/\//.test(c.jwks) ? createRemoteJWKSet(new URL(c.jwks)) : createLocalJWKSet(JSON.parse(readFileSync(c.jwks, 'utf8')));
    algorithms = ['RS256', 'ES256', 'EdDSA'];
  }
  if (key !== undefined) {
    const k = key;
    verifiers.push(async (t) => {
      if (t.split('.').length !== 3) return undefined;
      try {
        const { payload } = await jwtVerify(t, k as Parameters<typeof jwtVerify>[1], {
          algorithms,
          ...(c.jwtIssuer ? { issuer: c.jwtIssuer } : {}),
          ...(c.jwtAudience ? { audience: c.jwtAudience } : {}),
        });
        return {
          subject: typeof payload.sub === 'string' ? payload.sub : 'jwt',
          principal: typeof payload.sub === 'string' ? `jwt:${typeof payload.iss === 'string' ? payload.iss : ''}:${payload.sub}` : undefined,
          expiresAt: typeof payload.exp === 'number' ? payload.exp * 1000 : undefined,
          publish: patterns(payload.pub, 'pub'),
          subscribe: patterns(payload.subs, 'subs'),
        };
      } catch {
        return undefined;
      }
    });
  }
  if (verifiers.length === 0) return undefined;
  return {
    async verify(token: string): Promise<Identity> {
      for (const v of verifiers) {
        const id = await v(token);
        if (id) return id;
      }
      throw new AuthError('invalid credentials');
    },
  };
}
