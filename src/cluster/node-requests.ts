// Operations one node asks of another, each answered so the asker knows what happened instead of
// assuming: send to one session, close one session, broadcast to every session. They travel as
// requests on the node's control subjects (`_WSB.N.<node>.send`, `_WSB.N.<node>.close`) and as
// one broadcast `_WSB.B.<subject>` that every node answers with how many sessions it wrote to.
//
// Every one fails within about a second with a specific code: `bus_unavailable` (NATS is down:
// nobody can tell where a session is), `node_unreachable` (the node holding it did not answer in
// time: frozen or partitioned). A node that is gone (no subscriber on its subject: NATS answers
// "no responders" at once) holds no sessions, so its sessions are reported as not found.
import type { Bus, BusMessage, BusSubscription } from '../bus/bus.ts';
import { RequestError } from '../bus/bus.ts';
import type { RequestInbox } from '../bus/request-inbox.ts';
import { BROADCAST_PREFIX, NODE_PREFIX } from '../security/subject-policy.ts';
import { randomBytes } from 'node:crypto';

/** How long a node operation waits for the other node(s). */
export const NODE_REQUEST_TIMEOUT_MS = 1000;

export type ClusterErrorCode = 'bus_unavailable' | 'presence_unavailable' | 'node_unreachable';

/** A cluster operation could not be completed: the answer is unknown, not "no". HTTP 503. */
export class ClusterUnavailable extends Error {
  readonly code: ClusterErrorCode;
  constructor(code: ClusterErrorCode, message: string) {
    super(message);
    this.name = 'ClusterUnavailable';
    this.code = code;
  }
}

/** What a broadcast reached. */
export interface BroadcastReach {
  /** Sessions written to, over every node that answered. */
  sessions: number;
  nodes: {
    /** Nodes that answered (this one included). */
    reached: number;
    /** Live nodes by presence when the broadcast went out; null when presence could not say. */
    expected: number | null;
  };
  /** Live nodes that did not answer within the wait. */
  unreached: string[];
  /** True unless every expected node answered. */
  partial: boolean;
}

/** What this node does for the others. */
export interface NodeHandlers {
  /** Delivers to a local session: undefined when there is no such session, else whether it was written. */
  send(sessionId: string, msg: BusMessage): boolean | undefined;
  close(sessionId: string): boolean;
  /** Writes to every local session; returns how many. */
  broadcast(msg: BusMessage): number;
}

const enc = new TextEncoder();
const dec = new TextDecoder();

/** [u16 header length][JSON header][body]: a message's own reply_to travels inside. */
function envelope(header: Record<string, unknown>, body: Uint8Array): Uint8Array {
  const h = enc.encode(JSON.stringify(header));
  const out = new Uint8Array(2 + h.length + body.length);
  out[0] = h.length >> 8;
  out[1] = h.length & 0xff;
  out.set(h, 2);
  out.set(body, 2 + h.length);
  return out;
}

function unwrap(data: Uint8Array): { header: Record<string, unknown>; body: Uint8Array } | undefined {
  if (data.length < 2) return undefined;
  const n = (data[0]! << 8) | data[1]!;
  if (data.length < 2 + n) return undefined;
  try {
    const header = JSON.parse(dec.decode(data.subarray(2, 2 + n))) as unknown;
    if (typeof header !== 'object' || header === null) return undefined;
    return { header: header as Record<string, unknown>, body: data.subarray(2 + n) };
  } catch {
    return undefined;
  }
}

const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);

export class NodeRequests {
  #bus: Bus;
  #inbox: RequestInbox;
  #nodeId: string;
  #reachPrefix: string;
  #subs: BusSubscription[];
  #gathers = new Map<string, { add(node: string, sessions: number): void }>();

  constructor(bus: Bus, inbox: RequestInbox, handlers: NodeHandlers) {
    this.#bus = bus;
    this.#inbox = inbox;
    this.#nodeId = bus.nodeId;
    const own = `${NODE_PREFIX}${bus.nodeId}.`;
    this.#reachPrefix = `${own}reach.`;
    const answer = (m: BusMessage, value: unknown) => {
      if (m.replyTo) this.#bus.publish({ subject: m.replyTo, body: enc.encode(JSON.stringify(value)), replyTo: null });
    };
    this.#subs = [
      bus.subscribe(`${own}send`, (m) => {
        const e = unwrap(m.body);
        const session = str(e?.header.session);
        const subject = str(e?.header.subject);
        if (!e || !session || !subject) return;
        const r = handlers.send(session, { subject, body: e.body, replyTo: str(e.header.reply_to) ?? null });
        answer(m, { found: r !== undefined, delivered: r === true });
      }),
      bus.subscribe(`${own}close`, (m) => answer(m, { closed: handlers.close(dec.decode(m.body)) })),
      bus.subscribe(`${BROADCAST_PREFIX}>`, (m) => {
        const e = unwrap(m.body);
        if (!e) return;
        const sessions = handlers.broadcast({ subject: m.subject.slice(BROADCAST_PREFIX.length), body: e.body, replyTo: str(e.header.reply_to) ?? null });
        const reach = str(e.header.reach);
        if (reach) this.#bus.publish({ subject: reach, body: enc.encode(JSON.stringify({ node: this.#nodeId, sessions })), replyTo: null });
      }),
      bus.subscribe(`${this.#reachPrefix}*`, (m) => {
        let v: { node?: unknown; sessions?: unknown };
        try {
          v = JSON.parse(dec.decode(m.body)) as typeof v;
        } catch {
          return;
        }
        if (typeof v.node === 'string' && typeof v.sessions === 'number') this.#gathers.get(m.subject.slice(this.#reachPrefix.length))?.add(v.node, v.sessions);
      }),
    ];
  }

  #connected(): boolean {
    return (this.#bus as { connected?: boolean }).connected !== false;
  }

  async #ask(subject: string, body: Uint8Array, what: string): Promise<Record<string, unknown> | undefined> {
    if (!this.#connected()) throw new ClusterUnavailable('bus_unavailable', `NATS is unreachable: cannot ${what}`);
    let reply: BusMessage;
    try {
      reply = await this.#inbox.request(subject, body, NODE_REQUEST_TIMEOUT_MS);
    } catch (err) {
      // Nobody subscribed: the node is gone, and its sessions with it.
      if (err instanceof RequestError && err.code === 'no_responders') return undefined;
      if (err instanceof RequestError && err.code === 'timeout') throw new ClusterUnavailable('node_unreachable', `the node holding it did not answer within ${NODE_REQUEST_TIMEOUT_MS} ms: cannot ${what}`);
      throw new ClusterUnavailable('bus_unavailable', `cannot ${what}: ${(err as Error).message}`);
    }
    try {
      return JSON.parse(dec.decode(reply.body)) as Record<string, unknown>;
    } catch {
      throw new ClusterUnavailable('node_unreachable', `the node holding it gave an unreadable answer: cannot ${what}`);
    }
  }

  /** Sends to a session on `node`: 'delivered', 'dropped' (slow consumer), or 'not_found'. */
  async sendTo(node: string, sessionId: string, msg: BusMessage): Promise<'delivered' | 'dropped' | 'not_found'> {
    const r = await this.#ask(`${NODE_PREFIX}${node}.send`, envelope({ session: sessionId, subject: msg.subject, reply_to: msg.replyTo ?? null }, msg.body), 'send to the session');
    if (!r || r.found !== true) return 'not_found';
    return r.delivered === true ? 'delivered' : 'dropped';
  }

  /** Closes a session on `node`; false when the node does not have it (or is gone). */
  async closeOn(node: string, sessionId: string): Promise<boolean> {
    const r = await this.#ask(`${NODE_PREFIX}${node}.close`, enc.encode(sessionId), 'close the session');
    return r?.closed === true;
  }

  /** Broadcasts to every session of every node without waiting for answers. */
  publishBroadcast(msg: BusMessage): void {
    this.#bus.publish({ subject: BROADCAST_PREFIX + msg.subject, body: envelope({ reply_to: msg.replyTo ?? null }, msg.body), replyTo: null });
  }

  /**
   * Broadcasts to every session of every node and waits (up to NODE_REQUEST_TIMEOUT_MS) until each
   * node in `expected` has said how many sessions it wrote to. `expected` undefined: presence
   * could not say which nodes live, so the whole wait is used and the answer is partial.
   */
  broadcast(msg: BusMessage, expected: string[] | undefined): Promise<BroadcastReach> {
    const token = randomBytes(12).toString('base64url');
    const answered = new Map<string, number>();
    const want = expected === undefined ? undefined : new Set(expected);
    return new Promise<BroadcastReach>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      let done = false;
      const finish = () => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        this.#gathers.delete(token);
        const unreached = want ? [...want].filter((n) => !answered.has(n)) : [];
        let sessions = 0;
        for (const n of answered.values()) sessions += n;
        resolve({ sessions, nodes: { reached: answered.size, expected: want ? want.size : null }, unreached, partial: want === undefined || unreached.length > 0 || !this.#connected() });
      };
      this.#gathers.set(token, {
        add: (node, n) => {
          answered.set(node, n);
          if (want && [...want].every((x) => answered.has(x))) finish();
        },
      });
      timer = setTimeout(finish, NODE_REQUEST_TIMEOUT_MS);
      try {
        this.#bus.publish({ subject: BROADCAST_PREFIX + msg.subject, body: envelope({ reply_to: msg.replyTo ?? null, reach: this.#reachPrefix + token }, msg.body), replyTo: null });
      } catch (err) {
        clearTimeout(timer);
        this.#gathers.delete(token);
        reject(err instanceof Error ? err : new Error(String(err)));
        return;
      }
      // Only this node could be reached (NATS is down): no need to wait for the others.
      if (!this.#connected() && answered.has(this.#nodeId)) finish();
    });
  }

  close(): void {
    for (const s of this.#subs) s.unsubscribe();
    this.#subs = [];
    for (const g of [...this.#gathers.keys()]) this.#gathers.delete(g);
  }
}
