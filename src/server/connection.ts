// A session's life from accept to close: the first-frame authentication (when the token did not
// come with the handshake), the message loop (rate limit, decode, hand to the hub), and the one
// cleanup when the socket closes. One Connection object per socket with its methods on the
// prototype: at 10k+ idle sessions, closures per session are memory. The socket is a
// GatewayWebSocket (the server's WebSocket class; an SseSocket on the fallback) that carries its Connection in a declared field,
// so the four ws listeners are functions shared by every session, not four closures each.
import { randomBytes } from 'node:crypto';
import { WebSocket } from 'ws';
import { Session } from '../sessions/session.ts';
import type { SessionLimits } from '../sessions/session.ts';
import type { SessionSocket } from '../sessions/session-socket.ts';
import { codecFor, CloseError } from '../protocol/codec.ts';
import { ProtocolError, CloseCodes } from '../protocol/errors.ts';
import type { Authenticator, Identity } from '../auth/authenticator.ts';
import type { Config } from '../config/load.ts';
import type { Gateway } from '../gateway/gateway.ts';

/**
 * The WebSocket class of the gateway's WebSocketServer (ws's `WebSocket` option): a field for its
 * Connection, declared so that it lives inside the object (a property added later would cost
 * each socket a separate property array).
 */
export class GatewayWebSocket extends WebSocket {
  connection: Connection | undefined = undefined;
}
type WithConnection = SessionSocket & { connection?: Connection | undefined };

/**
 * Frames a client may pipeline behind its first-frame auth: they are held while the token is
 * verified and processed in order after welcome. More (or more than MAX_MESSAGE_BYTES of them)
 * closes the session with 1008.
 */
export const MAX_HELD_FRAMES = 100;

export interface ConnectionContext {
  gw: Gateway;
  config: Config;
  auth: Authenticator | undefined;
  /** Every open connection's session, authenticated or not (sweepers, shutdown). */
  open: Set<Session>;
  /** One limits object shared by every session (per-session copies cost memory at 10k+ sessions). */
  sessionLimits: SessionLimits;
  /** A failed first-frame authentication from `ip` (counted, and fed to the backoff). */
  authFailed(ip: string): void;
  /** Frees the connection slot the upgrade gate handed over with the socket (once, on close). */
  releaseSlot(ip: string): void;
}

export function runConnection(ctx: ConnectionContext, ws: SessionSocket, ip: string, remote: string, identity: Identity | undefined): Session {
  return new Connection(ctx, ws, ip, remote, identity).session;
}

/** What a connection holds only until it is authenticated (first-frame auth). */
interface Pending {
  deadline: NodeJS.Timeout | undefined;
  /** Frames that followed the auth frame, processed in order after welcome. */
  held: Array<[Buffer, boolean]> | undefined;
  heldBytes: number;
}

class Connection {
  readonly session: Session;
  readonly ctx: ConnectionContext;
  // With authentication on and no token in the handshake, the session exists only after a
  // valid {"op":"auth"} as its first frame: nothing is sent before welcome, and frames that
  // follow the auth frame wait (in order) until it is verified.
  private state: 'awaiting_auth' | 'verifying' | 'open';
  private pending: Pending | undefined;

  constructor(ctx: ConnectionContext, ws: SessionSocket, ip: string, remote: string, identity: Identity | undefined) {
    this.ctx = ctx;
    const id = randomBytes(16).toString('base64url'); // 128 random bits
    const session = (this.session = new Session(id, ctx.gw.hub.newReplySubject(), ws, remote, codecFor(ws.protocol || undefined), ctx.sessionLimits));
    session.clientIp = ip;
    ctx.open.add(session);
    this.state = ctx.auth !== undefined && identity === undefined ? 'awaiting_auth' : 'open';
    if (this.state === 'awaiting_auth') this.pending = { deadline: setTimeout(authDeadline, ctx.config.authDeadlineMs, session), held: undefined, heldBytes: 0 };
    (ws as WithConnection).connection = this; // a SessionSocket's own field (see GatewayWebSocket)
    ws.on('pong', onPong);
    ws.on('message', onMessage);
    // ws reports protocol violations (oversize → 1009, invalid UTF-8 → 1007, bad framing → 1002,
    // too many fragments → 1008) here and closes the socket with that code itself; the session
    // must only be cleaned up.
    ws.on('error', onError);
    ws.on('close', onClose);
    if (identity) session.authenticate(identity);
    if (this.state === 'open') ctx.gw.hub.add(session);
    ctx.gw.log.info({ session: id, remote, protocol: session.codec.name, who: identity?.subject }, 'session opened');
  }

  message(data: Buffer, isBinary: boolean): void {
    const session = this.session;
    session.received(data.length);
    if (this.state === 'open') return this.process(data, isBinary);
    if (this.state === 'awaiting_auth') return this.firstFrame(data, isBinary);
    if (session.closed) return;
    const p = this.pending!; // verifying: frames after the auth frame wait for the verdict
    p.heldBytes += data.length;
    const held = (p.held ??= []);
    if (held.length >= MAX_HELD_FRAMES || p.heldBytes > this.ctx.config.maxMessageBytes) {
      session.close(CloseCodes.policyViolation, 'too many frames before welcome');
      return;
    }
    held.push([data, isBinary]);
  }

  /** One frame of an authenticated session: rate limit, decode, hub. */
  process(data: Buffer, isBinary: boolean): void {
    const session = this.session;
    const hub = this.ctx.gw.hub;
    const limits = this.ctx.config.limits;
    if (!session.withinRate(data.length, limits.rateMsgs, limits.rateBytes)) {
      hub.stats.rateLimited++;
      if (session.rateErrorDue()) hub.error(session, 'rate_limited', `over ${limits.rateMsgs || '∞'} frames/s or ${limits.rateBytes || '∞'} bytes/s: frames are being dropped`);
      return;
    }
    let frame;
    try {
      frame = session.codec.decode(data, isBinary);
    } catch (err) {
      if (err instanceof ProtocolError) hub.protocolError(session, err);
      else if (err instanceof CloseError) session.close(err.closeCode, err.message);
      else {
        this.ctx.gw.log.error({ err, session: session.id }, 'decode failed');
        session.close(CloseCodes.internalError, 'internal error');
      }
      return;
    }
    try {
      hub.handle(session, frame);
    } catch (err) {
      this.ctx.gw.log.error({ err, session: session.id }, 'frame handling failed');
      hub.error(session, 'internal', 'the gateway failed to handle the frame', 'id' in frame ? frame.id : undefined);
    }
  }

  firstFrame(data: Buffer, isBinary: boolean): void {
    const session = this.session;
    this.state = 'verifying';
    clearTimeout(this.pending?.deadline);
    let token: string | undefined;
    try {
      const f = session.codec.decode(data, isBinary);
      if (f.op === 'auth') token = f.token;
    } catch {
      // anything else than a valid auth frame ends the session below
    }
    if (token === undefined) return this.authFailed();
    const ws = session.socket;
    ws.pause(); // frames already read are held; the socket reads no more meanwhile
    this.ctx.auth!.verify(token).then((who) => {
      if (session.closed) return;
      session.authenticate(who);
      this.ctx.gw.hub.add(session); // sends welcome
      this.state = 'open';
      const held = this.pending?.held ?? [];
      this.pending = undefined;
      for (const [d, b] of held) {
        if (session.closed) break;
        this.process(d, b);
      }
      if (!session.closed) ws.resume();
    }, () => this.authFailed());
  }

  authFailed(): void {
    this.ctx.gw.log.info({ session: this.session.id, remote: this.session.remoteAddress }, 'authentication failed (first frame)');
    this.ctx.authFailed(this.session.clientIp!);
    this.session.close(CloseCodes.policyViolation, 'authentication failed');
  }

  closed(code: number): void {
    const { gw, open } = this.ctx;
    const session = this.session;
    clearTimeout(this.pending?.deadline);
    this.pending = undefined;
    this.ctx.releaseSlot(session.clientIp!);
    open.delete(session);
    gw.hub.closed(code);
    gw.hub.remove(session);
    session.dispose(); // also for a session that never got past authentication
    gw.log.info({ session: session.id, code }, 'session closed');
  }
}

// The socket's listeners: one function each for every session (`this` is the socket).
function onMessage(this: WithConnection, data: Buffer, isBinary: boolean): void {
  this.connection!.message(data, isBinary);
}
function onPong(this: WithConnection): void {
  this.connection!.session.alive = true; // liveness only: a pong is not activity for the idle timeout
}
function onError(this: WithConnection, err: Error): void {
  const c = this.connection!;
  c.ctx.gw.log.debug({ err: err.message, session: c.session.id }, 'session socket error');
}
function onClose(this: WithConnection, code: number): void {
  this.connection!.closed(code);
}
function authDeadline(session: Session): void {
  session.close(CloseCodes.policyViolation, 'authentication required');
}
