// Error codes a client can see in an `{"op":"error"}` frame. docs/protocol.md lists each one;
// test/protocol-doc.test.ts keeps the two in step.
export const ErrorCodes = {
  bad_json: 'the frame is not valid JSON',
  bad_msgpack: 'the frame is not valid MessagePack',
  bad_frame: 'the frame is not an object of the documented shape',
  bad_base64: 'body is not standard base64',
  invalid_subject: 'the subject breaks the subject rules',
  unknown_op: 'the op is not one this server knows',
  bad_request: 'a required field is missing or has the wrong type',
  not_subscribed: 'unsub for a subject this session is not subscribed to',
  timeout: 'no reply arrived within timeout_ms',
  no_responders: 'nobody is subscribed to the request subject',
  handler_failed: 'the component handling the request failed (threw, trapped, was overloaded or passed its deadline)',
  too_many_requests: 'the session has too many requests in flight',
  limit_exceeded: 'a per-session limit (such as max subscriptions) was reached',
  bus_unavailable: 'the message bus cannot take the message right now',
  unconfirmed: 'the bus did not confirm a publish in time: it may or may not have been stored; publishing again with the same id is safe',
  history_unavailable: 'sub with since or ack for a subject that keeps no history',
  rate_limited: 'the session sends faster than RATE_LIMIT_MSGS / RATE_LIMIT_BYTES: the frame was dropped',
  permission_denied: 'the session may not publish or subscribe to that subject',
  unauthorized: 'the token given with op auth was not accepted',
  unknown_seq: 'ack of a sequence this session has no unacknowledged message for',
  presence_unavailable: 'presence is not kept for that subject (PRESENCE_SUBJECTS)',
  internal: 'the gateway failed to handle the frame',
} as const;

export type ErrorCode = keyof typeof ErrorCodes;

/** An error that becomes an error frame; the session stays open. */
export class ProtocolError extends Error {
  readonly code: ErrorCode;
  readonly id: string | undefined;
  constructor(code: ErrorCode, message: string, id?: string) {
    super(message);
    this.name = 'ProtocolError';
    this.code = code;
    this.id = id;
  }
}

/** WebSocket close codes the gateway uses (RFC 6455 §7.4.1). */
export const CloseCodes = {
  normal: 1000,
  goingAway: 1001,
  invalidPayload: 1007,
  policyViolation: 1008,
  messageTooBig: 1009,
  internalError: 1011,
  tryAgainLater: 1013,
} as const;
