// What wsbridge gives a component: wasmcloud:messaging/consumer@0.2.0 bound to the gateway.
// Errors travel as jco expects from a host import returning `result<_, string>`: a thrown value
// with a `payload` becomes `err(payload)` in the guest.
import type { BrokerMessage, Result } from '../gateway/messaging.ts';

import { WASI_IMPORTS } from './wasi.ts';

/** Interfaces a component may import (jco names them without versions). */
export const SUPPORTED_IMPORTS: ReadonlySet<string> = new Set([
  'wasmcloud:messaging/consumer', 'wasmcloud:messaging/types',
  'wasmcloud:websocket/client', 'wasmcloud:websocket/types', 'golem:websocket/client',
  ...WASI_IMPORTS,
]);

/** Imports that may suspend the instance (JSPI) while the host awaits. */
export const ASYNC_IMPORTS = [
  'wasmcloud:messaging/consumer@0.2.0#request',
  // Suspends only when the host returns a promise: with a cluster bus, until NATS accepted it.
  'wasmcloud:messaging/consumer@0.2.0#publish',
  'wasmcloud:websocket/client@0.1.1-draft#connect',
  'golem:websocket/client@1.5.0#[static]websocket-connection.connect',
  'golem:websocket/client@1.5.0#[method]websocket-connection.receive',
  'golem:websocket/client@1.5.0#[method]websocket-connection.receive-with-timeout',
  'wasi:io/poll@0.2.3#poll',
  'wasi:io/poll@0.2.3#[method]pollable.block',
];
export const ASYNC_EXPORTS = ['wasmcloud:messaging/handler@0.2.0#handle-message'];

/** A guest-facing broker message: jco represents `option<string>` none as undefined. */
interface GuestMessage {
  subject: string;
  body: Uint8Array;
  replyTo?: string | undefined;
}

export interface MessagingHost {
  publish(msg: BrokerMessage): Result<void, string>;
  /** Present when the bus acknowledges publishes (NATS): publish then waits for the ack. */
  publishAcked?(msg: BrokerMessage): Promise<Result<void, string>>;
  request(subject: string, body: Uint8Array, timeoutMs: number): Promise<Result<BrokerMessage, string>>;
}

export interface InstanceGuard {
  /** Set once the instance was given up (trap, deadline): its late calls are refused. */
  retired: boolean;
  /** Host resources the instance owns (outbound WebSockets); destroyed with the instance. */
  resources: Set<{ destroy(): void }>;
}

function fail(reason: string): never {
  throw { payload: reason };
}

export function consumerImports(host: MessagingHost, guard: InstanceGuard): Record<string, unknown> {
  const consumer = {
    publish(msg: GuestMessage): void | Promise<void> {
      if (guard.retired) fail('instance retired');
      const m = { subject: msg.subject, body: msg.body, replyTo: msg.replyTo ?? null };
      if (host.publishAcked) {
        return host.publishAcked(m).then((r) => {
          if (r.tag === 'err') fail(r.val);
        });
      }
      const r = host.publish(m);
      if (r.tag === 'err') fail(r.val);
    },
    async request(subject: string, body: Uint8Array, timeoutMs: number): Promise<GuestMessage> {
      if (guard.retired) fail('instance retired');
      const r = await host.request(subject, body, timeoutMs);
      if (r.tag === 'err') fail(r.val);
      return { subject: r.val.subject, body: r.val.body, replyTo: r.val.replyTo ?? undefined };
    },
  };
  // The generated .d.ts names the versioned interface, the generated JS reads the bare name.
  return { 'wasmcloud:messaging/consumer': consumer, 'wasmcloud:messaging/consumer@0.2.0': consumer };
}
