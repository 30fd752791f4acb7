// Who a component may dial: loopback always, other hosts only when OUTBOUND_ALLOW names them;
// and how many connections one component may hold at once.
import { isIP } from 'node:net';

export interface OutboundPolicy {
  /** Extra hosts allowed besides loopback: `host`, `host:port`, or `*.domain`. */
  allow: string[];
  /** Open connections per component (all its instances together). */
  maxConnections: number;
  /** Received messages queued per connection before the socket stops reading. */
  receiveQueue: number;
}

function isLoopback(host: string): boolean {
  const h = host.startsWith('[') ? host.slice(1, -1) : host;
  if (h === 'localhost' || h.endsWith('.localhost')) return true;
  if (isIP(h) === 4) return h.startsWith('127.');
  if (isIP(h) === 6) return h === '::1';
  return false;
}

/** Null when the URL may be dialled, else the reason it may not. */
export function outboundRefusal(url: URL, policy: OutboundPolicy): string | null {
  const host = url.hostname.toLowerCase();
  if (isLoopback(host)) return null;
  const port = url.port || (url.protocol === 'wss:' ? '443' : '80');
  for (const rule of policy.allow) {
    const r = rule.toLowerCase();
    const [rHost, rPort] = r.startsWith('[') ? [r.slice(0, r.indexOf(']') + 1), r.slice(r.indexOf(']') + 2) || undefined] : r.split(':') as [string, string | undefined];
    if (rPort !== undefined && rPort !== port) continue;
    if (rHost === host || (rHost.startsWith('*.') && host.endsWith(rHost.slice(1)))) return null;
  }
  return `${host}:${port} is not in OUTBOUND_ALLOW (only loopback is allowed by default)`;
}
