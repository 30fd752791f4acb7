// Requests the NATS way (as nats.js muxes them): one wildcard inbox subscription per node,
// `_WSB.R.<node>.*`, a fresh 128-bit random token per request, a map of pending requests and one
// sweep timer for all their timeouts. A reply is matched by its token alone, so nobody who has not
// been handed the exact inbox subject can answer (and the subject policy lets a client publish to
// it only then). Used for client `req` frames, component `consumer.request` and the TypeScript API.
import { randomFillSync } from 'node:crypto';
import type { Bus, BusMessage, BusSubscription } from './bus.ts';
import { RequestError, replyError } from './bus.ts';
import { INBOX_PREFIX } from '../security/subject-policy.ts';

export type RequestDone = (err: RequestError | null, reply: BusMessage | null) => void;

interface Pending {
  done: RequestDone;
  deadline: number;
  subject: string;
  timeoutMs: number;
  /** Who asked (a session), so its requests can be dropped when it goes. */
  owner: object | undefined;
}

/** Timeouts fire within this many milliseconds after their deadline. */
export const SWEEP_MS = 10;

const TOKEN_BYTES = 16;
const POOL_TOKENS = 256;


export class RequestInbox {
  /** `_WSB.R.<node>.`: every request's reply subject is this plus a random token. */
  readonly prefix: string;
  #bus: Bus;
  #pending = new Map<string, Pending>();
  #sub: BusSubscription | undefined;
  #sweeper: NodeJS.Timeout | undefined;
  /** Deadlines were added in order (all requests with one timeout): the sweep can stop early. */
  #ordered = true;
  #lastDeadline = 0;
  #pool = Buffer.alloc(TOKEN_BYTES * POOL_TOKENS);
  #poolAt = POOL_TOKENS;
  #closed = false;

  constructor(bus: Bus) {
    this.#bus = bus;
    this.prefix = `${INBOX_PREFIX}${bus.nodeId}.`;
  }

  get pending(): number {
    return this.#pending.size;
  }

  /** A fresh token from the OS CSPRNG (drawn 256 at a time: one syscall per 256 requests). */
  #token(): string {
    if (this.#poolAt === POOL_TOKENS) {
      randomFillSync(this.#pool);
      this.#poolAt = 0;
    }
    const at = this.#poolAt++ * TOKEN_BYTES;
    return this.#pool.toString('base64url', at, at + TOKEN_BYTES);
  }

  /**
   * Publishes `body` to `subject` with a fresh inbox as reply subject; `done` is called exactly
   * once: with the first reply, or a RequestError (timeout, no_responders, bus_unavailable, or
   * the responder's own error code).
   */
  start(subject: string, body: Uint8Array, timeoutMs: number, done: RequestDone, owner?: object): void {
    if (this.#closed) {
      done(new RequestError('bus_unavailable', 'bus is closed'), null);
      return;
    }
    this.#sub ??= this.#bus.subscribe(`${this.prefix}*`, (reply) => this.#reply(reply));
    const token = this.#token();
    const deadline = Date.now() + timeoutMs;
    if (deadline < this.#lastDeadline) this.#ordered = false;
    this.#lastDeadline = deadline;
    this.#pending.set(token, { done, deadline, subject, timeoutMs, owner });
    this.#sweeper ??= setInterval(() => this.#sweep(), SWEEP_MS).unref();
    let delivered: number | undefined;
    try {
      delivered = this.#bus.publish({ subject, body, replyTo: this.prefix + token });
    } catch (err) {
      if (this.#take(token)) done(err instanceof RequestError ? err : new RequestError('bus_unavailable', (err as Error).message), null);
      return;
    }
    // Only this node's bus could have answered, and nobody took it.
    if (delivered === 0 && this.#take(token)) done(new RequestError('no_responders', `no subscribers on ${subject}`), null);
  }

  /** start(), as a promise. */
  request(subject: string, body: Uint8Array, timeoutMs: number): Promise<BusMessage> {
    return new Promise((resolve, reject) => this.start(subject, body, timeoutMs, (err, reply) => (err ? reject(err) : resolve(reply!))));
  }

  /** Forgets the requests of `owner` (a session that closed): their answers are dropped. */
  cancelOwner(owner: object): void {
    for (const [token, p] of this.#pending) if (p.owner === owner) this.#take(token);
  }

  #take(token: string): Pending | undefined {
    const p = this.#pending.get(token);
    if (p === undefined) return undefined;
    this.#pending.delete(token);
    // The sweeper stops itself when it finds nothing pending (not here: at thousands of requests
    // a second, arming and clearing an interval per request costs more than a spare sweep).
    return p;
  }

  #idle(): void {
    clearInterval(this.#sweeper);
    this.#sweeper = undefined;
    this.#ordered = true;
    this.#lastDeadline = 0;
  }


  #reply(reply: BusMessage): void {
    const p = this.#take(reply.subject.slice(this.prefix.length));
    if (p === undefined) return; // late (after a timeout) or forged: dropped, as NATS does
    const code = reply.errorCode;
    if (code === undefined) p.done(null, reply);
    else if (code === 'no_responders') p.done(new RequestError('no_responders', `no subscribers on ${p.subject}`), null);
    else p.done(replyError(p.subject, code), null);
  }

  #sweep(): void {
    const now = Date.now();
    for (const [token, p] of this.#pending) {
      if (p.deadline > now) {
        if (this.#ordered) break;
        continue;
      }
      this.#pending.delete(token);
      p.done(new RequestError('timeout', `no reply on ${p.subject} within ${p.timeoutMs} ms`), null);
    }
    if (this.#pending.size === 0) this.#idle();
  }

  close(): void {
    this.#closed = true;
    this.#sub?.unsubscribe();
    const all = [...this.#pending.values()];
    this.#pending.clear();
    this.#idle();
    for (const p of all) p.done(new RequestError('bus_unavailable', 'bus closed'), null);
  }
}
