// The v1 wire contract as types. Field names here are the TypeScript side; the codecs map them
// to the wire names (reply_to, timeout_ms). docs/protocol.md is the reference.
import type { ErrorCode } from './errors.ts';

export const PROTOCOL = 'wsbridge.v1';
export const SUBPROTOCOL_JSON = 'wsbridge.v1.json';
export const SUBPROTOCOL_MSGPACK = 'wsbridge.v1.msgpack';

/** wasmcloud:messaging/types@0.2.0 broker-message. */
export interface BrokerMessage {
  subject: string;
  body: Uint8Array;
  replyTo?: string | null | undefined;
  /** Set on messages from a subject with history: the stream sequence, for resume. */
  seq?: number | undefined;
  /** On acknowledged subscriptions: how many times this message was delivered before. */
  redelivered?: number | undefined;
}

/** Frames a client sends. A frame without `op` is a publish. */
export type ClientFrame =
  | { op: 'pub'; id: string | undefined; msg: BrokerMessage }
  | { op: 'sub'; id: string | undefined; subject: string; queue: string | undefined; since: number | undefined; epoch: string | undefined; ack: { durable: string; waitMs: number | undefined } | undefined }
  | { op: 'ack'; id: string | undefined; seq: number }
  | { op: 'auth'; id: string | undefined; token: string }
  | { op: 'unsub'; id: string | undefined; subject: string }
  | { op: 'req'; id: string; subject: string; body: Uint8Array; timeoutMs: number | undefined }
  | { op: 'ping'; id: string | undefined }
  | { op: 'presence'; id: string; subject: string };

/** A member of a subject (a session subscribed to exactly it), as presence answers and events show it. */
export interface PresenceMember {
  session: string;
  /** The JWT `sub` (or a named token's name); null without one. */
  user: string | null;
  /** The JWT's `info` claim, when it has one. */
  info?: unknown;
}

/** Frames the server sends, other than plain messages. */
export type ServerFrame =
  | { op: 'welcome'; session: string; reply_to: string; protocol: string }
  /**
   * `seq`/`epoch`: on a sub to a history subject, the stream position the subscription starts
   * after. `seq` alone: on a publish to a history subject, the sequence it was stored under
   * (`duplicate`: stored before, under this id).
   */
  | { op: 'ok'; id: string; seq?: number; epoch?: string; duplicate?: boolean }
  | { op: 'pong'; id?: string }
  | { op: 'res'; id: string; msg: BrokerMessage }
  | { op: 'error'; code: ErrorCode; message: string; id?: string | undefined; subject?: string | undefined }
  | { op: 'history_lost'; subject: string; since: number; first_seq: number; epoch: string; reason: HistoryLostReason; id?: string | undefined }
  | { op: 'presence'; id: string; subject: string; members: PresenceMember[]; truncated: boolean };

/** Why a resume could not give everything after `since`: the window moved on, or the stream is another one (epoch). */
export type HistoryLostReason = 'window' | 'epoch';
