// Resolves the effective configuration: flags > env > config file (JSON) > defaults, then parses
// every value by the SETTINGS table. Any bad value is a ConfigError naming the key, where it came
// from and what is expected; the CLI turns it into exit code 2.
import { readFileSync } from 'node:fs';
import { X509Certificate } from 'node:crypto';
import { createSecureContext } from 'node:tls';
import { SETTINGS, SETTING_BY_KEY } from './settings.ts';
import type { Setting } from './settings.ts';
import type { LogLevel } from '../observability/logger.ts';
import type { SlowConsumerPolicy } from '../sessions/session.ts';
import { subjectError } from '../protocol/subject.ts';
import { homedir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import type { ComponentConfig } from '../components/component-config.ts';
import { defaultComponentId } from '../components/component-config.ts';
import type { AuthConfig, NamedToken } from '../auth/authenticator.ts';
import { jwtKey } from '../auth/authenticator.ts';
import { trustedProxyError } from '../server/client-address.ts';
import type { GrantLimits } from '../security/subject-policy.ts';
import { isReserved } from '../security/subject-policy.ts';
import type { ReconnectSettings } from '../client/backoff.ts';
import { sharingConflict } from '../client/link-sharing.ts';

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

export interface HostPort {
  host: string;
  port: number;
}

export interface LinkConfig {
  /** LINK_NAME: how the operator API, /api/stats, metrics and logs name it (unset: link-<n>). */
  name: string | undefined;
  /** Where its values came from, for error messages ("config file f: links[1]", "link"). */
  where: string;
  uri: string;
  authToken: string | undefined;
  /** AUTH_TOKEN_FILE: read before every attempt (rotating credentials). */
  authTokenFile: string | undefined;
  /** REMOTE_TLS_*: files read before every attempt; servername for SNI and the certificate check. */
  tls: { caFile: string | undefined; certFile: string | undefined; keyFile: string | undefined; servername: string | undefined };
  /** PROXY_URL: an HTTP(S) proxy reached with CONNECT. */
  proxyUrl: string | undefined;
  /** LOGIN_FRAMES: sent first on every (re)connect; strings may hold {{AUTH_TOKEN}}. */
  loginFrames: Array<{ text: string; json: boolean }>;
  headers: Record<string, string>;
  subprotocols: string[];
  /** Fail an attempt whose server selects none of `subprotocols` (else accept and report it). */
  requireSubprotocol: boolean;
  connectTimeoutMs: number;
  reconnect: ReconnectSettings;
  keepaliveIntervalMs: number;
  rawSubject: string;
  forward: string[];
  /** Whether forwarded messages carry an answerable reply_to alias. */
  forwardReplies: boolean;
  offlineQueueMax: number;
  maxMessageBytes: number;
  /** Publishes here go to the remote as bare text/binary frames (raw outbound mode). */
  rawOutSubject: string | undefined;
  rawOutFormat: 'auto' | 'text' | 'binary';
  maxBufferedBytes: number;
  slowPolicy: 'close' | 'drop';
}

export interface Config {
  mode: 'server' | 'client';
  listen: HostPort | undefined;
  adminToken: string | undefined;
  sessionTracking: boolean;
  demoPage: boolean;
  metricsToken: string | undefined;
  auth: AuthConfig;
  authDeadlineMs: number;
  tls: { cert: string; key: string; clientCa: string | undefined } | undefined;
  limits: { maxConnections: number; maxConnectionsPerIp: number; rateMsgs: number; rateBytes: number; idleTimeoutSec: number; handshakeTimeoutMs: number; pingIntervalSec: number; handshakeRatePerIp: number; authFailureBackoffMs: number };
  trustedProxies: string[];
  proxyProtocol: boolean;
  deflate: { enabled: boolean; thresholdBytes: number };
  allowedOrigins: string[];
  maxMessageBytes: number;
  maxBufferedBytes: number;
  slowConsumerPolicy: SlowConsumerPolicy;
  maxSubscriptions: number;
  maxPendingRequests: number;
  /** How reply subjects handed to a session or component may be answered. */
  grants: GrantLimits;
  requestTimeoutMs: number;
  maxRequestTimeoutMs: number;
  shutdownTimeoutMs: number;
  logLevel: LogLevel;
  logFormat: 'auto' | 'json' | 'pretty';
  links: LinkConfig[];
  /** The top-level values links made at runtime resolve over (resolveLinkConfig). */
  linkBase: Record<string, { value: unknown; source: string }>;
  components: ComponentConfig[];
  /** COMPONENT_POOL_SIZE, COMPONENT_TIMEOUT_MS, COMPONENT_MAX_QUEUE: for components added later. */
  componentDefaults: ComponentDefaults;
  componentCacheDir: string;
  outboundAllow: string[];
  outboundMaxConnections: number;
  outboundReceiveQueue: number;
  outboundTimeoutMs: number;
  nats: NatsConfig | undefined;
  presenceTtlSec: number;
  /** Presence per subject (PRESENCE_SUBJECTS, PRESENCE_MAX_MEMBERS). */
  subjectPresence: { subjects: string[]; maxMembers: number };
  history: { subjects: string[]; maxAgeSec: number; maxMsgs: number };
}

export interface NatsConfig {
  servers: string[];
  prefix: string;
  user: string | undefined;
  pass: string | undefined;
  token: string | undefined;
  nkeySeedFile: string | undefined;
  credsFile: string | undefined;
  tlsCaFile: string | undefined;
  // Production NATS: connection liveness, mutual TLS, startup, JetStream (src/bus/nats-connection.ts).
  tlsCertFile: string | undefined;
  tlsKeyFile: string | undefined;
  pingIntervalSec: number;
  maxPingsOut: number;
  connectTimeoutMs: number;
  reconnectWaitMs: number;
  reconnectJitterMs: number;
  startupRetrySec: number;
  jsDomain: string | undefined;
  jsApiPrefix: string | undefined;
  /** 0: as many as the JetStream cluster can place, up to 3. */
  jsReplicas: number;
  jsPlacementCluster: string | undefined;
  jsPlacementTags: string[];
  publishAckTimeoutMs: number;
}

export interface ConfigSources {
  /** Values from command-line flags, by setting key (HEADER_<Name> for --header). */
  flags?: Record<string, string | undefined>;
  env?: Record<string, string | undefined>;
  /** Path of a JSON config file (flag --config or env WSBRIDGE_CONFIG). */
  file?: string | undefined;
  /** Components from the command line, in the config file's shape. */
  components?: Array<Record<string, unknown>>;
}

type Raw = { value: unknown; source: string };

export function parseHostPort(text: string): HostPort | null {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:\s/]+)):(\d{1,5})$/.exec(text);
  if (!m) return null;
  const port = Number(m[3]);
  if (port > 65535) return null;
  return { host: m[1] ?? m[2]!, port };
}

function expected(s: Setting): string {
  const t = s.type;
  switch (t.kind) {
    case 'int': return `an integer from ${t.min} to ${t.max}`;
    case 'bool': return 'true or false';
    case 'enum': return `one of ${t.values.join(', ')}`;
    case 'list': return 'a comma-separated list';
    case 'hostport': return 'HOST:PORT (port 0-65535; [v6addr]:PORT for IPv6)';
    case 'wsurl': return 'a ws:// or wss:// URL';
    case 'json': return 'JSON';
    case 'string': return 'a string';
  }
}

function parseValue(s: Setting, raw: Raw): unknown {
  const v = raw.value;
  const fail = (): never => {
    const shown = typeof v === 'string' ? JSON.stringify(v) : JSON.stringify(v) ?? String(v);
    throw new ConfigError(`${s.key} (from ${raw.source}): expected ${expected(s)}, got ${shown}`);
  };
  const t = s.type;
  switch (t.kind) {
    case 'string':
      if (typeof v !== 'string') fail();
      return v;
    case 'int': {
      const n = typeof v === 'number' ? v : typeof v === 'string' && /^-?\d+$/.test(v.trim()) ? Number(v) : NaN;
      if (!Number.isSafeInteger(n) || n < t.min || n > t.max) fail();
      return n;
    }
    case 'bool': {
      if (typeof v === 'boolean') return v;
      const l = typeof v === 'string' ? v.trim().toLowerCase() : '';
      if (['true', '1', 'yes', 'on'].includes(l)) return true;
      if (['false', '0', 'no', 'off'].includes(l)) return false;
      return fail();
    }
    case 'enum':
      if (typeof v !== 'string' || !t.values.includes(v)) fail();
      return v;
    case 'list': {
      if (Array.isArray(v) && v.every((x) => typeof x === 'string')) return v as string[];
      if (typeof v !== 'string') fail();
      return (v as string).split(',').map((x) => x.trim()).filter((x) => x.length > 0);
    }
    case 'hostport': {
      const hp = typeof v === 'string' ? parseHostPort(v) : null;
      if (!hp) fail();
      return hp;
    }
    case 'wsurl':
      if (typeof v !== 'string' || !isWsUrl(v)) fail();
      return v;
    case 'json':
      if (typeof v !== 'string') return v;
      try {
        return JSON.parse(v);
      } catch {
        return fail();
      }
  }
}

function isWsUrl(v: string): boolean {
  try {
    const u = new URL(v);
    return u.protocol === 'ws:' || u.protocol === 'wss:';
  } catch {
    return false;
  }
}

function readFile(path: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new ConfigError(`config file ${path}: cannot read it (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
  }
  let obj: unknown;
  try {
    obj = JSON.parse(text);
  } catch (err) {
    throw new ConfigError(`config file ${path}: not valid JSON (${(err as Error).message})`);
  }
  if (typeof obj !== 'object' || obj === null || Array.isArray(obj)) throw new ConfigError(`config file ${path}: expected a JSON object`);
  return obj as Record<string, unknown>;
}

const FILE_EXTRA_KEYS = new Set(['links', 'components', 'tokens']);

function checkKeys(obj: Record<string, unknown>, where: string, allowed: (key: string) => boolean): void {
  for (const k of Object.keys(obj)) {
    if (!allowed(k)) throw new ConfigError(`${where}: unknown key ${k} (see docs/configuration.md)`);
  }
}

export function loadConfig(sources: ConfigSources): Config {
  const env = sources.env ?? {};
  const flags = sources.flags ?? {};
  const filePath = sources.file ?? env.WSBRIDGE_CONFIG;
  const file = filePath ? readFile(filePath) : {};
  const fileSource = `config file ${filePath}`;
  checkKeys(file, fileSource, (k) => SETTING_BY_KEY.has(k) || k.startsWith('HEADER_') || FILE_EXTRA_KEYS.has(k));

  // Layer the raw values: later sources override earlier ones.
  const raw = new Map<string, Raw>();
  const layer = (values: Record<string, unknown>, source: string, pickHeaders: boolean) => {
    for (const [k, v] of Object.entries(values)) {
      if (v === undefined) continue;
      if (SETTING_BY_KEY.has(k) || (pickHeaders && k.startsWith('HEADER_') && k.length > 7)) raw.set(k, { value: v, source });
    }
  };
  layer(file, fileSource, true);
  layer(env, 'env', true);
  layer(flags, 'flag', true);

  const get = getter(raw);


  // MODE decides what runs: a bad value is an error in any layer, also one a higher layer
  // overrides (the command line's serve/connect), never a silent fallback to a server.
  for (const [values, source] of [[file, fileSource], [env, 'env'], [flags, 'flag']] as const) {
    if (values.MODE !== undefined) parseValue(SETTING_BY_KEY.get('MODE')!, { value: values.MODE, source });
  }
  const mode = get<'server' | 'client'>('MODE');
  let listen: HostPort | undefined = raw.has('LISTEN') || mode === 'server' ? get<HostPort>('LISTEN') : undefined;
  // The seed's URI is the bind address in server mode; LISTEN, when given, wins.
  const uriRaw = raw.get('URI');
  if (mode === 'server' && uriRaw && !raw.has('LISTEN')) {
    const hp = typeof uriRaw.value === 'string' ? parseHostPort(uriRaw.value.replace(/^wss?:\/\//, '').replace(/\/.*$/, '')) : null;
    if (!hp) throw new ConfigError(`URI (from ${uriRaw.source}): in server mode expected HOST:PORT, got ${JSON.stringify(uriRaw.value)}`);
    listen = hp;
  }

  // PORT (hosting platforms set it) replaces the port of a LISTEN/URI from a lower layer.
  const portRaw = raw.get('PORT');
  if (mode === 'server' && portRaw && listen) {
    const rank = (r: Raw | undefined) => (r === undefined ? 0 : r.source === 'flag' ? 3 : r.source === 'env' ? 2 : 1);
    if (rank(portRaw) > Math.max(rank(raw.get('LISTEN')), rank(uriRaw))) listen = { ...listen, port: get<number>('PORT') };
  }

  const config: Config = {
    mode,
    listen,
    adminToken: get<string | undefined>('ADMIN_TOKEN') || undefined,
    sessionTracking: get('ENABLE_SESSION_TRACKING'),
    demoPage: get('DEMO_PAGE'),
    metricsToken: get<string | undefined>('METRICS_TOKEN') || undefined,
    auth: {
      token: get<string | undefined>('SERVER_AUTH_TOKEN') ?? (mode === 'server' ? get<string | undefined>('AUTH_TOKEN') : undefined),
      jwtSecret: get('JWT_SECRET'),
      jwtPublicKeyFile: get('JWT_PUBLIC_KEY_FILE'),
      jwks: get('JWT_JWKS'),
      jwtIssuer: get('JWT_ISSUER'),
      jwtAudience: get('JWT_AUDIENCE'),
      tokens: namedTokens(file.tokens, `${fileSource}: tokens`),
      requireExp: get('REQUIRE_JWT_EXP'),
      maxLifetimeSec: get('JWT_MAX_LIFETIME_SEC'),
    },
    authDeadlineMs: get('AUTH_DEADLINE_MS'),
    tls: undefined,
    limits: {
      maxConnections: get('MAX_CONNECTIONS'),
      maxConnectionsPerIp: get('MAX_CONNECTIONS_PER_IP'),
      rateMsgs: get('RATE_LIMIT_MSGS'),
      rateBytes: get('RATE_LIMIT_BYTES'),
      idleTimeoutSec: get('IDLE_TIMEOUT_SEC'),
      handshakeTimeoutMs: get('HANDSHAKE_TIMEOUT_MS'),
      pingIntervalSec: get('PING_INTERVAL_SEC'),
      handshakeRatePerIp: get('HANDSHAKE_RATE_PER_IP'),
      authFailureBackoffMs: get('AUTH_FAILURE_BACKOFF_MS'),
    },
    trustedProxies: get('TRUSTED_PROXIES'),
    proxyProtocol: get('PROXY_PROTOCOL'),
    deflate: { enabled: get('PERMESSAGE_DEFLATE'), thresholdBytes: get('DEFLATE_THRESHOLD_BYTES') },
    allowedOrigins: get('ALLOWED_ORIGINS'),
    maxMessageBytes: get('MAX_MESSAGE_BYTES'),
    maxBufferedBytes: get('MAX_BUFFERED_BYTES'),
    slowConsumerPolicy: get('SLOW_CONSUMER_POLICY'),
    maxSubscriptions: get('MAX_SUBSCRIPTIONS'),
    maxPendingRequests: get('MAX_PENDING_REQUESTS'),
    grants: { ttlMs: get('REPLY_GRANT_TTL_MS'), maxReplies: get('REPLY_GRANT_MAX_REPLIES'), maxGrants: get('REPLY_GRANTS_MAX') },
    requestTimeoutMs: get('REQUEST_TIMEOUT_MS'),
    maxRequestTimeoutMs: get('MAX_REQUEST_TIMEOUT_MS'),
    shutdownTimeoutMs: get('SHUTDOWN_TIMEOUT_MS'),
    logLevel: get('LOG_LEVEL'),
    logFormat: get('LOG_FORMAT'),
    links: [],
    linkBase: {},
    components: [],
    componentDefaults: { poolSize: 0, timeoutMs: 0, maxQueue: 0 },
    outboundAllow: get('OUTBOUND_ALLOW'),
    outboundMaxConnections: get('OUTBOUND_MAX_CONNECTIONS'),
    outboundReceiveQueue: get('OUTBOUND_RECEIVE_QUEUE'),
    outboundTimeoutMs: get('OUTBOUND_TIMEOUT_MS'),
    nats: undefined,
    presenceTtlSec: get('PRESENCE_TTL_SEC'),
    subjectPresence: { subjects: get('PRESENCE_SUBJECTS'), maxMembers: get('PRESENCE_MAX_MEMBERS') },
    history: { subjects: get('HISTORY_SUBJECTS'), maxAgeSec: get('HISTORY_MAX_AGE_SEC'), maxMsgs: get('HISTORY_MAX_MSGS') },
    componentCacheDir: get<string | undefined>('COMPONENT_CACHE_DIR') ?? join(env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'wsbridge', 'components'),
  };
  const fileComponents = file.components;
  if (fileComponents !== undefined && !Array.isArray(fileComponents)) throw new ConfigError(`${fileSource}: components must be an array of objects`);
  const componentEntries: Array<[Record<string, unknown>, string]> = [
    ...((fileComponents as unknown[] | undefined) ?? []).map((c, i): [Record<string, unknown>, string] => [c as Record<string, unknown>, `${fileSource}: components[${i}]`]),
    ...(sources.components ?? []).map((c, i): [Record<string, unknown>, string] => [c, `--component #${i + 1}`]),
  ];
  // Paths in a config file are the file's: relative ones resolve from its folder, wherever the
  // gateway starts. On the command line they stay relative to the current directory.
  const fileDir = filePath ? dirname(resolve(filePath)) : undefined;
  const fileEntries = ((fileComponents as unknown[] | undefined) ?? []).length;
  config.componentDefaults = { poolSize: get('COMPONENT_POOL_SIZE'), timeoutMs: get('COMPONENT_TIMEOUT_MS'), maxQueue: get('COMPONENT_MAX_QUEUE') };
  config.components = componentEntries.map(([c, where], i) => componentConfig(c, where, config.componentDefaults, i < fileEntries ? fileDir : undefined));
  const ids = new Set<string>();
  for (const c of config.components) {
    if (ids.has(c.id)) throw new ConfigError(`components: two components have the id ${JSON.stringify(c.id)}; give one an "id"`);
    ids.add(c.id);
  }
  const natsServers = get<string[]>('NATS_URL');
  if (natsServers.length > 0) {
    for (const u of natsServers) {
      if (!/^(nats|tls):\/\/[^\s/]+$/.test(u)) throw new ConfigError(`NATS_URL: expected nats://host:port or tls://host:port, got ${JSON.stringify(u)}`);
    }
    const prefix = get<string>('NATS_PREFIX');
    if (prefix !== '' && (!prefix.endsWith('.') || subjectError(prefix.slice(0, -1), false))) throw new ConfigError(`NATS_PREFIX: expected subject tokens ending with a dot, like "wsb.", got ${JSON.stringify(prefix)}`);
    config.nats = {
      servers: natsServers,
      prefix,
      user: get('NATS_USER'),
      pass: get('NATS_PASSWORD'),
      token: get('NATS_TOKEN'),
      nkeySeedFile: get('NATS_NKEY_SEED_FILE'),
      credsFile: get('NATS_CREDS_FILE'),
      tlsCaFile: get('NATS_TLS_CA_FILE'),
      ...productionNats(get),
    };
  }
  // Subject patterns the gateway keeps something for: user subjects only.
  for (const [key, patterns] of [['HISTORY_SUBJECTS', config.history.subjects], ['PRESENCE_SUBJECTS', config.subjectPresence.subjects]] as const) {
    for (const p of patterns) {
      const e = subjectError(p, true) ?? (isReserved(p) ? 'reserved (_WSB., _INBOX. and $ subjects are the gateway\'s and NATS\'s own)' : null);
      if (e) throw new ConfigError(`${key}: ${JSON.stringify(p)}: ${e}`);
    }
  }
  if (config.history.subjects.length > 0 && !config.nats) throw new ConfigError('HISTORY_SUBJECTS needs NATS_URL: history is kept in NATS JetStream');
  const tlsCert = get<string | undefined>('TLS_CERT');
  const tlsKey = get<string | undefined>('TLS_KEY');
  if ((tlsCert === undefined) !== (tlsKey === undefined)) throw new ConfigError('TLS_CERT and TLS_KEY go together: set both or neither');
  // Client certificates without TLS would silently serve plain ws:// to anyone.
  if (get('TLS_CLIENT_CA') !== undefined && tlsCert === undefined) throw new ConfigError('TLS_CLIENT_CA needs TLS_CERT and TLS_KEY: mutual TLS is only possible over TLS');
  if (tlsCert !== undefined && tlsKey !== undefined) {
    for (const [k, f] of [['TLS_CERT', tlsCert], ['TLS_KEY', tlsKey], ['TLS_CLIENT_CA', get<string | undefined>('TLS_CLIENT_CA')]] as const) {
      if (f === undefined) continue;
      try {
        readFileSync(f);
      } catch (e) {
        throw new ConfigError(`${k}: cannot read ${f} (${(e as NodeJS.ErrnoException).code ?? String(e)})`);
      }
    }
    config.tls = { cert: tlsCert, key: tlsKey, clientCa: get('TLS_CLIENT_CA') };
  }
  if ([config.auth.jwtSecret, config.auth.jwtPublicKeyFile, config.auth.jwks].filter((x) => x !== undefined).length > 1) {
    throw new ConfigError('JWT_SECRET, JWT_PUBLIC_KEY_FILE and JWT_JWKS are alternatives: set one');
  }
  if (mode === 'server') jwtKey(config.auth); // a key file that cannot be read or parsed is a ConfigError here
  for (const p of config.trustedProxies) {
    const e = trustedProxyError(p);
    if (e) throw new ConfigError(`TRUSTED_PROXIES: ${JSON.stringify(p)}: ${e}`);
  }
  if (config.proxyProtocol && config.trustedProxies.length === 0) throw new ConfigError('PROXY_PROTOCOL needs TRUSTED_PROXIES: the addresses of the load balancers allowed to send PROXY headers');
  if (config.requestTimeoutMs > config.maxRequestTimeoutMs) {
    throw new ConfigError(`REQUEST_TIMEOUT_MS (${config.requestTimeoutMs}) must not exceed MAX_REQUEST_TIMEOUT_MS (${config.maxRequestTimeoutMs})`);
  }

  if (mode === 'client') {
    const fileLinks = file.links;
    if (fileLinks !== undefined && !Array.isArray(fileLinks)) throw new ConfigError(`${fileSource}: links must be an array of objects`);
    // With `links` in the file, each entry is a link whose own keys override the top-level
    // values, whatever they are (a link may set a value equal to the default). A URI given on
    // the command line or in env adds one more link.
    const entries: Array<Record<string, unknown>> = (fileLinks as unknown[] | undefined)?.map((l, i) => {
      if (typeof l !== 'object' || l === null || Array.isArray(l)) throw new ConfigError(`${fileSource}: links[${i}] must be an object`);
      checkKeys(l as Record<string, unknown>, `${fileSource}: links[${i}]`, isLinkKey);
      return l as Record<string, unknown>;
    }) ?? [];
    const uriFromOutside = uriRaw && uriRaw.source !== fileSource;
    const links: Array<{ own: Record<string, unknown>; where: string }> = entries.map((own, i) => ({ own, where: `${fileSource}: links[${i}]` }));
    if (links.length === 0 || uriFromOutside) links.push({ own: {}, where: 'link' });
    config.links = links.map(({ own, where }) => linkConfig(own, where, raw, get));
    const conflict = sharingConflict(config.links);
    if (conflict) throw new ConfigError(conflict);
  }
  // What links made later (programmatic, operator API) inherit: the top-level link values. In
  // server mode AUTH_TOKEN is the token clients must present, never sent to a remote.
  config.linkBase = Object.fromEntries([...raw].filter(([k]) => isLinkKey(k) && !(k === 'AUTH_TOKEN' && mode === 'server')));
  return config;
}

/** The production NATS settings (liveness, mutual TLS, startup, JetStream), checked. */
function productionNats(get: <T>(key: string) => T): Omit<NatsConfig, 'servers' | 'prefix' | 'user' | 'pass' | 'token' | 'nkeySeedFile' | 'credsFile' | 'tlsCaFile'> {
  const tlsCertFile = get<string | undefined>('NATS_TLS_CERT_FILE');
  const tlsKeyFile = get<string | undefined>('NATS_TLS_KEY_FILE');
  if ((tlsCertFile === undefined) !== (tlsKeyFile === undefined)) throw new ConfigError('NATS_TLS_CERT_FILE and NATS_TLS_KEY_FILE go together: set both or neither');
  // Unreadable files fail here, naming the setting, rather than as a vague TLS error at connect.
  for (const k of ['NATS_TLS_CA_FILE', 'NATS_TLS_CERT_FILE', 'NATS_TLS_KEY_FILE', 'NATS_NKEY_SEED_FILE', 'NATS_CREDS_FILE']) {
    const f = get<string | undefined>(k);
    if (f === undefined) continue;
    try {
      readFileSync(f);
    } catch (e) {
      throw new ConfigError(`${k}: cannot read ${f} (${(e as NodeJS.ErrnoException).code ?? String(e)})`);
    }
  }
  // Files that do not parse, or a key that does not match its certificate, are configuration
  // errors too: found here, not as a TLS failure against every server at startup.
  const caFile = get<string | undefined>('NATS_TLS_CA_FILE');
  if (caFile !== undefined) {
    const blocks = readFileSync(caFile, 'utf8').match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
    try {
      if (blocks.length === 0) throw new Error('no PEM certificate in it');
      for (const b of blocks) new X509Certificate(b);
    } catch (e) {
      throw new ConfigError(`NATS_TLS_CA_FILE: ${caFile} is not a PEM CA certificate (${(e as Error).message})`);
    }
  }
  if (tlsCertFile !== undefined && tlsKeyFile !== undefined) {
    try {
      createSecureContext({ cert: readFileSync(tlsCertFile), key: readFileSync(tlsKeyFile) });
    } catch (e) {
      throw new ConfigError(`NATS_TLS_CERT_FILE / NATS_TLS_KEY_FILE: ${tlsCertFile} and ${tlsKeyFile} are not a PEM certificate and its private key (${(e as Error).message})`);
    }
  }
  const jsDomain = get<string | undefined>('NATS_JS_DOMAIN') || undefined;
  const jsApiPrefix = get<string | undefined>('NATS_JS_API_PREFIX') || undefined;
  if (jsDomain !== undefined && jsApiPrefix !== undefined) throw new ConfigError('NATS_JS_DOMAIN and NATS_JS_API_PREFIX are alternatives: set one');
  if (jsDomain !== undefined && !/^[A-Za-z0-9_-]+$/.test(jsDomain)) throw new ConfigError(`NATS_JS_DOMAIN: expected a JetStream domain name (letters, digits, _ and -), got ${JSON.stringify(jsDomain)}`);
  if (jsApiPrefix !== undefined && (subjectError(jsApiPrefix, false) || jsApiPrefix.endsWith('.'))) throw new ConfigError(`NATS_JS_API_PREFIX: expected subject tokens without wildcards, like "JS.hub.API", got ${JSON.stringify(jsApiPrefix)}`);
  const jsPlacementCluster = get<string | undefined>('NATS_JS_PLACEMENT_CLUSTER') || undefined;
  if (jsPlacementCluster !== undefined && !/^[^\s.*>]+$/.test(jsPlacementCluster)) throw new ConfigError(`NATS_JS_PLACEMENT_CLUSTER: expected a NATS cluster name, got ${JSON.stringify(jsPlacementCluster)}`);
  const jsPlacementTags = get<string[]>('NATS_JS_PLACEMENT_TAGS');
  for (const t of jsPlacementTags) {
    if (!/^\S+$/.test(t)) throw new ConfigError(`NATS_JS_PLACEMENT_TAGS: ${JSON.stringify(t)} is not a server tag`);
  }
  return {
    tlsCertFile,
    tlsKeyFile,
    pingIntervalSec: get('NATS_PING_INTERVAL_SEC'),
    maxPingsOut: get('NATS_MAX_PINGS_OUT'),
    connectTimeoutMs: get('NATS_CONNECT_TIMEOUT_MS'),
    reconnectWaitMs: get('NATS_RECONNECT_WAIT_MS'),
    reconnectJitterMs: get('NATS_RECONNECT_JITTER_MS'),
    startupRetrySec: get('NATS_STARTUP_RETRY_SEC'),
    jsDomain,
    jsApiPrefix,
    jsReplicas: get('NATS_JS_REPLICAS'),
    jsPlacementCluster,
    jsPlacementTags,
    publishAckTimeoutMs: get('NATS_PUBLISH_ACK_TIMEOUT_MS'),
  };
}

const COMPONENT_KEYS = new Set(['path', 'id', 'subscriptions', 'queue', 'pool_size', 'timeout_ms', 'max_queue', 'env', 'preopens']);

export interface ComponentDefaults {
  poolSize: number;
  timeoutMs: number;
  maxQueue: number;
}

/** A component from its config-file shape ({path, id, subscriptions, …}); ConfigError naming `where`. */
export function componentConfig(c: unknown, where: string, defaults: ComponentDefaults, baseDir?: string): ComponentConfig {
  if (typeof c !== 'object' || c === null || Array.isArray(c)) throw new ConfigError(`${where}: must be an object`);
  const o = c as Record<string, unknown>;
  checkKeys(o, where, (k) => COMPONENT_KEYS.has(k));
  if (typeof o.path !== 'string' || o.path.length === 0) throw new ConfigError(`${where}: path must be the path of a .wasm component`);
  const id = o.id === undefined ? defaultComponentId(o.path) : o.id;
  if (typeof id !== 'string' || id.length === 0) throw new ConfigError(`${where}: id must be a non-empty string`);
  let queue: string | undefined;
  if (o.queue !== undefined) {
    const e = subjectError(o.queue, false);
    if (e) throw new ConfigError(`${where}: queue: ${e}`);
    queue = o.queue as string;
  }
  const subs = o.subscriptions ?? [];
  if (!Array.isArray(subs)) throw new ConfigError(`${where}: subscriptions must be an array of subject patterns`);
  const subscriptions = subs.map((s: unknown) => {
    const subject = typeof s === 'object' && s !== null ? (s as Record<string, unknown>).subject : s;
    const q = typeof s === 'object' && s !== null ? (s as Record<string, unknown>).queue ?? queue : queue;
    const e = subjectError(subject, true) ?? (typeof subject === 'string' && isReserved(subject) ? 'reserved (_WSB., _INBOX. and $ subjects are the gateway\'s and NATS\'s own)' : null);
    if (e) throw new ConfigError(`${where}: subscription ${JSON.stringify(subject)}: ${e}`);
    if (q !== undefined && (typeof q !== 'string' || subjectError(q, false))) throw new ConfigError(`${where}: queue ${JSON.stringify(q)} is not a valid group name`);
    return { subject: subject as string, queue: q as string | undefined };
  });
  const num = (key: string, def: number, min: number, max: number): number => {
    const v = o[key];
    if (v === undefined) return def;
    const n = typeof v === 'string' && /^\d+$/.test(v) ? Number(v) : v;
    if (typeof n !== 'number' || !Number.isInteger(n) || n < min || n > max) throw new ConfigError(`${where}: ${key}: expected an integer from ${min} to ${max}, got ${JSON.stringify(v)}`);
    return n;
  };
  const preopens = stringMap(o.preopens, `${where}: preopens`);
  return {
    id,
    path: baseDir ? resolve(baseDir, o.path) : o.path,
    subscriptions,
    poolSize: num('pool_size', defaults.poolSize, 1, 1024),
    timeoutMs: num('timeout_ms', defaults.timeoutMs, 1, 3_600_000),
    maxQueue: num('max_queue', defaults.maxQueue, 0, 1_000_000),
    env: stringMap(o.env, `${where}: env`),
    preopens: baseDir ? Object.fromEntries(Object.entries(preopens).map(([guest, host]) => [guest, resolve(baseDir, host)])) : preopens,
  };
}

/** The config file's `tokens`: [{"name","token","pub"?,"subs"?}], static tokens with permissions. */
function namedTokens(v: unknown, where: string): NamedToken[] | undefined {
  if (v === undefined) return undefined;
  if (!Array.isArray(v)) throw new ConfigError(`${where}: expected an array of {"name","token","pub","subs"}`);
  const names = new Set<string>();
  return v.map((e: unknown, i) => {
    const at = `${where}[${i}]`;
    if (typeof e !== 'object' || e === null || Array.isArray(e)) throw new ConfigError(`${at}: must be an object`);
    const o = e as Record<string, unknown>;
    checkKeys(o, at, (k) => ['name', 'token', 'pub', 'subs'].includes(k));
    if (typeof o.name !== 'string' || !/^[A-Za-z0-9_.@-]{1,64}$/.test(o.name)) throw new ConfigError(`${at}: name must be 1-64 characters of A-Z a-z 0-9 _ . @ -`);
    if (names.has(o.name)) throw new ConfigError(`${at}: two tokens are named ${JSON.stringify(o.name)}`);
    names.add(o.name);
    if (typeof o.token !== 'string' || o.token.length < 16) throw new ConfigError(`${at}: token must be a string of at least 16 characters`);
    const patterns = (key: 'pub' | 'subs'): string[] | undefined => {
      const list = o[key];
      if (list === undefined) return undefined;
      if (!Array.isArray(list)) throw new ConfigError(`${at}: ${key} must be an array of subject patterns`);
      for (const p of list) {
        const err = subjectError(p, true) ?? (isReserved(p as string) ? 'reserved' : null);
        if (err) throw new ConfigError(`${at}: ${key}: ${JSON.stringify(p)}: ${err}`);
      }
      return list as string[];
    };
    return { name: o.name, token: o.token, pub: patterns('pub'), subs: patterns('subs') };
  });
}

function stringMap(v: unknown, where: string): Record<string, string> {
  if (v === undefined) return {};
  if (typeof v !== 'object' || v === null || Array.isArray(v) || !Object.values(v).every((x) => typeof x === 'string')) {
    throw new ConfigError(`${where}: expected an object of strings`);
  }
  return { ...(v as Record<string, string>) };
}

type Get = <T>(key: string, override?: Raw) => T;

/** Reads a setting from the layered raw values (or `override`), parsed; the default when unset. */
function getter(raw: Map<string, Raw>): Get {
  return <T>(key: string, override?: Raw): T => {
    const s = SETTING_BY_KEY.get(key)!;
    const r = override ?? raw.get(key);
    if (r === undefined) {
      // Defaults go through the same parser (a HOST:PORT default becomes {host, port}).
      return (s.default === undefined ? undefined : parseValue(s, { value: s.default, source: 'default' })) as T;
    }
    return parseValue(s, r) as T;
  };
}

/** Whether `key` may be set by one link (a config-file link, a programmatic or API link). */
export function isLinkKey(key: string): boolean {
  return SETTING_BY_KEY.get(key)?.perLink === true || (key.startsWith('HEADER_') && key.length > 7);
}

/**
 * A link's configuration from its own values over the gateway's top-level ones (`base`, see
 * Config.linkBase), as config-file links resolve: for programmatic links (linkTarget/linkSource
 * with a URI) and links added over the operator API. A bad value is a ConfigError naming `where`.
 */
export function resolveLinkConfig(own: Record<string, unknown>, base: Record<string, Raw>, where: string): LinkConfig {
  checkKeys(own, where, isLinkKey);
  const raw = new Map(Object.entries(base));
  return linkConfig(own, where, raw, getter(raw));
}

function linkConfig(own: Record<string, unknown>, where: string, raw: Map<string, Raw>, get: Get): LinkConfig {
  const pick = <T>(key: string): T => (own[key] !== undefined ? get<T>(key, { value: own[key], source: where }) : get<T>(key));
  const uri = own.URI !== undefined ? own.URI : raw.get('URI')?.value ?? 'ws://127.0.0.1:8080/ws';
  const uriSource = own.URI !== undefined ? where : raw.get('URI')?.source ?? 'default';
  if (typeof uri !== 'string' || !isWsUrl(uri)) {
    throw new ConfigError(`URI (from ${uriSource}): expected a ws:// or wss:// URL, got ${JSON.stringify(uri)}`);
  }
  const headers: Record<string, string> = {};
  const addHeaders = (entries: Iterable<[string, unknown, string]>) => {
    for (const [k, v, source] of entries) {
      if (!k.startsWith('HEADER_') || k.length <= 7) continue;
      const name = k.slice(7);
      if (!/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(name)) throw new ConfigError(`${k} (from ${source}): ${JSON.stringify(name)} is not a valid HTTP header name`);
      if (typeof v !== 'string' || /[\r\n\0]/.test(v)) throw new ConfigError(`${k} (from ${source}): expected a header value without CR, LF or NUL`);
      headers[name] = v;
    }
  };
  addHeaders([...raw.entries()].map(([k, r]) => [k, r.value, r.source]));
  addHeaders(Object.entries(own).map(([k, v]) => [k, v, where]));
  const rawSubject = pick<string>('RAW_SUBJECT');
  const subjErr = subjectError(rawSubject, false) ?? (isReserved(rawSubject) ? 'reserved' : null);
  if (subjErr) throw new ConfigError(`RAW_SUBJECT: ${subjErr}`);
  const rawOutSubject = pick<string | undefined>('RAW_OUT_SUBJECT') || undefined;
  if (rawOutSubject !== undefined) {
    const e = subjectError(rawOutSubject, false) ?? (isReserved(rawOutSubject) ? 'reserved' : rawOutSubject === rawSubject ? 'the same as RAW_SUBJECT (what the remote sends would go straight back)' : null);
    if (e) throw new ConfigError(`RAW_OUT_SUBJECT: ${JSON.stringify(rawOutSubject)}: ${e}`);
  }
  const forward = pick<string[]>('FORWARD');
  for (const f of forward) {
    const e = subjectError(f, true) ?? (isReserved(f) ? 'reserved (_WSB., _INBOX. and $ subjects never leave the gateway)' : null);
    if (e) throw new ConfigError(`FORWARD: ${JSON.stringify(f)}: ${e}`);
  }
  const reconnect: ReconnectSettings = {
    baseMs: pick<number>('RECONNECT_BASE_MS'),
    maxMs: pick<number>('RECONNECT_MAX_MS'),
    maxAttempts: pick<number>('RECONNECT_MAX_ATTEMPTS'),
    stableMs: pick<number>('RECONNECT_STABLE_SEC') * 1000,
    onPermanent: pick<'retry' | 'give_up'>('PERMANENT_FAILURE_POLICY'),
  };
  if (reconnect.baseMs > reconnect.maxMs) throw new ConfigError(`RECONNECT_BASE_MS (${reconnect.baseMs}) must not exceed RECONNECT_MAX_MS (${reconnect.maxMs})`);
  const authToken = pick<string | undefined>('AUTH_TOKEN') || undefined;
  const authTokenFile = pick<string | undefined>('AUTH_TOKEN_FILE') || undefined;
  if (authToken !== undefined && authTokenFile !== undefined) throw new ConfigError(`AUTH_TOKEN and AUTH_TOKEN_FILE are alternatives: ${where} has both (a link inherits the top-level one)`);
  if (authTokenFile !== undefined) {
    try {
      readFileSync(authTokenFile);
    } catch (e) {
      throw new ConfigError(`AUTH_TOKEN_FILE: cannot read ${authTokenFile} (${(e as NodeJS.ErrnoException).code ?? String(e)})`);
    }
  }
  const tls = {
    caFile: pick<string | undefined>('REMOTE_TLS_CA_FILE') || undefined,
    certFile: pick<string | undefined>('REMOTE_TLS_CERT') || undefined,
    keyFile: pick<string | undefined>('REMOTE_TLS_KEY') || undefined,
    servername: pick<string | undefined>('REMOTE_TLS_SERVERNAME') || undefined,
  };
  if ((tls.certFile === undefined) !== (tls.keyFile === undefined)) throw new ConfigError(`REMOTE_TLS_CERT and REMOTE_TLS_KEY go together (${where}): set both or neither`);
  for (const [k, f] of [['REMOTE_TLS_CA_FILE', tls.caFile], ['REMOTE_TLS_CERT', tls.certFile], ['REMOTE_TLS_KEY', tls.keyFile]] as const) {
    if (f === undefined) continue;
    try {
      readFileSync(f);
    } catch (e) {
      throw new ConfigError(`${k}: cannot read ${f} (${(e as NodeJS.ErrnoException).code ?? String(e)})`);
    }
  }
  const proxyUrl = pick<string | undefined>('PROXY_URL') || undefined;
  if (proxyUrl !== undefined) {
    let ok = false;
    try {
      const u = new URL(proxyUrl);
      ok = (u.protocol === 'http:' || u.protocol === 'https:') && u.hostname !== '' && (u.pathname === '/' || u.pathname === '');
    } catch { /* not a URL */ }
    if (!ok) throw new ConfigError(`PROXY_URL (${where}): expected http://[user:password@]host:port or https://…, got ${JSON.stringify(proxyUrl)}`);
  }
  const login = pick<unknown>('LOGIN_FRAMES') ?? [];
  if (!Array.isArray(login) || !login.every((f) => typeof f === 'string' || (typeof f === 'object' && f !== null))) {
    throw new ConfigError(`LOGIN_FRAMES (${where}): expected a JSON array of strings (text frames) and objects (sent as JSON text), got ${JSON.stringify(login)}`);
  }
  const loginFrames = (login as unknown[]).map((f) => (typeof f === 'string' ? { text: f, json: false } : { text: JSON.stringify(f), json: true }));
  const name = pick<string | undefined>('LINK_NAME') || undefined;
  if (name !== undefined && !/^[A-Za-z0-9_.-]{1,64}$/.test(name)) throw new ConfigError(`LINK_NAME (from ${own.LINK_NAME !== undefined ? where : raw.get('LINK_NAME')?.source}): expected 1-64 of A-Z a-z 0-9 _ . -, got ${JSON.stringify(name)}`);
  return {
    name,
    where,
    uri,
    authToken,
    authTokenFile,
    tls,
    proxyUrl,
    loginFrames,
    headers,
    subprotocols: pick('SUBPROTOCOLS'),
    requireSubprotocol: pick('SUBPROTOCOL_REQUIRED'),
    connectTimeoutMs: pick<number>('CONNECT_TIMEOUT_SEC') * 1000,
    reconnect,
    keepaliveIntervalMs: pick<number>('KEEPALIVE_INTERVAL_SEC') * 1000,
    rawSubject,
    forward,
    forwardReplies: pick('FORWARD_REPLIES'),
    offlineQueueMax: pick('OFFLINE_QUEUE_MAX'),
    maxMessageBytes: pick('MAX_MESSAGE_BYTES'),
    rawOutSubject,
    rawOutFormat: pick('RAW_OUT_FORMAT'),
    maxBufferedBytes: pick('MAX_BUFFERED_BYTES'),
    slowPolicy: pick('SLOW_CONSUMER_POLICY'),
  };
}

/** The settings table, for --help and docs. */
export { SETTINGS };
