// The address a client connects from, for per-IP limits, logs and the session list. Behind a
// reverse proxy every TCP peer is the proxy, so X-Forwarded-For / Forwarded are read, but only
// from peers listed in TRUSTED_PROXIES, and only up to the rightmost hop that is not itself a
// trusted proxy: everything left of that hop was written by the client and can be forged.
import { BlockList, isIP } from 'node:net';
import type { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import { proxiedAddress } from './proxy-protocol.ts';

/**
 * One spelling per address, so that per-IP counts cannot be split by writing it differently:
 * `::ffff:1.2.3.4` (an IPv4 client on a dual-stack socket) → `1.2.3.4`; IPv6 in its canonical
 * form (RFC 5952, as the URL standard writes it: `2001:db8:0:0::1` → `2001:db8::1`).
 */
export function normalizeIp(ip: string): string {
  const m = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip);
  if (m) return m[1]!;
  if (isIP(ip) === 6) return new URL(`http://[${ip}]/`).hostname.slice(1, -1);
  return ip;
}

/** Why a TRUSTED_PROXIES entry is invalid, or null: an IPv4/IPv6 address or CIDR block. */
export function trustedProxyError(entry: string): string | null {
  const [addr, bits, extra] = entry.split('/');
  const family = isIP(addr ?? '');
  if (family === 0 || extra !== undefined) return 'expected an IP address or a CIDR block like 10.0.0.0/8';
  if (bits !== undefined && (!/^\d{1,3}$/.test(bits) || Number(bits) > (family === 4 ? 32 : 128))) return `prefix length /${bits} out of range`;
  return null;
}

export class ClientAddress {
  #trusted: BlockList | undefined;

  /** `trusted`: entries already checked with trustedProxyError. */
  constructor(trusted: readonly string[]) {
    if (trusted.length === 0) return;
    const list = new BlockList();
    for (const entry of trusted) {
      const [addr, bits] = entry.split('/') as [string, string | undefined];
      const a = normalizeIp(addr);
      const type = isIP(a) === 4 ? 'ipv4' : 'ipv6';
      if (bits === undefined) list.addAddress(a, type);
      else list.addSubnet(a, Number(bits), type);
    }
    this.#trusted = list;
  }

  /** Whether `ip` is listed in TRUSTED_PROXIES. */
  trusts(ip: string): boolean {
    return this.#trusted !== undefined && this.#isTrusted(normalizeIp(ip));
  }

  #isTrusted(ip: string): boolean {
    const family = isIP(ip);
    return family !== 0 && this.#trusted!.check(ip, family === 4 ? 'ipv4' : 'ipv6');
  }

  /** The client's IP: the TCP peer (or its PROXY header), or what trusted proxies in front of it say. */
  of(req: IncomingMessage): string {
    const peer = normalizeIp(proxiedAddress(req.socket as Socket) ?? req.socket.remoteAddress ?? '?');
    if (!this.#trusted || !this.#isTrusted(peer)) return peer;
    const hops = forwardedFor(req);
    // Right to left: each hop was appended by the proxy after it; stop at the first one that is
    // not a trusted proxy. A hop that is not an address ends the walk at the proxy that wrote it.
    let client = peer;
    for (let i = hops.length - 1; i >= 0; i--) {
      const hop = hops[i]!;
      if (isIP(hop) === 0) break;
      client = hop;
      if (!this.#isTrusted(hop)) break;
    }
    return client;
  }
}

/** The hops of `Forwarded: for=…` (RFC 7239) when present, else of `X-Forwarded-For`, left to right. */
function forwardedFor(req: IncomingMessage): string[] {
  const forwarded = req.headers.forwarded;
  if (forwarded) {
    const hops: string[] = [];
    for (const element of forwarded.split(',')) {
      let hop = 'unknown';
      for (const pair of element.split(';')) {
        const eq = pair.indexOf('=');
        if (eq < 0 || pair.slice(0, eq).trim().toLowerCase() !== 'for') continue;
        hop = unquoteNode(pair.slice(eq + 1).trim());
      }
      hops.push(hop);
    }
    return hops;
  }
  const xff = req.headers['x-forwarded-for'];
  if (!xff) return [];
  const joined = Array.isArray(xff) ? xff.join(',') : xff;
  return joined.split(',').map((h) => normalizeIp(stripPort(h.trim())));
}

/** A Forwarded node: `1.2.3.4`, `1.2.3.4:80`, `"[2001:db8::1]:4711"`, `"[2001:db8::1]"`. */
function unquoteNode(value: string): string {
  const v = value.startsWith('"') && value.endsWith('"') && value.length >= 2 ? value.slice(1, -1) : value;
  return normalizeIp(stripPort(v));
}

function stripPort(node: string): string {
  const v6 = /^\[([^\]]+)\](?::\d+)?$/.exec(node);
  if (v6) return v6[1]!;
  const v4 = /^(\d+\.\d+\.\d+\.\d+):\d+$/.exec(node);
  return v4 ? v4[1]! : node;
}
