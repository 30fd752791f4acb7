// Presence per subject: who is subscribed to a subject, cluster-wide, and join/leave events.
//
// A session is a member of subject S while it holds a subscription to exactly S (no wildcards;
// plain, queue or resumed, not acknowledged ones) and S matches PRESENCE_SUBJECTS. This node
// keeps its own members in memory and writes each one to a MemberStore: LocalMemberStore on a
// single node, KvMemberStore (kv-member-store.ts: one NATS KV key per member, per-node
// heartbeats) in a cluster. Every join and leave is also published as a message on
// `_WSB.P.<subject>` (reserved space: only the gateway publishes there; a client may subscribe
// to it for subjects it may subscribe to, see subject-policy.ts), after the store has taken it,
// so that a presence query made on hearing an event already sees it.
import type { Bus } from '../bus/bus.ts';
import { Permission } from '../auth/authenticator.ts';
import type { Identity } from '../auth/authenticator.ts';
import type { Logger } from '../observability/logger.ts';
import type { PresenceMember } from '../protocol/frames.ts';
import { isReserved, PRESENCE_PREFIX } from '../security/subject-policy.ts';
import { patternsIntersect } from '../protocol/subject.ts';

export type { PresenceMember };

/** A member as stored: which subject, and the node that holds the session. */
export interface MemberRecord extends PresenceMember {
  subject: string;
  node: string;
}

export interface MemberList {
  members: MemberRecord[];
  /** More members exist than `limit` allowed. */
  truncated: boolean;
}

/** Where members are kept. */
export interface MemberStore {
  join(rec: MemberRecord): Promise<void>;
  leave(rec: MemberRecord): Promise<void>;
  /** Members of `subject` on live nodes, at most `limit`; gives up (rejects) when `signal` aborts. */
  list(subject: string, limit: number, signal?: AbortSignal): Promise<MemberList>;
  /** Told of members of dead nodes this node removed (each removed by exactly one node). */
  onReaped: (recs: MemberRecord[]) => void;
  close(): Promise<void>;
}

/** The session fields presence needs (a Session satisfies it). */
export interface PresenceSession {
  readonly id: string;
  readonly identity: Identity | undefined;
}

/** How long a presence read may take before it is answered with an error. */
const READ_TIMEOUT_MS = 5000;

/**
 * Store reads one node runs at once. In a cluster each read is a NATS KV scan (two JetStream
 * consumers), so a client asking presence in a loop must not turn each frame into one: queries
 * for the same subject share a read, and reads of different subjects wait for one of these.
 */
export const MAX_CONCURRENT_READS = 8;

/** One subject's reads: the one running, and the one that starts after it (shared by every query meanwhile). */
interface SubjectReads {
  running: Promise<MemberList> | undefined;
  queued: Promise<MemberList> | undefined;
}

/** Largest `info` claim (as JSON) shown in presence; a larger one is left out. */
export const MAX_INFO_BYTES = 1024;

/** The member a session is: its id, and who it authenticated as. */
export function memberOf(session: PresenceSession): PresenceMember {
  const who = session.identity;
  // Principals are `jwt:<iss>:<sub>` (a JWT with sub) or `token:<name>`: both name someone.
  const user = who?.principal !== undefined ? who.subject : null;
  const m: PresenceMember = { session: session.id, user };
  if (who?.info !== undefined) {
    const json = JSON.stringify(who.info);
    if (json !== undefined && Buffer.byteLength(json) <= MAX_INFO_BYTES) m.info = who.info;
  }
  return m;
}

/** This node's members, in memory: the store of a single node. */
export class LocalMemberStore implements MemberStore {
  #bySubject = new Map<string, Map<string, MemberRecord>>();
  onReaped: (recs: MemberRecord[]) => void = () => {};

  async join(rec: MemberRecord): Promise<void> {
    let m = this.#bySubject.get(rec.subject);
    if (!m) this.#bySubject.set(rec.subject, (m = new Map()));
    m.set(rec.session, rec);
  }

  async leave(rec: MemberRecord): Promise<void> {
    const m = this.#bySubject.get(rec.subject);
    if (!m?.delete(rec.session)) return;
    if (m.size === 0) this.#bySubject.delete(rec.subject);
  }

  async list(subject: string, limit: number): Promise<MemberList> {
    const members: MemberRecord[] = [];
    for (const rec of this.#bySubject.get(subject)?.values() ?? []) {
      if (members.length === limit) return { members, truncated: true };
      members.push(rec);
    }
    return { members, truncated: false };
  }

  async close(): Promise<void> {
    this.#bySubject.clear();
  }
}

export interface SubjectPresenceOptions {
  /** PRESENCE_SUBJECTS: the subjects whose members are kept. */
  subjects: string[];
  /** PRESENCE_MAX_MEMBERS: most members one answer lists. */
  maxMembers: number;
}

export class SubjectPresence {
  readonly maxMembers: number;
  #bus: Bus;
  #store: MemberStore;
  #tracked: Permission;
  #log: Logger;
  /** This node's members: session → subject → record. */
  #local = new Map<PresenceSession, Map<string, MemberRecord>>();
  /** Store writes in flight, awaited (within a bound) on close. */
  #inFlight = new Set<Promise<void>>();
  /** Reads per subject in progress (see MAX_CONCURRENT_READS). */
  #reads = new Map<string, SubjectReads>();
  #readsRunning = 0;
  #readTurns: Array<() => void> = [];
  #closed = false;

  constructor(bus: Bus, store: MemberStore, opts: SubjectPresenceOptions, log: Logger) {
    this.#bus = bus;
    this.#store = store;
    this.#tracked = new Permission(opts.subjects);
    this.maxMembers = opts.maxMembers;
    this.#log = log;
    store.onReaped = (recs) => {
      for (const r of recs) this.#event('leave', r);
    };
  }

  /** Whether members of the literal `subject` are kept. */
  tracks(subject: string): boolean {
    return !isReserved(subject) && this.#tracked.allowsSubject(subject);
  }

  /** Whether events can come on `_WSB.P.<pattern>`: some subject it matches is tracked. */
  announces(pattern: string): boolean {
    return !isReserved(pattern) && this.#tracked.patterns.some((p) => patternsIntersect(p, pattern));
  }

  /** `session` now holds a subscription to `subject` (any pattern: only literal, tracked ones count). */
  subscribed(session: PresenceSession, subject: string): void {
    if (isWildcard(subject) || !this.tracks(subject)) return;
    let mine = this.#local.get(session);
    if (mine?.has(subject)) return;
    if (!mine) this.#local.set(session, (mine = new Map()));
    const rec: MemberRecord = { ...memberOf(session), subject, node: this.#bus.nodeId };
    mine.set(subject, rec);
    this.#track(this.#store.join(rec), 'join', rec);
  }

  /** `session` no longer holds its subscription to `subject`. */
  unsubscribed(session: PresenceSession, subject: string): void {
    const mine = this.#local.get(session);
    const rec = mine?.get(subject);
    if (!rec) return;
    mine!.delete(subject);
    if (mine!.size === 0) this.#local.delete(session);
    this.#track(this.#store.leave(rec), 'leave', rec);
  }

  /** The session ended: it leaves every subject it was a member of. */
  sessionGone(session: PresenceSession): void {
    const mine = this.#local.get(session);
    if (!mine) return;
    this.#local.delete(session);
    for (const rec of mine.values()) this.#track(this.#store.leave(rec), 'leave', rec);
  }

  /** The members of `subject` on every live node (at most PRESENCE_MAX_MEMBERS). */
  async members(subject: string): Promise<{ members: PresenceMember[]; truncated: boolean }> {
    const { members, truncated } = await this.membersWithNodes(subject);
    return { members: members.map(publicMember), truncated };
  }

  /** The members of `subject` with the node each is on (operator API). Gives up after 5 seconds. */
  async membersWithNodes(subject: string): Promise<MemberList> {
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error('no answer from the presence store within 5000 ms')), READ_TIMEOUT_MS);
    });
    try {
      return await Promise.race([this.#read(subject), deadline]);
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * The store's answer for `subject` from a read that starts no earlier than this call, so that it
   * reflects every join and leave announced before: the read running now is not joined, the one
   * queued behind it is.
   */
  #read(subject: string): Promise<MemberList> {
    let reads = this.#reads.get(subject);
    if (!reads) this.#reads.set(subject, (reads = { running: undefined, queued: undefined }));
    if (reads.queued) return reads.queued;
    if (!reads.running) return this.#startRead(subject, reads);
    const st = reads;
    st.queued = reads.running.then(() => {}, () => {}).then(() => {
      st.queued = undefined;
      return this.#startRead(subject, st);
    });
    return st.queued;
  }

  #startRead(subject: string, reads: SubjectReads): Promise<MemberList> {
    // Each read ends within READ_TIMEOUT_MS of starting, so that a stuck one holds neither a turn
    // nor its subject's queries for long.
    const read = this.#inTurn(() => {
      const signal = AbortSignal.timeout(READ_TIMEOUT_MS);
      const aborted = new Promise<never>((_, reject) => signal.addEventListener('abort', () => reject(new Error(`no answer from the presence store within ${READ_TIMEOUT_MS} ms`))));
      aborted.catch(() => {});
      return Promise.race([this.#store.list(subject, this.maxMembers, signal), aborted]);
    });
    reads.running = read;
    const done = (): void => {
      if (reads.running !== read) return;
      reads.running = undefined;
      if (!reads.queued) this.#reads.delete(subject);
    };
    read.then(done, done);
    return read;
  }

  /** Runs `fn` once fewer than MAX_CONCURRENT_READS reads run (in the order asked). */
  async #inTurn<T>(fn: () => Promise<T>): Promise<T> {
    if (this.#readsRunning < MAX_CONCURRENT_READS) this.#readsRunning++;
    else await new Promise<void>((resolve) => this.#readTurns.push(resolve)); // the slot is handed over
    try {
      if (this.#closed) throw new Error('presence is closing');
      return await fn();
    } finally {
      const next = this.#readTurns.shift();
      if (next) next();
      else this.#readsRunning--;
    }
  }

  /** Members this node wrote again after they had been removed (see KvMemberStore): they join again. */
  restored(recs: MemberRecord[]): void {
    for (const r of recs) this.#event('join', r);
  }

  /** This node's members, for the store to write again (after its records were lost). */
  localMembers(): MemberRecord[] {
    const out: MemberRecord[] = [];
    for (const m of this.#local.values()) out.push(...m.values());
    return out;
  }

  #track(write: Promise<void>, event: 'join' | 'leave', rec: MemberRecord): void {
    const p = write.then(
      () => this.#event(event, rec),
      (err: unknown) => {
        // The store retries on its own (KvMemberStore); the event still goes out to whoever can hear it.
        this.#log.debug({ err: (err as Error).message, subject: rec.subject }, 'presence write failed');
        this.#event(event, rec);
      },
    );
    this.#inFlight.add(p);
    void p.finally(() => this.#inFlight.delete(p));
  }

  #event(event: 'join' | 'leave', rec: MemberRecord): void {
    try {
      this.#bus.publish({ subject: PRESENCE_PREFIX + rec.subject, body: Buffer.from(JSON.stringify({ event, subject: rec.subject, member: publicMember(rec) })), replyTo: null });
    } catch (err) {
      this.#log.debug({ err: (err as Error).message, subject: rec.subject }, 'presence event not published');
    }
  }

  /** Waits (at most `ms`) for the writes in flight, then closes the store. */
  async close(ms: number): Promise<void> {
    this.#closed = true;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([Promise.allSettled([...this.#inFlight]), new Promise((r) => (timer = setTimeout(r, ms)))]);
    clearTimeout(timer);
    this.#local.clear();
    await this.#store.close();
  }
}

function isWildcard(subject: string): boolean {
  return subject.split('.').some((t) => t === '*' || t === '>');
}

function publicMember(r: MemberRecord): PresenceMember {
  return r.info === undefined ? { session: r.session, user: r.user } : { session: r.session, user: r.user, info: r.info };
}
