// The fallback transport for networks that break WebSocket: the same v1 protocol, the same
// sessions, on the same port, over plain HTTP.
//
//   POST /sse        opens a session. Same admission as a WebSocket upgrade (upgrade-gate.ts:
//                    throttles, connection slots, Origin) and the same credential (the
//                    Authorization header, or a first frame {"op":"auth"}). The answer is a
//                    text/event-stream that carries the server's frames (sse-socket.ts); its
//                    first event holds the session's send token.
//   POST /sse/send   client → server frames, one JSON frame per line, with
//                    `Authorization: Bearer <send token>`. One POST per session at a time (409
//                    otherwise), so frames keep their order; answered 204 once every frame in it
//                    was handed to the session (answers come on the stream).
//   OPTIONS          CORS preflight for both (ALLOWED_ORIGINS decides, as for WebSocket).
//
// The send token is a 128-bit stream id and a 256-bit secret from the OS CSPRNG; the secret is
// compared in constant time. No credential ever goes into a URL.
import { randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { secretMatches } from '../auth/secret.ts';
import type { Authenticator, Identity } from '../auth/authenticator.ts';
import type { Config } from '../config/load.ts';
import type { Logger } from '../observability/logger.ts';
import { CloseCodes } from '../protocol/errors.ts';
import type { UpgradeGate } from './upgrade-gate.ts';
import { SseSocket } from './sse-socket.ts';

export const SSE_PATH = '/sse';
export const SSE_SEND_PATH = '/sse/send';

/** Bytes a client may send in the body of the POST that opens a session (it needs none). */
const OPEN_BODY_MAX = 4096;

export type SseAccept = (socket: SseSocket, req: IncomingMessage, ip: string, identity: Identity | undefined) => void;

export class SseTransport {
  #config: Config;
  #auth: Authenticator | undefined;
  #gate: UpgradeGate;
  #accept: SseAccept;
  #log: Logger;
  /** Open streams by stream id (the public half of their send token). */
  #streams = new Map<string, SseSocket>();
  /** Opening requests whose handshake token is being verified (answered 503 on shutdown). */
  #verifying = new Set<ServerResponse>();

  constructor(config: Config, auth: Authenticator | undefined, gate: UpgradeGate, accept: SseAccept, log: Logger) {
    this.#config = config;
    this.#auth = auth;
    this.#gate = gate;
    this.#accept = accept;
    this.#log = log;
  }

  /** Serves the request when it is one of the fallback's routes; false otherwise. */
  handle(req: IncomingMessage, res: ServerResponse, path: string): boolean {
    if (path !== SSE_PATH && path !== SSE_SEND_PATH) return false;
    const origin = req.headers.origin;
    const allowed = this.#gate.originAllowed(origin);
    // An opening POST is refused by admit(), in the order and with the count and log line of a
    // WebSocket upgrade; the other requests here at once.
    if (!allowed && !(path === SSE_PATH && req.method === 'POST')) {
      answer(res, 403, 'origin_refused', 'this Origin may not open sessions (ALLOWED_ORIGINS)');
      return true;
    }
    if (allowed && origin !== undefined) {
      // Tokens travel in the Authorization header, never in cookies: no credentials mode needed.
      res.setHeader('access-control-allow-origin', origin);
      res.setHeader('vary', 'origin');
    }
    if (req.method === 'OPTIONS') {
      res.writeHead(204, { 'access-control-allow-methods': 'POST', 'access-control-allow-headers': 'authorization, content-type', 'access-control-max-age': '600' });
      res.end();
      return true;
    }
    if (req.method !== 'POST') {
      answer(res, 405, 'method_not_allowed', 'use POST', { allow: 'POST, OPTIONS' });
      return true;
    }
    if (path === SSE_PATH) this.#open(req, res);
    else this.#send(req, res);
    return true;
  }

  #open(req: IncomingMessage, res: ServerResponse): void {
    const admitted = this.#gate.admit(req);
    if (!admitted.ok) {
      answer(res, admitted.status, admitted.status === 403 ? 'origin_refused' : admitted.status === 429 ? 'too_many_requests' : 'unavailable', 'session refused', admitted.headers);
      return;
    }
    const { ip, slot } = admitted;
    // The slot is held for as long as the stream is open.
    res.once('close', () => slot.release());
    let bodyBytes = 0;
    req.on('data', (chunk: Buffer) => {
      bodyBytes += chunk.length;
      if (bodyBytes > OPEN_BODY_MAX) req.destroy();
    });
    const header = req.headers.authorization;
    const token = this.#auth && header?.startsWith('Bearer ') ? header.slice(7) : undefined;
    if (!this.#auth || token === undefined) {
      this.#stream(req, res, ip, undefined);
      return;
    }
    this.#verifying.add(res);
    this.#auth.verify(token).then(
      (identity) => {
        if (!this.#verifying.delete(res)) return; // answered by close() meanwhile
        this.#stream(req, res, ip, identity);
      },
      () => {
        if (!this.#verifying.delete(res)) return;
        this.#log.info({ remote: ip }, 'authentication failed (SSE open)');
        this.#gate.authFailed(ip);
        answer(res, 401, 'unauthorized', 'missing or wrong credential', { 'www-authenticate': 'Bearer realm="wsbridge"' });
      },
    );
  }

  #stream(req: IncomingMessage, res: ServerResponse, ip: string, identity: Identity | undefined): void {
    if (res.destroyed || res.writableEnded) return; // the client went away meanwhile
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache, no-store, no-transform',
      'x-accel-buffering': 'no', // nginx and friends: do not buffer the stream
      'x-content-type-options': 'nosniff',
    });
    const streamId = randomBytes(16).toString('base64url');
    const socket = new SseSocket(res, streamId, randomBytes(32).toString('base64url'), this.#config.limits.pingIntervalSec * 1000);
    this.#streams.set(streamId, socket);
    socket.once('close', () => this.#streams.delete(streamId));
    this.#accept(socket, req, ip, identity);
  }

  /** Frames from the client: one JSON frame per line, in order, into the session's connection loop. */
  #send(req: IncomingMessage, res: ServerResponse): void {
    const header = req.headers.authorization ?? '';
    const m = /^Bearer ([A-Za-z0-9_-]{22})\.([A-Za-z0-9_-]{1,128})$/.exec(header);
    const socket = m ? this.#streams.get(m[1]!) : undefined;
    // Unknown stream and wrong secret get the same answer; the secret is compared in constant time.
    if (!socket || !secretMatches(m![2]!, socket.secret) || socket.readyState !== 1) {
      if (m && socket && socket.readyState === 1) this.#gate.authFailed(this.#gate.addresses.of(req));
      answer(res, 404, 'session_not_found', 'no open session has this send token');
      req.resume();
      return;
    }
    if (socket.posting) {
      answer(res, 409, 'busy', 'one POST at a time per session: send the next one when this one is answered');
      req.resume();
      return;
    }
    socket.posting = true;
    socket.heard();
    new FrameReader(req, res, socket, this.#config.maxMessageBytes).start();
  }

  /** Refuses new sessions and answers those still verifying their token (503). */
  close(): void {
    for (const res of this.#verifying) answer(res, 503, 'unavailable', 'the server is shutting down');
    this.#verifying.clear();
  }
}

/**
 * Splits a POST body into frames (lines) and emits each as the socket's 'message', holding back
 * while the socket is paused (a first-frame auth being verified). At most one partial line is
 * buffered, and no line may exceed MAX_MESSAGE_BYTES: a longer one closes the session with 1009,
 * as an oversized WebSocket frame does.
 */
class FrameReader {
  #req: IncomingMessage;
  #res: ServerResponse;
  #socket: SseSocket;
  #max: number;
  #partial: Buffer[] = [];
  #partialBytes = 0;
  /** The rest of a chunk not yet split, while the socket is paused. */
  #rest: Buffer | undefined;
  #ended = false;
  #done = false;

  constructor(req: IncomingMessage, res: ServerResponse, socket: SseSocket, max: number) {
    this.#req = req;
    this.#res = res;
    this.#socket = socket;
    this.#max = max;
  }

  start(): void {
    const req = this.#req;
    req.on('data', (chunk: Buffer) => this.#chunk(chunk));
    req.on('end', () => {
      this.#ended = true;
      this.#maybeFinish();
    });
    req.on('error', () => this.#finish(400));
    req.on('close', () => {
      if (!req.complete) this.#finish(400); // the client went away mid-body
    });
    this.#socket.on('resume', this.#onResume);
    this.#socket.once('close', this.#onClose);
  }

  #onResume = (): void => {
    const rest = this.#rest;
    this.#rest = undefined;
    if (rest) this.#chunk(rest);
    if (!this.#socket.isPaused && this.#rest === undefined) {
      this.#req.resume();
      this.#maybeFinish();
    }
  };

  #onClose = (): void => this.#finish(410);

  #chunk(chunk: Buffer): void {
    if (this.#done) return;
    const socket = this.#socket;
    let start = 0;
    for (;;) {
      if (socket.readyState !== 1) return this.#finish(410);
      if (socket.isPaused) {
        this.#rest = chunk.subarray(start);
        this.#req.pause();
        return;
      }
      const nl = chunk.indexOf(10, start);
      if (nl < 0) break;
      const piece = chunk.subarray(start, nl);
      start = nl + 1;
      let line = piece;
      if (this.#partialBytes > 0) {
        this.#partial.push(piece);
        line = Buffer.concat(this.#partial, this.#partialBytes + piece.length);
        this.#partial = [];
        this.#partialBytes = 0;
      }
      if (line.length > 0 && line[line.length - 1] === 13) line = line.subarray(0, line.length - 1);
      if (line.length > this.#max) return this.#tooBig();
      if (line.length > 0) socket.emit('message', line, true);
    }
    if (start < chunk.length) {
      const tail = chunk.subarray(start);
      this.#partial.push(tail);
      this.#partialBytes += tail.length;
      if (this.#partialBytes > this.#max + 1) return this.#tooBig();
    }
  }

  #tooBig(): void {
    this.#socket.close(CloseCodes.messageTooBig, 'frame too big');
    this.#finish(413);
  }

  #maybeFinish(): void {
    if (!this.#ended || this.#done || this.#rest !== undefined || this.#socket.isPaused) return;
    // The last line may come without a line break.
    if (this.#partialBytes > 0) {
      let line = Buffer.concat(this.#partial, this.#partialBytes);
      this.#partial = [];
      this.#partialBytes = 0;
      if (line[line.length - 1] === 13) line = line.subarray(0, line.length - 1);
      if (line.length > this.#max) return this.#tooBig();
      if (line.length > 0 && this.#socket.readyState === 1) this.#socket.emit('message', line, true);
    }
    this.#finish(this.#socket.readyState === 1 ? 204 : 410);
  }

  #finish(status: number): void {
    if (this.#done) return;
    this.#done = true;
    this.#socket.posting = false;
    this.#socket.off('resume', this.#onResume);
    this.#socket.off('close', this.#onClose);
    this.#partial = [];
    this.#rest = undefined;
    if (this.#res.headersSent || this.#res.destroyed) return;
    if (status === 204) {
      this.#res.writeHead(204);
      this.#res.end();
    } else if (status === 413) answer(this.#res, 413, 'too_large', 'a frame is larger than MAX_MESSAGE_BYTES: the session is closed (1009)', { connection: 'close' });
    else if (status === 410) answer(this.#res, 410, 'session_closed', 'the session is closed', { connection: 'close' });
    else this.#res.destroy();
    if (status !== 204) this.#req.resume();
  }
}

function answer(res: ServerResponse, status: number, code: string, message: string, headers: Record<string, string> = {}): void {
  if (res.headersSent || res.destroyed) return;
  res.writeHead(status, { 'content-type': 'application/json', ...headers });
  res.end(JSON.stringify({ error: { code, message } }));
}
