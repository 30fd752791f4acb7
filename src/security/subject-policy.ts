// The one place that decides what a subject may be used for, and by whom. Every path that puts a
// subject on the bus or takes a subscription from outside calls it: server sessions (hub), frames
// from client-mode remotes (RemoteLink), components (their consumer imports), the operator API and
// the TypeScript API. docs/protocol.md, "Subjects, and who may use them", is the same model in prose.
//
// Three kinds of subject:
// - user subjects: everything below; clients publish and subscribe them within their permissions,
//   and on NATS they always live under NATS_PREFIX.
// - reply subjects: capabilities. A client or component may publish to one only if it was handed
//   it (it received a message carrying it as reply_to), within REPLY_GRANT_TTL_MS and at most
//   REPLY_GRANT_MAX_REPLIES times, like NATS's allow_responses. They carry ≥ 96 random bits.
// - reserved subjects: first token `_WSB` or `_INBOX`, or beginning with `$` (`$JS`, `$KV`, `$O`,
//   `$SYS`, …). Nobody outside the gateway publishes, subscribes or requests them directly, and no
//   wildcard subscription ever delivers them (the buses filter: see MemoryBus#deliver). Reply
//   subjects are reserved subjects that a grant opens, one at a time.
import { createHash } from 'node:crypto';
import type { Permission } from '../auth/authenticator.ts';

/** Session reply subjects: `_WSB.S.<node>.<128 random bits>` (one wildcard subscription per node). */
export const SESSION_REPLY_PREFIX = '_WSB.S.';
/** Request inboxes: `_WSB.R.<node>.<128 random bits>` (one wildcard subscription per node). */
export const INBOX_PREFIX = '_WSB.R.';
/** Client-mode reply routes: `_WSB.L.<link>.<128 random bits>`, answered back over that link. */
export const LINK_REPLY_PREFIX = '_WSB.L.';
/** A NATS subject outside NATS_PREFIX (a plain NATS client's inbox), seen as a wsbridge subject. */
export const RAW_PREFIX = '_WSB.RAW.';
/** Broadcasts: `_WSB.B.<subject>`, one subscription per node; each node answers how many sessions it reached. */
export const BROADCAST_PREFIX = '_WSB.B.';
/** Node control channels: `_WSB.N.<node>.<verb>` (send to a session, close one, broadcast reach). */
export const NODE_PREFIX = '_WSB.N.';
/**
 * Join and leave events of a subject's members: `_WSB.P.<subject>`. Only the gateway publishes
 * there; a client may subscribe to `_WSB.P.<pattern>` when it may subscribe to `<pattern>`.
 */
export const PRESENCE_PREFIX = '_WSB.P.';

const REPLY_PREFIXES = [SESSION_REPLY_PREFIX, INBOX_PREFIX, LINK_REPLY_PREFIX, RAW_PREFIX, '_INBOX.'];

/** Whether `subject` (or a pattern's first token) lies in reserved space. */
export function isReserved(subject: string): boolean {
  const c = subject.charCodeAt(0);
  if (c === 36 /* $ */) return true;
  if (c !== 95 /* _ */) return false;
  return firstTokenIs(subject, '_WSB') || firstTokenIs(subject, '_INBOX');
}

function firstTokenIs(subject: string, token: string): boolean {
  return subject.startsWith(token) && (subject.length === token.length || subject.charCodeAt(token.length) === 46);
}

/** Whether `subject` has the shape of a reply subject (a grant can open it). */
export function isReplySubject(subject: string): boolean {
  for (const p of REPLY_PREFIXES) if (subject.startsWith(p)) return true;
  return false;
}

export interface GrantLimits {
  /** How long after delivery a reply may be sent. */
  ttlMs: number;
  /** How many replies one delivery allows. */
  maxReplies: number;
  /** Grants one holder keeps at once; past it the oldest is forgotten. */
  maxGrants: number;
}

// Coarse clock in 100 ms ticks since start, so a grant packs into one small integer:
// expiry tick × 1024 + replies left (values stay V8 small integers for ~29 hours of uptime, and
// are still exact doubles after that).
const T0 = Date.now();
const TICK_MS = 100;
const PACK = 1024;
const tick = (): number => Math.floor((Date.now() - T0) / TICK_MS);
/** The grant clock now: read once for a message handed to many holders (grant's `now`). */
export const grantClock = tick;

/**
 * The reply subjects one holder (a session, a component) was handed and may still answer on.
 * Bounded: at most `maxGrants` entries, each expiring; created lazily by the holder.
 */
export class ReplyGrants {
  #grants = new Map<string, number>();
  readonly #limits: GrantLimits;
  constructor(limits: GrantLimits) {
    this.#limits = limits;
  }

  get size(): number {
    return this.#grants.size;
  }

  /**
   * The holder received a message carrying `replyTo`: it may answer it `maxReplies` more times
   * (messages from one sender share its reply subject, so each delivery adds its own answers, up
   * to 1023 at once), until `ttlMs` after this delivery. `now`: grantClock(), when the caller
   * grants the same message to many holders (a fan-out reads the clock once, not per session).
   * `times`: the number of messages delivered at once that carry it (a fan-out burst).
   */
  grant(replyTo: string, now: number = tick(), times = 1): void {
    // Only reply subjects in reserved space are capabilities; a user subject named as reply_to is
    // answered under the receiver's own permissions. (So a sender cannot fill receivers' grant
    // tables with made-up subjects: each sender has one reply subject, each request one inbox.)
    if (!isReserved(replyTo)) return;
    const l = this.#limits;
    const g = this.#grants;
    const expiry = now + Math.ceil(l.ttlMs / TICK_MS);
    const old = g.get(replyTo);
    let left = l.maxReplies * times;
    if (old === undefined) {
      // Forget the oldest when full (Map keeps insertion order).
      if (g.size >= l.maxGrants) g.delete(g.keys().next().value!);
    } else if (Math.floor(old / PACK) >= now) {
      left += old % PACK;
    }
    g.set(replyTo, expiry * PACK + Math.min(left, PACK - 1));
  }

  /** Whether a live grant for `subject` exists (for forwarding it as someone else's reply_to). */
  holds(subject: string): boolean {
    const v = this.#grants.get(subject);
    if (v === undefined) return false;
    if (Math.floor(v / PACK) < tick()) {
      this.#grants.delete(subject);
      return false;
    }
    return true;
  }

  /** Uses one reply of the grant for `subject`; false when there is no live grant. */
  use(subject: string): boolean {
    if (!this.holds(subject)) return false;
    const v = this.#grants.get(subject)!;
    const left = (v % PACK) - 1;
    if (left <= 0) this.#grants.delete(subject);
    else this.#grants.set(subject, v - 1);
    return true;
  }

  clear(): void {
    this.#grants.clear();
  }
}

/** Who is using a subject. */
export interface Actor {
  /**
   * client: a WebSocket session (its permissions and grants apply). component: a WebAssembly
   * component (grants apply). operator: the operator HTTP API and the TypeScript API (trusted with
   * user subjects and the gateway's reply subjects; never `$…` or the gateway's control subjects).
   */
  readonly role: 'client' | 'component' | 'operator';
  readonly publishPermission?: Permission | null | undefined;
  readonly subscribePermission?: Permission | null | undefined;
  /** Reply subjects it was handed; undefined: none yet. */
  readonly grants?: ReplyGrants | undefined;
  /** Its own reply subject, which it may name as reply_to. */
  readonly ownReplySubject?: string | undefined;
}

export type DenialCode = 'invalid_subject' | 'permission_denied';
export interface Denial {
  code: DenialCode;
  message: string;
}

const reserved = (what: string, subject: string): Denial => ({
  code: 'invalid_subject',
  message: `${subject} is reserved (_WSB., _INBOX. and $ subjects): it may not be ${what} directly; reply subjects can be answered once they were handed to you`,
});
const denied = (what: string, subject: string): Denial => ({ code: 'permission_denied', message: `may not ${what} ${subject}` });

/**
 * May `actor` publish to `subject` (a literal)? A grant for exactly this subject is used up by a
 * successful check, so call it once per publish, right before publishing.
 */
export function checkPublish(actor: Actor, subject: string): Denial | null {
  if (isReserved(subject)) {
    if (actor.grants?.use(subject)) return null;
    if (actor.role === 'operator' && isReplySubject(subject)) return null;
    return reserved('published to', subject);
  }
  if (actor.publishPermission && !actor.publishPermission.allowsSubject(subject)) return denied('publish to', subject);
  return null;
}

/**
 * May a client-mode remote publish an envelope on `subject`? User subjects only: a remote never
 * reaches reserved space directly (no broadcast, no session, no NATS API). Answers to the reply_to
 * aliases a link showed it are the link's own grants, checked there.
 */
export function checkRemotePublish(subject: string): Denial | null {
  return isReserved(subject) ? reserved('published to by a remote', subject) : null;
}

/** May `actor` send a request to `subject`? Requests go to user subjects only. */
export function checkRequest(actor: Actor, subject: string): Denial | null {
  if (isReserved(subject)) return reserved('requested', subject);
  if (actor.publishPermission && !actor.publishPermission.allowsSubject(subject)) return denied('request', subject);
  return null;
}

/**
 * May `actor` name `replyTo` as the reply subject of its message? Its own reply subject, a reply
 * subject it holds a live grant for (passing the answer on), or a user subject it may publish to:
 * a responder publishes there on its behalf, so nobody can aim answers at what they could not reach.
 */
export function checkReplyTo(actor: Actor, replyTo: string): Denial | null {
  if (replyTo === actor.ownReplySubject) return null;
  if (isReserved(replyTo)) {
    if (actor.grants?.holds(replyTo)) return null;
    if (actor.role === 'operator' && isReplySubject(replyTo)) return null;
    return { code: 'invalid_subject', message: `reply_to ${replyTo} is reserved: name your own reply subject, a reply subject you were handed, or a subject you may publish to` };
  }
  if (actor.publishPermission && !actor.publishPermission.allowsSubject(replyTo)) return denied('name as reply_to', replyTo);
  return null;
}

/**
 * May `actor` subscribe to `pattern`? Never a reserved pattern, except the presence events of
 * user subjects it may subscribe to (`_WSB.P.<pattern>`: what it could subscribe to, it may see
 * the members of). A wildcard pattern that could match reserved subjects (`>`, `*.x`) is
 * allowed: the buses never deliver reserved traffic to it.
 */
export function checkSubscribe(actor: Actor, pattern: string): Denial | null {
  if (pattern.startsWith(PRESENCE_PREFIX) && actor.role === 'client') {
    const inner = pattern.slice(PRESENCE_PREFIX.length);
    if (isReserved(inner)) return reserved('subscribed to', pattern);
    if (actor.subscribePermission && !actor.subscribePermission.allowsPattern(inner)) return denied('see the presence of', inner);
    return null;
  }
  if (isReserved(pattern)) return reserved('subscribed to', pattern);
  if (actor.subscribePermission && !actor.subscribePermission.allowsPattern(pattern)) return denied('subscribe to', pattern);
  return null;
}

/**
 * The JetStream durable name for a client's `durable`: scoped to the tenant (NATS_PREFIX), the
 * principal and the pattern, hashed into JetStream's name alphabet. Two principals never share a
 * durable, and the same principal with another pattern gets another durable, so nobody can join
 * or rewrite someone else's cursor.
 */
export function scopedDurableName(prefix: string, principal: string, durable: string, pattern: string): string {
  const h = createHash('sha256').update(`${prefix}\0${principal}\0${durable}\0${pattern}`).digest('base64url');
  return `wsb_${h.slice(0, 32)}`;
}

/**
 * A name for the gateway's own JetStream state (stream, KV bucket) in one NATS_PREFIX: tenants
 * sharing a NATS never share or overwrite each other's state, and no client subject reaches it
 * (its API subjects are `$JS.…`/`$KV.…`, reserved).
 */
export function scopedStateName(base: string, prefix: string): string {
  if (prefix === '') return base;
  return `${base}_${createHash('sha256').update(prefix).digest('hex').slice(0, 12)}`;
}
