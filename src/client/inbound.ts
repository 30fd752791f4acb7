// Frames from a link's remote, turned into bus messages, and the link's reply routes back.
//
// Every frame gets a reply route over its link, a reply subject under the link's 128-bit token
// (`_WSB.L.<token>.…`): local handlers are handed it like any reply subject (a grant, see
// src/security/subject-policy.ts), so only whoever received the frame can answer it:
//   - an envelope with a reply_to: `_WSB.L.<token>.R.<reply_to>`; the answer goes out as a v1
//     envelope on the remote's reply_to;
//   - any other frame (raw text or binary, an envelope without reply_to): `_WSB.L.<token>.T` or
//     `.B`, by the frame's type; the answer's body goes out as a frame of that type (a text
//     answer that is not UTF-8 goes as binary), in the remote's own protocol.
// The subject of an envelope goes through the subject policy: reserved subjects are not the
// remote's to publish (such a frame is a raw frame), except the reply aliases the link showed it.
import { randomBytes } from 'node:crypto';
import { isUtf8 } from 'node:buffer';
import type { BusMessage } from '../bus/bus.ts';
import { decodeBase64 } from '../protocol/codec.ts';
import { subjectError, MAX_SUBJECT_LENGTH } from '../protocol/subject.ts';
import { ProtocolError } from '../protocol/errors.ts';
import { checkRemotePublish, LINK_REPLY_PREFIX } from '../security/subject-policy.ts';
import type { GrantLimits } from '../security/subject-policy.ts';
import { outFrame } from './outbound.ts';
import type { OutFrame } from './outbound.ts';

/** Prefix of the opaque reply_to aliases a link shows its remote (FORWARD_REPLIES). */
export const LINK_ALIAS_PREFIX = '_WSB.LR.';

export class LinkRoutes {
  /** `_WSB.L.<128 random bits>.`: this link's reply routes. */
  readonly prefix = `${LINK_REPLY_PREFIX}${randomBytes(16).toString('base64url')}.`;
  /** reply_to aliases shown to the remote → the local reply subject each stands for (bounded). */
  #aliases = new Map<string, { target: string; expires: number; left: number }>();
  #grants: GrantLimits;

  constructor(grants: GrantLimits) {
    this.#grants = grants;
  }

  /** The bus message for a frame from the remote (subject: the envelope's, else `rawSubject`). */
  inbound(data: Buffer, isBinary: boolean, rawSubject: string): { msg: BusMessage; envelope: boolean } {
    const env = this.#asEnvelope(data, isBinary);
    if (env) return { msg: env, envelope: true };
    return { msg: { subject: rawSubject, body: data, replyTo: this.prefix + (isBinary ? 'B' : 'T') }, envelope: false };
  }

  /** A v1 message envelope from the remote, or null when the frame is anything else. */
  #asEnvelope(data: Buffer, isBinary: boolean): BusMessage | null {
    if (isBinary || data.length === 0 || data[0] !== 0x7b /* { */) return null;
    let o: Record<string, unknown>;
    try {
      o = JSON.parse(data.toString('utf8'));
    } catch {
      return null;
    }
    if (typeof o !== 'object' || o === null || (o.op !== undefined && o.op !== 'pub')) return null;
    if (typeof o.subject !== 'string' || subjectError(o.subject, false) !== null) return null;
    let body: Uint8Array;
    try {
      if (typeof o.body === 'string') body = decodeBase64(o.body, undefined);
      else if (typeof o.text === 'string') body = Buffer.from(o.text, 'utf8');
      else if (o.body === undefined || o.body === null) body = Buffer.alloc(0);
      else return null;
    } catch (err) {
      if (err instanceof ProtocolError) return null;
      throw err;
    }
    let subject = o.subject;
    if (checkRemotePublish(subject) !== null) {
      // The remote answers a reply_to alias it was shown: the answer goes to the local reply
      // subject behind it, once. Any other reserved subject is not the remote's to use.
      const target = this.#useAlias(subject);
      if (target === undefined) return null;
      return { subject: target, body, replyTo: null };
    }
    let replyTo = this.prefix + 'T';
    if (typeof o.reply_to === 'string' && subjectError(o.reply_to, false) === null && this.prefix.length + 2 + o.reply_to.length <= MAX_SUBJECT_LENGTH) {
      replyTo = `${this.prefix}R.${o.reply_to}`;
    }
    return { subject, body, replyTo };
  }

  /** The frame an answer on one of this link's routes becomes; undefined for a subject that is none. */
  answer(subject: string, body: Buffer): OutFrame | undefined {
    const rest = subject.slice(this.prefix.length);
    if (rest.startsWith('R.')) return outFrame(JSON.stringify({ subject: rest.slice(2), body: body.toString('base64'), reply_to: null }), false);
    if (rest === 'B') return outFrame(body, true);
    if (rest === 'T') return isUtf8(body) ? outFrame(body.toString('utf8'), false) : outFrame(body, true);
    return undefined;
  }

  /**
   * What the remote sees as reply_to: nothing by default (local reply subjects are not shown to
   * remotes); with FORWARD_REPLIES, an opaque alias answerable like a grant (REPLY_GRANT_*).
   */
  alias(replyTo: string | null | undefined, forwardReplies: boolean): string | null {
    if (!replyTo || !forwardReplies) return null;
    const g = this.#grants;
    const now = Date.now();
    if (this.#aliases.size >= g.maxGrants) {
      for (const [k, v] of this.#aliases) if (v.expires < now) this.#aliases.delete(k);
      if (this.#aliases.size >= g.maxGrants) this.#aliases.delete(this.#aliases.keys().next().value!);
    }
    const alias = LINK_ALIAS_PREFIX + randomBytes(16).toString('base64url');
    this.#aliases.set(alias, { target: replyTo, expires: now + g.ttlMs, left: g.maxReplies });
    return alias;
  }

  #useAlias(subject: string): string | undefined {
    const a = this.#aliases.get(subject);
    if (!a) return undefined;
    const live = a.expires >= Date.now();
    if (!live || --a.left <= 0) this.#aliases.delete(subject);
    return live ? a.target : undefined;
  }

  clear(): void {
    this.#aliases.clear();
  }
}
