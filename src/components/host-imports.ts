// What wsbridge gives a component: wasmcloud:messaging/consumer@0.2.0 bound to the gateway.
// Errors travel as jco expects from a host import returning `result<_, string>`: a thrown value
// with a `payload` becomes `err(payload)` in the guest.
import type { BrokerMessage, Result } from '../gateway/messaging.ts';

import { WASI_IMPORTS } from './wasi.ts';

/**
 * Contracts a component may import, bound by exact version (jco reports imports with their
 * versions). WASI is matched as any 0.2.x release: toolchains emit the patch release they were
 * built against (componentize-js 0.23: @0.2.12), and every 0.2.x is compatible.
 */
export const SUPPORTED_IMPORTS: ReadonlySet<string> = new Set([
  'wasmcloud:messaging/consumer@0.2.0', 'wasmcloud:messaging/types@0.2.0',
  'wasmcloud:websocket/client@0.1.1-draft', 'wasmcloud:websocket/types@0.1.1-draft', 'golem:websocket/client@1.5.0',
]);
const WASI = new Set<string>(WASI_IMPORTS);

/** Whether wsbridge provides this versioned interface. */
export function providesImport(name: string): boolean {
  if (SUPPORTED_IMPORTS.has(name)) return true;
  const at = name.indexOf('@');
  return at > 0 && WASI.has(name.slice(0, at)) && /^0\.2\.\d+$/.test(name.slice(at + 1));
}

/** The export wsbridge calls, by exact version. */
export const HANDLER_EXPORT = 'wasmcloud:messaging/handler@0.2.0';

/**
 * Imports that may suspend the instance (JSPI) while the host awaits. jco matches these names
 * without their version (`iface#fn`), so they apply whatever patch release a component carries.
 * `publish` is listed only when the bus acknowledges publishes (NATS): jco makes every listed
 * import suspend on every call, which costs ~30 µs.
 */
export function asyncImports(publishAcked: boolean): string[] {
  return [
    'wasmcloud:messaging/consumer#request',
    ...(publishAcked ? ['wasmcloud:messaging/consumer#publish'] : []),
    'wasmcloud:websocket/client#connect',
    'golem:websocket/client#[static]websocket-connection.connect',
    'golem:websocket/client#[method]websocket-connection.receive',
    'golem:websocket/client#[method]websocket-connection.receive-with-timeout',
    'wasi:io/poll#poll',
    'wasi:io/poll#[method]pollable.block',
  ];
}
export const ASYNC_EXPORTS = ['wasmcloud:messaging/handler#handle-message'];

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
