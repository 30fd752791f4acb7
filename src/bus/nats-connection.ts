// How a node connects to NATS. The connection options come from the settings: a tight ping so a
// frozen or partitioned server is noticed in seconds (NATS's own default is 2 minutes), a short
// connect timeout so a frozen server costs little while dialling the next, reconnect pacing,
// credentials and mutual TLS. Startup is bounded and never silent: every failed round is logged,
// a failure that waiting cannot heal (refused credentials, a TLS certificate either side does not
// accept) ends startup at once with the setting to fix, and an unreachable NATS is retried for
// NATS_STARTUP_RETRY_SEC, then given up. The JetStream options every JetStream call shares (domain
// or API prefix) are built here too.
import { readFileSync } from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import { connect, credsAuthenticator, nkeyAuthenticator, errors } from '@nats-io/transport-node';
import type { ConnectionOptions, NatsConnection, Server } from '@nats-io/transport-node';
import type { JetStreamOptions } from '@nats-io/jetstream';
import { SETTING_BY_KEY } from '../config/settings.ts';
import { ConfigError } from '../config/load.ts';
import type { Logger } from '../observability/logger.ts';

/** The connection settings (NATS_*); what is left out takes the settings table's default. */
export interface NatsConnectionSettings {
  servers: string[];
  user?: string | undefined;
  pass?: string | undefined;
  token?: string | undefined;
  nkeySeedFile?: string | undefined;
  credsFile?: string | undefined;
  tlsCaFile?: string | undefined;
  tlsCertFile?: string | undefined;
  tlsKeyFile?: string | undefined;
  pingIntervalSec?: number | undefined;
  maxPingsOut?: number | undefined;
  connectTimeoutMs?: number | undefined;
  reconnectWaitMs?: number | undefined;
  reconnectJitterMs?: number | undefined;
  startupRetrySec?: number | undefined;
}

/** Where the history stream and the presence bucket live (NATS_JS_*). */
export interface JetStreamSettings {
  jsDomain?: string | undefined;
  jsApiPrefix?: string | undefined;
  publishAckTimeoutMs?: number | undefined;
}

const settingDefault = (key: string): number => SETTING_BY_KEY.get(key)!.default as number;

/** A startup failure that names what to fix; the CLI exits 1 with it. */
export class NatsStartupError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'NatsStartupError';
  }
}

/**
 * The nats.js options for these settings. Reconnecting never gives up once connected. Throws
 * ConfigError (exit 2) for a credentials or NKEY seed file nats.js cannot use.
 */
export function connectionOptions(s: NatsConnectionSettings, name: string, inboxPrefix: string): ConnectionOptions {
  const jitter = s.reconnectJitterMs ?? settingDefault('NATS_RECONNECT_JITTER_MS');
  const o: ConnectionOptions = {
    servers: s.servers,
    name,
    maxReconnectAttempts: -1,
    waitOnFirstConnect: false,
    pingInterval: (s.pingIntervalSec ?? settingDefault('NATS_PING_INTERVAL_SEC')) * 1000,
    maxPingOut: s.maxPingsOut ?? settingDefault('NATS_MAX_PINGS_OUT'),
    timeout: s.connectTimeoutMs ?? settingDefault('NATS_CONNECT_TIMEOUT_MS'),
    reconnectTimeWait: s.reconnectWaitMs ?? settingDefault('NATS_RECONNECT_WAIT_MS'),
    reconnectJitter: jitter,
    reconnectJitterTLS: jitter,
    // Inboxes under the prefix too (JetStream's API replies use them), never a client's reach.
    inboxPrefix,
  };
  if (s.user !== undefined) Object.assign(o, { user: s.user, pass: s.pass });
  if (s.token !== undefined) o.token = s.token;
  const key = s.credsFile ? { setting: 'NATS_CREDS_FILE', file: s.credsFile, what: 'a NATS credentials file (.creds: a user JWT and its NKEY seed)' }
    : s.nkeySeedFile ? { setting: 'NATS_NKEY_SEED_FILE', file: s.nkeySeedFile, what: 'an NKEY user seed (SU…)' } : undefined;
  if (key) {
    const authenticator = s.credsFile ? credsAuthenticator(readFileSync(key.file)) : nkeyAuthenticator(new TextEncoder().encode(readFileSync(key.file, 'utf8').trim()));
    // nats.js reads the file only when a server asks for it, and a file it cannot use then looks
    // like an unreachable server: read it once here (an empty nonce signs nothing).
    try {
      authenticator('');
    } catch (e) {
      throw new ConfigError(`${key.setting}: ${key.file} is not ${key.what} (${(e as Error).message})`);
    }
    o.authenticator = authenticator;
  }
  // TLS is required with a CA or client certificate, and with a tls:// URL (nats.js on its own
  // would speak plain text to a tls:// server that does not offer TLS).
  if (s.tlsCaFile || s.tlsCertFile || s.servers.some((u) => u.startsWith('tls://'))) {
    o.tls = {
      ...(s.tlsCaFile ? { caFile: s.tlsCaFile } : {}),
      ...(s.tlsCertFile ? { certFile: s.tlsCertFile, keyFile: s.tlsKeyFile } : {}),
    };
  }
  return o;
}

/** The JetStream client options: a fresh object each time (nats.js rewrites what it is given). */
export function jetStreamOptions(s: JetStreamSettings): JetStreamOptions {
  if (s.jsDomain) return { domain: s.jsDomain };
  if (s.jsApiPrefix) return { apiPrefix: s.jsApiPrefix };
  return {};
}

/** Where JetStream state lives, for logs: `domain hub`, `API prefix X`, or the server's own. */
export function jetStreamWhere(s: JetStreamSettings): string {
  if (s.jsDomain) return `JetStream domain ${s.jsDomain} (NATS_JS_DOMAIN)`;
  if (s.jsApiPrefix) return `JetStream API prefix ${s.jsApiPrefix} (NATS_JS_API_PREFIX)`;
  return 'the JetStream of the connected server\'s domain';
}

const delay = (ms: number) => new Promise((r) => setTimeout(r, ms));

const ROUND_OVER = 'every server in NATS_URL was tried once in this round';

/**
 * Chooses the server each dial goes to (nats.js's reconnectToServer). Two corrections to
 * nats.js's own choice: never dial the server that was just dialled (lost or failed) again
 * while there is another (after the first connect nats.js would redial the server it just lost:
 * a frozen one then costs a whole connect timeout before failover); and during the first
 * connect, one attempt per NATS_URL server per round (nats.js would keep re-adding servers the
 * cluster gossips about, so a round that fails every server, as with a refused client
 * certificate, would never end).
 */
function dialPolicy(servers: number): { choose: (pool: ReadonlyArray<Server>) => Server | null; connected(): void } {
  let starting = true;
  let attempts = 0;
  let last: string | undefined;
  return {
    choose(pool) {
      if (starting && ++attempts > servers) throw new Error(ROUND_OVER);
      let pick = pool[0];
      if (pick && pool.length > 1 && pick.listen === last) pick = pool[1];
      last = pick?.listen;
      return pick ?? null;
    },
    connected() {
      starting = false;
    },
  };
}

/**
 * Connects for the first time. Each round tries every server once (each bounded by the connect
 * timeout); between rounds the reconnect wait. Fails at once, naming the setting, when waiting
 * cannot help; otherwise after NATS_STARTUP_RETRY_SEC.
 */
export async function connectAtStartup(s: NatsConnectionSettings, name: string, inboxPrefix: string, log: Logger): Promise<NatsConnection> {
  const retryMs = (s.startupRetrySec ?? settingDefault('NATS_STARTUP_RETRY_SEC')) * 1000;
  const waitMs = s.reconnectWaitMs ?? settingDefault('NATS_RECONNECT_WAIT_MS');
  const started = Date.now();
  const opts = connectionOptions(s, name, inboxPrefix);
  log.info({ servers: s.servers, connectTimeoutMs: opts.timeout }, 'connecting to NATS');
  for (let round = 1; ; round++) {
    const policy = dialPolicy(s.servers.length);
    try {
      const nc = await connect({ ...opts, reconnectToServer: (pool) => policy.choose(pool) });
      policy.connected();
      log.info({ server: nc.getServer(), serverName: nc.info?.server_name, cluster: nc.info?.cluster, knownServers: nc.info?.connect_urls?.length ?? 1 }, 'NATS connected');
      return nc;
    } catch (err) {
      const why = await diagnose(err, s, opts.timeout!);
      if (why.fatal) throw new NatsStartupError(why.message);
      const elapsed = Date.now() - started;
      if (elapsed + waitMs >= retryMs) {
        throw new NatsStartupError(`${why.message}; no server answered in ${round} round${round > 1 ? 's' : ''} over ${Math.round(elapsed / 1000)} s (NATS_STARTUP_RETRY_SEC=${retryMs / 1000})`);
      }
      log.warn({ round, err: why.message, retryingForSec: Math.round((retryMs - elapsed) / 1000) }, 'NATS not reachable at startup: retrying (NATS_STARTUP_RETRY_SEC)');
      await delay(waitMs);
    }
  }
}

// Node's codes for a server certificate this client does not accept.
const SERVER_CERT_CODES = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'SELF_SIGNED_CERT_IN_CHAIN', 'DEPTH_ZERO_SELF_SIGNED_CERT', 'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY', 'CERT_HAS_EXPIRED', 'CERT_NOT_YET_VALID', 'CERT_SIGNATURE_FAILURE', 'CERT_UNTRUSTED',
  'CERT_REJECTED', 'INVALID_CA', 'ERR_TLS_CERT_ALTNAME_INVALID',
]);

function errCode(err: unknown): string | undefined {
  const e = err as { code?: unknown; cause?: { code?: unknown } } | undefined;
  const code = typeof e?.code === 'string' ? e.code : typeof e?.cause?.code === 'string' ? e.cause.code : undefined;
  return code;
}

function credentialSettings(s: NatsConnectionSettings): string {
  const used = [
    s.user !== undefined ? 'NATS_USER/NATS_PASSWORD' : '',
    s.token !== undefined ? 'NATS_TOKEN' : '',
    s.nkeySeedFile ? 'NATS_NKEY_SEED_FILE' : '',
    s.credsFile ? 'NATS_CREDS_FILE' : '',
    s.tlsCertFile ? 'NATS_TLS_CERT_FILE (a certificate-mapped user)' : '',
  ].filter(Boolean);
  return used.length ? `check ${used.join(', ')}` : 'the server requires credentials: set NATS_USER/NATS_PASSWORD, NATS_TOKEN, NATS_NKEY_SEED_FILE or NATS_CREDS_FILE';
}

/** A server without TLS, when the settings require it: which setting requires it. */
function noTls(s: NatsConnectionSettings, where: string): string {
  return `${where} does not offer TLS, which ${s.tlsCertFile ? 'NATS_TLS_CERT_FILE' : s.tlsCaFile ? 'NATS_TLS_CA_FILE' : 'a tls:// NATS_URL'} requires`;
}

/** A TLS failure as a sentence naming the setting, or undefined when `err` is not one. */
function tlsProblem(err: unknown, s: NatsConnectionSettings, where: string): string | undefined {
  const code = errCode(err);
  // Node's message may end in advice for its own command line ("; if the root CA is…").
  const msg = ((err as Error)?.message ?? String(err)).split(';')[0]!;
  if (code && SERVER_CERT_CODES.has(code)) {
    return s.tlsCaFile
      ? `the TLS certificate of ${where} is not accepted (${code}: ${msg}): NATS_TLS_CA_FILE=${s.tlsCaFile} must be the CA that signed it, and the certificate must name the host dialled in NATS_URL`
      : `the TLS certificate of ${where} is not accepted (${code}: ${msg}): set NATS_TLS_CA_FILE to the CA that signed it`;
  }
  if (code?.startsWith('ERR_SSL_') && /alert/i.test(code + msg)) {
    return s.tlsCertFile
      ? `${where} refused the client certificate (${code}): NATS_TLS_CERT_FILE=${s.tlsCertFile} must be signed by a CA the server trusts (its tls ca_file), be valid now and allow client authentication`
      : `${where} requires a client certificate (mutual TLS) and refused the handshake (${code}): set NATS_TLS_CERT_FILE and NATS_TLS_KEY_FILE`;
  }
  // nats.js: "'tls' is not available on this server" or "server does not support 'tls'".
  if (/tls.*not available|not support 'tls'/i.test(msg)) return noTls(s, where);
  if (code?.startsWith('ERR_SSL_') || code?.startsWith('ERR_OSSL_')) {
    return `TLS with ${where} failed (${code}: ${msg}): check NATS_TLS_CA_FILE, NATS_TLS_CERT_FILE and NATS_TLS_KEY_FILE`;
  }
  return undefined;
}

/** Why a first connect failed, and whether waiting could help. */
async function diagnose(err: unknown, s: NatsConnectionSettings, timeoutMs: number): Promise<{ fatal: boolean; message: string }> {
  const msg = (err as Error)?.message ?? String(err);
  if (err instanceof errors.AuthorizationError || err instanceof errors.UserAuthenticationExpiredError || /authorization violation/i.test(msg)) {
    return { fatal: true, message: `${msg}: ${credentialSettings(s)}` };
  }
  const direct = tlsProblem(err, s, 'the NATS server');
  if (direct) return { fatal: true, message: direct };
  // A refusal or timeout: look at each server for a TLS mismatch nats.js reports only as a
  // timeout (with TLS 1.3 a server refuses a client certificate after the handshake). All at
  // once: the check adds one NATS_CONNECT_TIMEOUT_MS to a round, not one per server.
  const found = (await Promise.all(s.servers.map((url) => probeServer(url, s, timeoutMs)))).find((f) => f !== undefined);
  if (found) return { fatal: true, message: found };
  if (msg.includes(ROUND_OVER) || err instanceof errors.TimeoutError) return { fatal: false, message: `no server completed the NATS handshake within NATS_CONNECT_TIMEOUT_MS=${timeoutMs}` };
  const code = errCode(err);
  return { fatal: false, message: code && !msg.includes(code) ? `${msg} (${code})` : msg };
}

/**
 * Dials one server as nats.js would (INFO in clear, then TLS when asked for) and reports a TLS
 * problem as a sentence naming the setting; undefined when the server is unreachable, silent or
 * fine. Bounded by `timeoutMs` in all.
 */
export async function probeServer(url: string, s: NatsConnectionSettings, timeoutMs: number): Promise<string | undefined> {
  const m = /^(nats|tls):\/\/(?:[^@/]*@)?(\[[^\]]+\]|[^:/]+)(?::(\d+))?$/.exec(url);
  if (!m) return undefined;
  const host = m[2]!.replace(/^\[|\]$/g, '');
  const port = Number(m[3] ?? 4222);
  const where = `the NATS server ${host}:${port}`;
  const socket = net.connect({ host, port });
  socket.on('error', () => {});
  let tlsSocket: tls.TLSSocket | undefined;
  const timer = setTimeout(() => {
    socket.destroy();
    tlsSocket?.destroy();
  }, timeoutMs);
  try {
    const info = await new Promise<{ tls_required?: boolean; tls_verify?: boolean; tls_available?: boolean } | undefined>((resolve) => {
      let buf = '';
      socket.on('data', (d: Buffer) => {
        buf += d.toString('latin1');
        const end = buf.indexOf('\r\n');
        if (end < 0) return;
        socket.removeAllListeners('data');
        socket.pause();
        const line = /^INFO\s+(.*)$/.exec(buf.slice(0, end));
        try {
          resolve(line ? (JSON.parse(line[1]!) as object) : undefined);
        } catch {
          resolve(undefined);
        }
      });
      socket.on('close', () => resolve(undefined));
    });
    if (!info) return undefined;
    const wantTls = info.tls_required || url.startsWith('tls://') || Boolean(s.tlsCaFile || s.tlsCertFile);
    if (!wantTls) return undefined;
    if (!info.tls_required && !info.tls_available) return noTls(s, where);
    return await new Promise<string | undefined>((resolve) => {
      tlsSocket = tls.connect({
        socket,
        servername: net.isIP(host) ? undefined : host,
        ...(s.tlsCaFile ? { ca: readFileSync(s.tlsCaFile) } : {}),
        ...(s.tlsCertFile ? { cert: readFileSync(s.tlsCertFile), key: readFileSync(s.tlsKeyFile!) } : {}),
      } as tls.ConnectionOptions, () => {
        // Accepted on our side. Under TLS 1.3 the server judges our certificate after this:
        // send a PING and see whether an answer (accepted) or an alert (refused) comes back.
        tlsSocket!.write('PING\r\n');
      });
      tlsSocket.once('data', () => resolve(undefined));
      tlsSocket.once('error', (e) => resolve(tlsProblem(e, s, where) ?? undefined));
      tlsSocket.once('close', () => resolve(undefined));
    });
  } finally {
    clearTimeout(timer);
    tlsSocket?.destroy();
    socket.destroy();
  }
}
