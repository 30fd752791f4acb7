// A client's `req` frame → a bus request through the node's inbox (RequestInbox: one wildcard
// subscription, a random token per request, one timeout sweep) → `res` or an error frame.
import type { RequestInbox } from '../bus/request-inbox.ts';
import { RequestError } from '../bus/bus.ts';
import type { ClientFrame } from '../protocol/frames.ts';
import type { ErrorCode } from '../protocol/errors.ts';
import type { Session } from './session.ts';
import type { Logger } from '../observability/logger.ts';

export interface RequestProxyOptions {
  defaultRequestTimeoutMs: number;
  maxRequestTimeoutMs: number;
  maxPendingRequests: number;
}

export class RequestProxy {
  #inbox: RequestInbox;
  #opts: RequestProxyOptions;
  #log: Logger;
  #error: (session: Session, code: ErrorCode, message: string, id?: string) => void;
  /** Observes request durations (seconds) by result, for metrics. */
  onRequestDone: (seconds: number, result: string) => void = () => {};

  constructor(inbox: RequestInbox, opts: RequestProxyOptions, log: Logger, error: (session: Session, code: ErrorCode, message: string, id?: string) => void) {
    this.#inbox = inbox;
    this.#opts = opts;
    this.#log = log;
    this.#error = error;
  }

  handle(session: Session, frame: Extract<ClientFrame, { op: 'req' }>): void {
    if (session.pendingRequests >= this.#opts.maxPendingRequests) {
      this.#error(session, 'too_many_requests', `at most ${this.#opts.maxPendingRequests} requests in flight`, frame.id);
      return;
    }
    const timeout = Math.min(frame.timeoutMs ?? this.#opts.defaultRequestTimeoutMs, this.#opts.maxRequestTimeoutMs);
    session.pendingRequests++;
    const started = performance.now();
    const id = frame.id;
    this.#inbox.start(frame.subject, frame.body, timeout, (err, reply) => {
      session.pendingRequests--;
      this.onRequestDone((performance.now() - started) / 1000, err ? err.code : 'ok');
      if (session.closed) return;
      if (reply) {
        if (reply.replyTo) session.grant(reply.replyTo);
        session.sendFrame({ op: 'res', id, msg: reply });
      } else if (err instanceof RequestError) {
        this.#error(session, err.code, err.message, id);
      } else {
        this.#log.error({ err, session: session.id }, 'request failed');
        this.#error(session, 'internal', 'request failed', id);
      }
    }, session);
  }

  /** The session closed: its requests in flight are forgotten. */
  cancel(session: Session): void {
    if (session.pendingRequests > 0) {
      this.#inbox.cancelOwner(session);
      session.pendingRequests = 0;
    }
  }
}
