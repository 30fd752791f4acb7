// Who may open a session and what it may do. A static token (AUTH_TOKEN in server mode) or a
// JWT verified with jose (HS256 secret, a PEM public key for RS256/ES256/EdDSA, or a JWKS file or
// URL). JWT claims `pub` and `subs` (arrays of subject patterns) limit publishing and subscribing;
// `exp` ends the session with 1008 unless a new token arrives in-band first.
import { readFileSync } from 'node:fs';
import { createPublicKey } from 'node:crypto';
import { jwtVerify, createLocalJWKSet, createRemoteJWKSet, errors } from 'jose';
import type { JWTVerifyGetKey, KeyObject } from 'jose';
import { SubjectTrie } from '../bus/subject-trie.ts';
import { patternCovers } from '../protocol/subject.ts';
import { secretMatches } from './secret.ts';
import { ConfigError } from '../config/load.ts';
import type { Logger } from '../observability/logger.ts';

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
  /** The JWT's `info` claim (any JSON), shown to others in presence per subject. */
  info?: unknown;
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
  /** REQUIRE_JWT_EXP: refuse JWTs without `exp`. */
  requireExp: boolean;
  /** JWT_MAX_LIFETIME_SEC (0: none): refuse JWTs whose `exp` lies further than this after `iat`. */
  maxLifetimeSec: number;
}

export interface Authenticator {
  verify(token: string): Promise<Identity>;
}

function patterns(claim: unknown, name: string): Permission | null {
  if (claim === undefined) return null;
  if (!Array.isArray(claim) || !claim.every((p) => typeof p === 'string')) throw new AuthError(`claim ${name} must be an array of subject patterns`);
  return new Permission(claim as string[]);
}

type JwtKey = { key: Uint8Array | KeyObject | JWTVerifyGetKey; algorithms: string[]; remote: boolean };

/**
 * The JWT verification key of the configuration, or undefined without JWTs. A key file that
 * cannot be read or parsed is a ConfigError naming the setting (found at startup, exit 2).
 */
export function jwtKey(c: AuthConfig): JwtKey | undefined {
  if (c.jwtSecret !== undefined) return { key: new TextEncoder().encode(c.jwtSecret), algorithms: ['HS256'], remote: false };
  const asymmetric = ['RS256', 'ES256', 'EdDSA'];
  const read = (setting: string, file: string): string => {
    try {
      return readFileSync(file, 'utf8');
    } catch (e) {
      throw new ConfigError(`${setting}: cannot read ${file} (${(e as NodeJS.ErrnoException).code ?? String(e)})`);
    }
  };
  if (c.jwtPublicKeyFile !== undefined) {
    const pem = read('JWT_PUBLIC_KEY_FILE', c.jwtPublicKeyFile);
    try {
      return { key: createPublicKey(pem) as unknown as KeyObject, algorithms: asymmetric, remote: false };
    } catch (e) {
      throw new ConfigError(`JWT_PUBLIC_KEY_FILE: ${c.jwtPublicKeyFile} is not a PEM public key (${(e as Error).message})`);
    }
  }
  if (c.jwks !== undefined) {
    if (/^https?:\/\//.test(c.jwks)) {
      try {
        return { key: createRemoteJWKSet(new URL(c.jwks)), algorithms: asymmetric, remote: true };
      } catch (e) {
        throw new ConfigError(`JWT_JWKS: ${c.jwks} is not a usable URL (${(e as Error).message})`);
      }
    }
    const text = read('JWT_JWKS', c.jwks);
    try {
      const set = JSON.parse(text) as { keys?: unknown };
      if (!Array.isArray(set.keys) || set.keys.length === 0) throw new Error('expected {"keys":[…]} with at least one key');
      return { key: createLocalJWKSet(set as Parameters<typeof createLocalJWKSet>[0]), algorithms: asymmetric, remote: false };
    } catch (e) {
      throw new ConfigError(`JWT_JWKS: ${c.jwks} is not a JWKS file (${(e as Error).message})`);
    }
  }
  return undefined;
}

/** Errors that say the token is bad, as opposed to the key source (a JWKS URL) failing. */
const TOKEN_FAULTS = [errors.JWSInvalid, errors.JWTInvalid, errors.JWSSignatureVerificationFailed, errors.JWTExpired, errors.JWTClaimValidationFailed, errors.JOSEAlgNotAllowed, errors.JOSENotSupported, errors.JWKSNoMatchingKey, errors.JWKSMultipleMatchingKeys, errors.JWKInvalid];
function tokenFault(err: unknown): boolean {
  return err instanceof AuthError || TOKEN_FAULTS.some((E) => err instanceof E);
}

/** Builds the configured authenticator, or undefined when authentication is off. */
export function createAuthenticator(c: AuthConfig, log?: Logger): Authenticator | undefined {
  const verifiers: Array<(t: string) => Promise<Identity | undefined>> = [];
  if (c.token !== undefined) {
    const want = c.token;
    verifiers.push(async (t) => (secretMatches(t, want) ? { subject: 'token', principal: undefined, expiresAt: undefined, publish: null, subscribe: null } : undefined));
  }
  if (c.tokens !== undefined && c.tokens.length > 0) {
    const entries = c.tokens.map((e) => ({
      token: e.token,
      identity: { subject: e.name, principal: `token:${e.name}`, expiresAt: undefined, publish: e.pub ? new Permission(e.pub) : null, subscribe: e.subs ? new Permission(e.subs) : null } satisfies Identity,
    }));
    verifiers.push(async (t) => {
      // Every entry is compared, in constant time, whichever matches.
      let found: Identity | undefined;
      for (const e of entries) if (secretMatches(t, e.token) && found === undefined) found = e.identity;
      return found;
    });
  }
  const jwt = jwtKey(c);
  if (jwt !== undefined) {
    const { key, algorithms, remote } = jwt;
    // A JWKS URL that cannot be fetched refuses every JWT: say so, at most once every 10 s.
    let lastFetchLog = 0;
    let unlogged = 0;
    verifiers.push(async (t) => {
      if (t.split('.').length !== 3) return undefined;
      try {
        const { payload } = await jwtVerify(t, key as Parameters<typeof jwtVerify>[1], {
          algorithms,
          ...(c.jwtIssuer ? { issuer: c.jwtIssuer } : {}),
          ...(c.jwtAudience ? { audience: c.jwtAudience } : {}),
          ...(c.requireExp || c.maxLifetimeSec > 0 ? { requiredClaims: ['exp'] } : {}),
        });
        if (c.maxLifetimeSec > 0) {
          // Counted from iat, or from now when iat is absent or in the future.
          const now = Date.now() / 1000;
          const from = Math.min(typeof payload.iat === 'number' ? payload.iat : now, now);
          if (payload.exp! - from > c.maxLifetimeSec) return undefined;
        }
        return {
          subject: typeof payload.sub === 'string' ? payload.sub : 'jwt',
          principal: typeof payload.sub === 'string' ? `jwt:${typeof payload.iss === 'string' ? payload.iss : ''}:${payload.sub}` : undefined,
          expiresAt: typeof payload.exp === 'number' ? payload.exp * 1000 : undefined,
          publish: patterns(payload.pub, 'pub'),
          subscribe: patterns(payload.subs, 'subs'),
          ...(payload.info !== undefined ? { info: payload.info } : {}),
        };
      } catch (err) {
        if (remote && !tokenFault(err)) {
          const now = Date.now();
          if (now - lastFetchLog >= 10_000) {
            log?.error({ err: (err as Error).message, jwks: c.jwks, suppressed: unlogged }, 'JWKS fetch failed: JWTs cannot be verified (JWT_JWKS)');
            lastFetchLog = now;
            unlogged = 0;
          } else unlogged++;
        }
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
