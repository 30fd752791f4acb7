// Links with the same URL and handshake (AUTH_TOKEN, headers, SUBPROTOCOLS) share one connection:
// a remote sees one client, not one per component. One connection has one set of settings, so
// links that would share it must agree on every other setting too; where they do not, that is a
// configuration error naming the settings, never a later link's values silently ignored.
import { isDeepStrictEqual } from 'node:util';
import type { LinkConfig } from '../config/load.ts';

/** The identity of a connection: links with the same key share one. */
export function linkKey(c: LinkConfig): string {
  return JSON.stringify([c.uri, c.authToken ?? null, c.authTokenFile ?? null, Object.entries(c.headers).sort(), c.subprotocols]);
}

/** LinkConfig fields → the settings that set them. */
const SETTING_OF: Record<Exclude<keyof LinkConfig, 'where' | 'uri' | 'authToken' | 'authTokenFile' | 'headers' | 'subprotocols'>, string> = {
  name: 'LINK_NAME',
  loginFrames: 'LOGIN_FRAMES',
  tls: 'REMOTE_TLS_CA_FILE/REMOTE_TLS_CERT/REMOTE_TLS_KEY/REMOTE_TLS_SERVERNAME',
  proxyUrl: 'PROXY_URL',
  connectTimeoutMs: 'CONNECT_TIMEOUT_SEC',
  requireSubprotocol: 'SUBPROTOCOL_REQUIRED',
  reconnect: 'RECONNECT_BASE_MS/RECONNECT_MAX_MS/RECONNECT_MAX_ATTEMPTS/RECONNECT_STABLE_SEC/PERMANENT_FAILURE_POLICY',
  keepaliveIntervalMs: 'KEEPALIVE_INTERVAL_SEC',
  rawSubject: 'RAW_SUBJECT',
  forward: 'FORWARD',
  forwardReplies: 'FORWARD_REPLIES',
  offlineQueueMax: 'OFFLINE_QUEUE_MAX',
  maxMessageBytes: 'MAX_MESSAGE_BYTES',
  rawOutSubject: 'RAW_OUT_SUBJECT',
  rawOutFormat: 'RAW_OUT_FORMAT',
  maxBufferedBytes: 'MAX_BUFFERED_BYTES',
  slowPolicy: 'SLOW_CONSUMER_POLICY',
};

/** The settings two links that share a connection disagree on (empty: they agree). */
export function linkDifferences(a: LinkConfig, b: LinkConfig): string[] {
  const out: string[] = [];
  for (const [field, setting] of Object.entries(SETTING_OF) as Array<[keyof LinkConfig, string]>) {
    if (isDeepStrictEqual(a[field], b[field])) continue;
    // Shown in the setting's own unit (the *_SEC settings are kept in ms).
    const shown = (c: LinkConfig) => JSON.stringify(field === 'connectTimeoutMs' || field === 'keepaliveIntervalMs' ? (c[field] as number) / 1000 : c[field]);
    out.push(`${setting} (${shown(a)} vs ${shown(b)})`);
  }
  return out;
}

/** The message for `b` joining `a`'s connection while disagreeing with it; undefined if they agree. */
export function conflictMessage(a: LinkConfig, b: LinkConfig): string | undefined {
  const diff = linkDifferences(a, b);
  if (diff.length === 0) return undefined;
  return `${b.where} and ${a.where} would share one connection to ${redactUrl(a.uri)} (same URI, AUTH_TOKEN or AUTH_TOKEN_FILE, headers and SUBPROTOCOLS) but set ${diff.join(', ')} differently: one connection has one set of settings; make them agree, or give the links different headers (HEADER_<Name>) to open two connections`;
}

/** The first conflict among `links` (a config file's), or undefined. */
export function sharingConflict(links: LinkConfig[]): string | undefined {
  const seen = new Map<string, LinkConfig>();
  const names = new Map<string, LinkConfig>();
  for (const l of links) {
    const key = linkKey(l);
    const first = seen.get(key);
    if (first) {
      const m = conflictMessage(first, l);
      if (m) return m;
      continue;
    }
    seen.set(key, l);
    if (l.name !== undefined) {
      const other = names.get(l.name);
      if (other) return `${l.where} and ${other.where} are both named ${JSON.stringify(l.name)} (LINK_NAME): names must be unique`;
      names.set(l.name, l);
    }
  }
  return undefined;
}

export function redactUrl(uri: string): string {
  try {
    const u = new URL(uri);
    u.username = '';
    u.password = '';
    u.search = '';
    return u.toString();
  } catch {
    return '<invalid url>';
  }
}
