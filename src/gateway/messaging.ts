// The wasmcloud:messaging@0.2.0 contract as TypeScript types (wit/wasmcloud-messaging-0.2.0.wit).
// Result mirrors jco's representation of a WIT `result`, so a component's imports and a plain
// TypeScript caller see the same shapes.
import type { BrokerMessage } from '../protocol/frames.ts';

export type { BrokerMessage };

export type Result<T, E> = { tag: 'ok'; val: T } | { tag: 'err'; val: E };

export const ok = <T>(val: T): Result<T, never> => ({ tag: 'ok', val });
export const err = <E>(val: E): Result<never, E> => ({ tag: 'err', val });

/** wasmcloud:messaging/consumer: what a component linked as target may call. */
export interface Consumer {
  publish(msg: BrokerMessage): Result<void, string>;
  request(subject: string, body: Uint8Array, timeoutMs: number): Promise<Result<BrokerMessage, string>>;
}

/** wasmcloud:messaging/handler: what a component linked as source implements. */
export interface Handler {
  handleMessage(msg: BrokerMessage): Result<void, string> | Promise<Result<void, string>>;
}

export interface Subscription {
  subject: string;
  /** Members of one queue group share the subject's messages: each goes to exactly one. */
  queue?: string | undefined;
}
