// A session's life from accept to close: the first-frame authentication (when the token did not
// come with the handshake), the message loop (rate limit, decode, hand to the hub), and the one
// cleanup when the socket closes.
import { randomBytes } from 'node:crypto';
import type { WebSocket } from 'ws';
import { Session } from '../sessions/session.ts';
import type { SessionLimits } from '../sessions/session.ts';
import { codecFor, CloseError } from '../protocol/codec.ts';
import { ProtocolError, CloseCodes } from '../protocol/errors.ts';
import type { Authenticator, Identity } from '../auth/authenticator.ts';
import type { Config } from '../config/load.ts';
import type { Gateway } from '../gateway/gateway.ts';

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
}

export function runConnection(ctx: ConnectionContext, ws: WebSocket, ip: string, remote: string, identity: Identity | undefined): Session {
  const { gw, config } = ctx;
  const hub = gw.hub;
  const log = gw.log;
  const limits = config.limits;
  const id = randomBytes(16).toString('base64url'); // 128 random bits
  const session = new Session(id, hub.newReplySubject(), ws, remote, codecFor(ws.protocol || undefined), ctx.sessionLimits);
  ctx.open.add(session);
  ws.on('pong', () => {
    session.alive = true; // liveness only: a pong is not activity for the idle timeout
  });

  /** One frame of an authenticated session: rate limit, decode, hub. */
  const process = (data: Buffer, isBinary: boolean): void => {
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
        log.error({ err, session: id }, 'decode failed');
        session.close(CloseCodes.internalError, 'internal error');
      }
      return;
    }
    try {
      hub.handle(session, frame);
    } catch (err) {
      log.error({ err, session: id }, 'frame handling failed');
      hub.error(session, 'internal', 'the gateway failed to handle the frame', 'id' in frame ? frame.id : undefined);
    }
  };

  // With authentication on and no token in the handshake, the session exists only after a
  // valid {"op":"auth"} as its first frame: nothing is sent before welcome, and frames that
  // follow the auth frame wait (in order) until it is verified.
  let state: 'awaiting_auth' | 'verifying' | 'open' = ctx.auth !== undefined && identity === undefined ? 'awaiting_auth' : 'open';
  let held: Array<[Buffer, boolean]> = [];
  let heldBytes = 0;
  const deadline = state === 'awaiting_auth' ? setTimeout(() => session.close(CloseCodes.policyViolation, 'authentication required'), config.authDeadlineMs) : undefined;
  const authFailed = () => {
    log.info({ session: id, remote }, 'authentication failed (first frame)');
    ctx.authFailed(ip);
    session.close(CloseCodes.policyViolation, 'authentication failed');
  };

  const firstFrame = (data: Buffer, isBinary: boolean): void => {
    state = 'verifying';
    clearTimeout(deadline);
    let token: string | undefined;
    try {
      const f = session.codec.decode(data, isBinary);
      if (f.op === 'auth') token = f.token;
    } catch {
      // anything else than a valid auth frame ends the session below
    }
    if (token === undefined) return authFailed();
    ws.pause(); // frames already read are held below; the socket reads no more meanwhile
    ctx.auth!.verify(token).then((who) => {
      if (session.closed) return;
      session.authenticate(who);
      hub.add(session); // sends welcome
      state = 'open';
      const queued = held;
      held = [];
      for (const [d, b] of queued) {
        if (session.closed) break;
        process(d, b);
      }
      if (!session.closed) ws.resume();
    }, authFailed);
  };

  ws.on('message', (data: Buffer, isBinary) => {
    session.received(data.length);
    if (state === 'open') return process(data, isBinary);
    if (state === 'awaiting_auth') return firstFrame(data, isBinary);
    if (session.closed) return;
    heldBytes += data.length;
    if (held.length >= MAX_HELD_FRAMES || heldBytes > config.maxMessageBytes) {
      session.close(CloseCodes.policyViolation, 'too many frames before welcome');
      return;
    }
    held.push([data, isBinary]);
  });
  // ws reports protocol violations (oversize → 1009, invalid UTF-8 → 1007, bad framing → 1002,
  // too many fragments → 1008) here and closes the socket with that code itself; the session
  // must only be cleaned up.
  ws.on('error', (err) => log.debug({ err: err.message, session: id }, 'session socket error'));
  ws.on('close', (code) => {
    clearTimeout(deadline);
    held = [];
    ctx.open.delete(session);
    hub.closed(code);
    hub.remove(session);
    session.dispose(); // also for a session that never got past authentication
    log.info({ session: id, code }, 'session closed');
  });
  if (identity) session.authenticate(identity);
  if (state === 'open') hub.add(session);
  log.info({ session: id, remote, protocol: session.codec.name, who: identity?.subject }, 'session opened');
  return session;
}
