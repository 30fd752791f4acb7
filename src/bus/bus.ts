// The seam between a gateway node and whatever carries messages between nodes and components.
// MemoryBus is the embedded default; a NATS bus implements the same interface for scale-out.
import type { BrokerMessage } from '../protocol/frames.ts';

export interface BusMessage extends BrokerMessage {
  /**
   * Who put the message on the bus, when that matters for loop prevention: a client-mode link
   * marks what it received from its remote server so it never sends it back there.
   */
  origin?: string | undefined;
  /** Stream sequence, for messages on history subjects (NATS JetStream). */
  seq?: number | undefined;
  redelivered?: number | undefined;
  /**
   * Set on a reply that reports a failure instead of an answer (body empty): the requester's
   * request rejects with RequestError(errorCode). A component host sends 'handler_failed'.
   */
  errorCode?: string | undefined;
}

/** A message on an acknowledged subscription, until it is acked (or given back). */
export interface AckHandle {
  ack(): void;
  /** Give it back for redelivery to the next consumer (the session went away): within seconds, not after ack_wait. */
  nak(): void;
}

export interface AckedSubscription {
  /** The stream position the durable was made at (when it was made now), for the client to resume from. */
  position?: StreamPosition | undefined;
  stop(): void;
}

export interface AckedOptions {
  /** The client's position: a durable that must be made starts after it (see subscribeAcked). */
  since?: number | undefined;
  epoch?: string | undefined;
  /** Told before any message when part of what came after `since` is gone (as ReplaySink.lost). */
  lost?(firstSeq: number, reason: 'window' | 'epoch', position: StreamPosition): void;
  /** Told when the durable goes away while consumed (a JetStream reset): the subscription has ended. */
  ended?(reason: string): void;
}

/** A place in a history stream: a sequence, and the epoch that says which stream it is in. */
export interface StreamPosition {
  seq: number;
  /**
   * Changes when the stream is made again (a JetStream reset, a fresh store): sequences restart,
   * so a sequence is meaningful only with its epoch.
   */
  epoch: string;
}

export interface ReplaySink {
  /**
   * Called before any message when messages after `since` may be missing: they left the window
   * ('window'), or `since` belongs to another stream (an unknown epoch, or a sequence the stream
   * never reached: 'epoch'; everything stored is then replayed).
   */
  lost(firstSeq: number, reason: 'window' | 'epoch', position: StreamPosition): void;
  deliver(msg: BusMessage): void;
}

export interface ReplayResult {
  /** Messages after `since` may be missing (see ReplaySink.lost). */
  lost: boolean;
  /** The oldest sequence still stored, when anything is. */
  firstSeq: number;
  /** The last sequence replayed (or where the replay started from when nothing was). */
  lastSeq: number;
  /** The stream's position when the replay began: everything up to it matching the pattern was sent. */
  position: StreamPosition;
}

export type BusHandler = (msg: BusMessage) => void;

export interface BusSubscription {
  readonly subject: string;
  readonly queue: string | undefined;
  unsubscribe(): void;
}

export interface SubscribeOptions {
  /** Among subscriptions sharing a queue group, each message goes to exactly one. */
  queue?: string | undefined;
}

export type RequestErrorCode = 'timeout' | 'no_responders' | 'bus_unavailable' | 'handler_failed' | 'unconfirmed';

/** What a bus says about a publish it accepted. */
export interface PublishAck {
  /** The stream sequence it was stored under (history subjects). */
  seq?: number | undefined;
  /** JetStream had it already (same dedup key within the window): stored once. */
  duplicate?: boolean | undefined;
}

/** The rejection for a reply that carries `errorCode`: it names no more than the code. */
export function replyError(subject: string, errorCode: string): RequestError {
  const code: RequestErrorCode = errorCode === 'handler_failed' ? 'handler_failed' : 'bus_unavailable';
  return new RequestError(code, code === 'handler_failed' ? `the handler of ${subject} failed` : `the responder on ${subject} failed (${errorCode})`);
}

export class RequestError extends Error {
  readonly code: RequestErrorCode;
  constructor(code: RequestErrorCode, message: string) {
    super(message);
    this.name = 'RequestError';
    this.code = code;
  }
}

export interface Bus {
  /** Random id of this node on the bus (node-scoped subjects: inboxes, reply subjects). */
  readonly nodeId: string;
  /**
   * Delivers to every matching subscription (one per queue group). Throws when unavailable.
   * Returns how many subscribers received it when this bus alone knows (in-memory, or NATS
   * unreachable), undefined when other nodes may have received it too. Wildcard subscriptions
   * never receive reserved subjects (`_WSB.`, `_INBOX.`, `$…`); see src/security/subject-policy.ts.
   */
  publish(msg: BusMessage): number | undefined;
  subscribe(subject: string, handler: BusHandler, opts?: SubscribeOptions): BusSubscription;
  close(): Promise<void>;
  /**
   * Publishes and resolves once the message is accepted: by NATS (a flush round trip), or stored
   * by JetStream for history subjects (`dedupKey` becomes its Nats-Msg-Id: a second publish with
   * the same key within the stream's duplicate window is stored once). Rejects with
   * RequestError 'bus_unavailable' when it is known not to be accepted, 'unconfirmed' when that
   * is unknown (the acknowledgement did not come in time). Buses without a remote side accept on
   * publish().
   */
  publishAcked?(msg: BusMessage, opts?: { dedupKey?: string | undefined }): Promise<PublishAck | void>;
  /**
   * Delivery with acknowledgements through the durable consumer `durableName` (already scoped by
   * the caller: see scopedDurableName): unacked messages
   * are redelivered after `ackWaitMs`, or at once after nak, to whoever consumes the durable next.
   */
  subscribeAcked?(pattern: string, durableName: string, ackWaitMs: number, deliver: (msg: BusMessage, handle: AckHandle) => void, opts?: AckedOptions): Promise<AckedSubscription>;
  /** Whether messages on subjects matching `pattern` are kept for resume. */
  hasHistory?(pattern: string): boolean;
  /**
   * Replays stored messages matching `pattern` with sequence > since, in order, when `epoch` (if
   * given) is the stream's; else everything stored, after `sink.lost`.
   */
  replay?(pattern: string, since: number, epoch: string | undefined, sink: ReplaySink): Promise<ReplayResult>;
  /** The history stream's current position (last sequence, epoch). */
  position?(): Promise<StreamPosition>;
}
