// The PROXY protocol (HAProxy's spec, versions 1 and 2): a load balancer that forwards raw TCP
// (so TLS ends here) prefixes each connection with a header naming the client's address. With
// PROXY_PROTOCOL=true every connection must start with one, and only from a TRUSTED_PROXIES
// peer; the header is read (bounded in size and in time by HANDSHAKE_TIMEOUT_MS) before the
// connection is handed to the HTTP(S) server, which then sees an ordinary connection.
import type { Server as NetServer, Socket } from 'node:net';
import { isIP } from 'node:net';
import { normalizeIp } from './client-address.ts';

const V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
const V1_MAX = 107; // the longest v1 line, CRLF included
const V2_MAX_BODY = 4096; // addresses plus TLVs; the spec allows more, nobody sends it

export type ProxyHeader = { length: number; source: string | undefined } | 'more' | 'invalid';

/**
 * Parses a PROXY header at the start of `buf`: its length and the source address (undefined for
 * LOCAL / UNKNOWN, where the TCP peer itself is the client), 'more' while incomplete.
 */
export function parseProxyHeader(buf: Buffer): ProxyHeader {
  const sigLen = Math.min(buf.length, V2_SIGNATURE.length);
  if (buf.subarray(0, sigLen).equals(V2_SIGNATURE.subarray(0, sigLen))) {
    if (buf.length < 16) return 'more';
    const verCmd = buf[12]!;
    const family = buf[13]!;
    const len = buf.readUInt16BE(14);
    if (verCmd >> 4 !== 2 || (verCmd & 0x0f) > 1 || len > V2_MAX_BODY) return 'invalid';
    if (buf.length < 16 + len) return 'more';
    if ((verCmd & 0x0f) === 0) return { length: 16 + len, source: undefined }; // LOCAL: health checks
    const body = buf.subarray(16, 16 + len);
    if (family >> 4 === 1 && body.length >= 12) return { length: 16 + len, source: [...body.subarray(0, 4)].join('.') };
    if (family >> 4 === 2 && body.length >= 36) {
      const groups: string[] = [];
      for (let i = 0; i < 16; i += 2) groups.push(body.readUInt16BE(i).toString(16));
      return { length: 16 + len, source: normalizeIp(groups.join(':')) };
    }
    return { length: 16 + len, source: undefined }; // UNSPEC or UNIX
  }
  const prefix = 'PROXY ';
  const head = buf.subarray(0, Math.min(buf.length, prefix.length)).toString('latin1');
  if (!prefix.startsWith(head)) return 'invalid';
  const end = buf.subarray(0, V1_MAX).indexOf('\r\n');
  if (end < 0) return buf.length >= V1_MAX ? 'invalid' : 'more';
  const parts = buf.subarray(0, end).toString('latin1').split(' ');
  if (parts[1] === 'UNKNOWN') return { length: end + 2, source: undefined };
  const [, proto, src, dst, sport, dport] = parts;
  const fam = proto === 'TCP4' ? 4 : proto === 'TCP6' ? 6 : 0;
  const port = (p: string | undefined) => p !== undefined && /^\d{1,5}$/.test(p) && Number(p) <= 65535;
  if (parts.length !== 6 || fam === 0 || isIP(src ?? '') !== fam || isIP(dst ?? '') !== fam || !port(sport) || !port(dport)) return 'invalid';
  return { length: end + 2, source: normalizeIp(src!) };
}

/** Client addresses read from PROXY headers, by the TCP socket that carried them. */
const proxied = new WeakMap<Socket, string>();

/** The address a PROXY header gave for this connection (`socket` or, under TLS, its parent). */
export function proxiedAddress(socket: Socket): string | undefined {
  return proxied.get(socket) ?? proxied.get((socket as unknown as { _parent?: Socket })._parent as Socket);
}

export interface ProxyProtocolOptions {
  timeoutMs: number;
  /** Whether the TCP peer may send a PROXY header at all. */
  trusted(ip: string): boolean;
  /** A connection that was dropped (bad header, untrusted peer, too slow). */
  onRejected(reason: string): void;
}

/** Reads a PROXY header off each connection of `front`, then hands the socket to `target`. */
export function acceptProxyProtocol(front: NetServer, target: { emit(event: 'connection', socket: Socket): boolean }, tls: boolean, opts: ProxyProtocolOptions): void {
  front.on('connection', (socket: Socket) => {
    socket.on('error', () => socket.destroy());
    const peer = socket.remoteAddress ?? '?';
    if (!opts.trusted(peer)) {
      opts.onRejected('peer not in TRUSTED_PROXIES');
      socket.destroy();
      return;
    }
    let buf: Buffer = Buffer.alloc(0);
    const timer = setTimeout(() => {
      opts.onRejected('no PROXY header in time');
      socket.destroy();
    }, opts.timeoutMs);
    const onData = (chunk: Buffer): void => {
      buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
      const h = parseProxyHeader(buf);
      if (h === 'more') return;
      clearTimeout(timer);
      socket.off('data', onData);
      if (h === 'invalid') {
        opts.onRejected('invalid PROXY header');
        socket.destroy();
        return;
      }
      if (h.source !== undefined) proxied.set(socket, h.source);
      const rest = buf.subarray(h.length);
      if (tls) {
        // tls.Server feeds what the socket has buffered to the TLS engine when it wraps it.
        socket.pause();
        if (rest.length > 0) socket.unshift(rest);
        target.emit('connection', socket);
      } else {
        // http.Server reads the socket's handle directly (bytes put back with unshift would
        // never reach its parser): hand it the rest through its 'data' listener.
        target.emit('connection', socket);
        if (rest.length > 0) socket.emit('data', rest);
      }
    };
    socket.on('data', onData);
    socket.once('close', () => clearTimeout(timer));
  });
}
