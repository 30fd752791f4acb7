// What the gateway's thread and a component worker say to each other. Messages are batched: one
// postMessage carries every call, reply and event of a turn of the sender's event loop, as flat
// arrays (a structured clone of one array of scalars is cheaper than one of many small objects).
import type { WasiGrants } from './wasi.ts';
import type { OutboundPolicy } from './outbound/policy.ts';

export interface WorkerSetup {
  /** Folder of the transpiled component (component.js). */
  dir: string;
  /** Compiled core modules by file name (compiled once, on the gateway's thread). */
  modules: Array<[string, WebAssembly.Module]>;
  /** Interfaces the component imports, with versions. */
  imports: string[];
  grants: WasiGrants;
  outbound: { policy: OutboundPolicy; defaults: { timeoutMs: number; maxMessageBytes: number } };
  /** Whether consumer.publish waits for the bus to accept the message (NATS). */
  publishAcked: boolean;
  /** Int32 [connections open across the component's workers]: the shared OUTBOUND_MAX_CONNECTIONS budget. */
  cap: SharedArrayBuffer;
  /** Int32 [connections this worker holds]: given back to the budget if the worker is terminated. */
  held: SharedArrayBuffer;
  /** Float64 [start of the running call (performance.timeOrigin + now, ms), its seq or -1]. */
  state: SharedArrayBuffer;
}

/** Gateway → worker. */
export interface ToWorker {
  /** Calls: seq, subject, body, replyTo (or null), repeated. */
  calls?: unknown[];
  /** Answers to the worker's requests: rid, ok (1/0), subject or error text, body, replyTo, repeated. */
  replies?: unknown[];
  /** Close the instance's connections (1001) and end. */
  close?: true;
}

/** Worker → gateway. Events, flat, each tagged by its first element (see EVENT). */
export type FromWorker = { ready: true } | { failed: string } | { events: unknown[] };

export const EVENT = {
  /** A call finished: seq, outcome (OUTCOME), error text. */
  done: 0,
  /** consumer.publish, fire and forget: subject, body, replyTo. */
  publish: 1,
  /** consumer.request: rid, subject, body, timeoutMs. */
  request: 2,
  /** consumer.publish on an acknowledging bus: rid, subject, body, replyTo. */
  publishAcked: 3,
  /** Outbound socket counters of this worker, absolute: open, opened, bytesIn, bytesOut. */
  stats: 4,
} as const;

export const OUTCOME = { ok: 0, error: 1, trap: 2 } as const;

/** The same clock on every thread, in ms. */
export const sharedNow = (): number => performance.timeOrigin + performance.now();
