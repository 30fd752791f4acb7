// Every setting wsbridge reads, in one table: its key (also the env var and the config-file key),
// its type, default and meaning. The loader, `--help` and docs/configuration.md all follow this
// table; test/config.test.ts fails if the doc misses a key.

export type SettingType =
  | { kind: 'string' }
  | { kind: 'int'; min: number; max: number }
  | { kind: 'bool' }
  | { kind: 'enum'; values: readonly string[] }
  | { kind: 'list' }
  | { kind: 'hostport' }
  | { kind: 'wsurl' }
  /** JSON: a value of any JSON type in the config file, its JSON text in env and flags. */
  | { kind: 'json' };

export interface Setting {
  key: string;
  type: SettingType;
  default: string | number | boolean | string[] | undefined;
  /** Applies to 'server' mode, 'client' mode (links), or 'both'. */
  scope: 'server' | 'client' | 'both';
  /** Whether a client-mode link in the config file may set it for itself. */
  perLink?: boolean;
  doc: string;
}

const int = (min: number, max: number): SettingType => ({ kind: 'int', min, max });

export const SETTINGS: readonly Setting[] = [
  { key: 'MODE', type: { kind: 'enum', values: ['server', 'client'] }, default: 'server', scope: 'both', doc: 'server: accept WebSocket clients; client: dial URI (and the config file\'s links). The commands `serve` and `connect` set it; without a command, --mode, env MODE or the config file\'s MODE picks it. Any other value is an error.' },
  { key: 'URI', type: { kind: 'string' }, default: undefined, scope: 'both', perLink: true, doc: 'Server mode: the bind address HOST:PORT (same as LISTEN). Client mode: the ws:// or wss:// URL to dial (default ws://127.0.0.1:8080/ws).' },
  { key: 'PORT', type: int(0, 65_535), default: undefined, scope: 'server', doc: 'The port of LISTEN, as hosting platforms set it: replaces the port of a LISTEN (or URI) that comes from a lower layer (default or config file under env PORT; not a LISTEN given in env or by flag). The host stays LISTEN\'s.' },
  { key: 'LISTEN', type: { kind: 'hostport' }, default: '127.0.0.1:8080', scope: 'both', doc: 'Address for the WebSocket endpoint (/ws), the operator API (/api/) and /healthz. In client mode, no listener unless set.' },
  { key: 'ADMIN_TOKEN', type: { kind: 'string' }, default: undefined, scope: 'both', doc: 'Bearer token for the operator API under /api/. Unset: the API answers 404.' },
  { key: 'ENABLE_SESSION_TRACKING', type: { kind: 'bool' }, default: true, scope: 'server', doc: 'When false, the operator API does not list, target or close individual sessions (404 session_tracking_disabled). Reply subjects keep working.' },
  { key: 'MAX_CONNECTIONS', type: int(0, 10_000_000), default: 0, scope: 'server', doc: 'Open sessions allowed on this node; more get HTTP 503 at the upgrade. 0: no limit.' },
  { key: 'MAX_CONNECTIONS_PER_IP', type: int(0, 10_000_000), default: 0, scope: 'server', doc: 'Open sessions allowed per remote IP; more get HTTP 429 at the upgrade. 0: no limit.' },
  { key: 'HANDSHAKE_RATE_PER_IP', type: int(0, 1_000_000), default: 0, scope: 'server', doc: 'WebSocket upgrades per second one client IP may start (token bucket, bursts up to one second of it); more get HTTP 429 with Retry-After. Counted in wsbridge_handshakes_throttled_total{reason="rate"}. 0: off.' },
  { key: 'AUTH_FAILURE_BACKOFF_MS', type: int(0, 3_600_000), default: 1000, scope: 'server', doc: 'After 5 failed authentications from one client IP (handshake token or first-frame auth), its upgrades get HTTP 429 with Retry-After for this long, doubled with each further failure up to 5 minutes; the count is forgotten 10 minutes after the last failure. Counted in wsbridge_handshakes_throttled_total{reason="auth_backoff"}. 0: off.' },
  { key: 'TRUSTED_PROXIES', type: { kind: 'list' }, default: [], scope: 'server', doc: 'Reverse proxies (IP addresses or CIDR blocks, comma-separated) whose Forwarded / X-Forwarded-For headers name the client: the client IP (per-IP limits, session list, logs) is the rightmost hop that is not a trusted proxy. From any other peer these headers are ignored. Empty: the TCP peer is the client.' },
  { key: 'PROXY_PROTOCOL', type: { kind: 'bool' }, default: false, scope: 'server', doc: 'Every connection must start with a PROXY protocol header (version 1 or 2, as HAProxy, AWS NLB and others send it) naming the client\'s address, and come from a TRUSTED_PROXIES peer (required with it); anything else is dropped. For load balancers that forward raw TCP, so TLS ends at wsbridge.' },
  { key: 'RATE_LIMIT_MSGS', type: int(0, 10_000_000), default: 0, scope: 'server', doc: 'Frames per second a session may send (token bucket, bursts up to one second of it). Past it a frame is dropped with error rate_limited. 0: off.' },
  { key: 'RATE_LIMIT_BYTES', type: int(0, 10_000_000_000), default: 0, scope: 'server', doc: 'Bytes per second a session may send, like RATE_LIMIT_MSGS. 0: off.' },
  { key: 'IDLE_TIMEOUT_SEC', type: int(0, 86_400), default: 0, scope: 'server', doc: 'Close a session (1000, "idle timeout") that sent no frame for this long (pongs do not count: PING_INTERVAL_SEC handles dead peers). 0: off.' },
  { key: 'HANDSHAKE_TIMEOUT_MS', type: int(100, 600_000), default: 10_000, scope: 'server', doc: 'Time a connection has to complete its TLS handshake (with TLS_CERT) and, separately, to send its HTTP request headers (the upgrade included); then it is dropped.' },
  { key: 'PING_INTERVAL_SEC', type: int(0, 3600), default: 30, scope: 'server', doc: 'Server pings every session this often; a session that has not answered the previous ping is dead and is dropped. 0: off.' },
  { key: 'PERMESSAGE_DEFLATE', type: { kind: 'bool' }, default: false, scope: 'server', doc: 'Offer permessage-deflate compression (see docs/protocol.md for its memory cost).' },
  { key: 'DEFLATE_THRESHOLD_BYTES', type: int(0, 64 * 1024 * 1024), default: 1024, scope: 'server', doc: 'With PERMESSAGE_DEFLATE: frames smaller than this are sent uncompressed.' },
  { key: 'TLS_CERT', type: { kind: 'string' }, default: undefined, scope: 'server', doc: 'PEM certificate (chain) file: serve wss:// and https:// (with TLS_KEY). Reloaded on SIGHUP without dropping sessions.' },
  { key: 'TLS_KEY', type: { kind: 'string' }, default: undefined, scope: 'server', doc: 'PEM private key file for TLS_CERT.' },
  { key: 'TLS_CLIENT_CA', type: { kind: 'string' }, default: undefined, scope: 'server', doc: 'PEM CA file: require client certificates signed by it (mutual TLS). Needs TLS_CERT and TLS_KEY.' },
  { key: 'SERVER_AUTH_TOKEN', type: { kind: 'string' }, default: undefined, scope: 'server', doc: 'Static token clients must present (see docs/protocol.md, Authentication). In server mode AUTH_TOKEN means the same.' },
  { key: 'JWT_SECRET', type: { kind: 'string' }, default: undefined, scope: 'server', doc: 'Accept HS256 JWTs signed with this secret.' },
  { key: 'JWT_PUBLIC_KEY_FILE', type: { kind: 'string' }, default: undefined, scope: 'server', doc: 'Accept RS256/ES256/EdDSA JWTs verified with this PEM public key.' },
  { key: 'JWT_JWKS', type: { kind: 'string' }, default: undefined, scope: 'server', doc: 'Accept RS256/ES256/EdDSA JWTs verified with a JWKS: a file path or an http(s) URL.' },
  { key: 'JWT_ISSUER', type: { kind: 'string' }, default: undefined, scope: 'server', doc: 'Required iss claim of JWTs.' },
  { key: 'JWT_AUDIENCE', type: { kind: 'string' }, default: undefined, scope: 'server', doc: 'Required aud claim of JWTs.' },
  { key: 'REQUIRE_JWT_EXP', type: { kind: 'bool' }, default: false, scope: 'server', doc: 'Refuse JWTs without an exp claim (otherwise such a token is valid forever).' },
  { key: 'JWT_MAX_LIFETIME_SEC', type: int(0, 10 * 365 * 24 * 3600), default: 0, scope: 'server', doc: 'Refuse JWTs whose exp is more than this many seconds after their iat (after the time of verification when iat is absent or in the future); implies REQUIRE_JWT_EXP. 0: no maximum.' },
  { key: 'AUTH_DEADLINE_MS', type: int(100, 600_000), default: 5000, scope: 'server', doc: 'With authentication on and no token in the handshake: time allowed for the first frame, {"op":"auth"}; then close 1008.' },
  { key: 'ALLOWED_ORIGINS', type: { kind: 'list' }, default: [], scope: 'server', doc: 'Browser Origins allowed to open sessions (exact, e.g. https://app.example); others get HTTP 403. Empty: any. Requests without Origin (non-browser clients) are not affected.' },
  { key: 'METRICS_TOKEN', type: { kind: 'string' }, default: undefined, scope: 'server', doc: 'When set, GET /metrics needs Authorization: Bearer <token>; unset, /metrics is open.' },
  { key: 'DEMO_PAGE', type: { kind: 'bool' }, default: true, scope: 'server', doc: 'Serve the demo page at / and the browser client SDK at /sdk/client.js.' },
  { key: 'MAX_MESSAGE_BYTES', type: int(64, 64 * 1024 * 1024), default: 1024 * 1024, scope: 'both', perLink: true, doc: 'Largest WebSocket frame accepted; larger closes the connection with 1009.' },
  { key: 'MAX_BUFFERED_BYTES', type: int(1024, 1024 * 1024 * 1024), default: 4 * 1024 * 1024, scope: 'both', perLink: true, doc: 'Per-session outbound bytes waiting to be sent (every frame: deliveries and answers to the session\'s own ops) beyond which SLOW_CONSUMER_POLICY applies. Each waiting write also counts 256 bytes for its bookkeeping; bytes batched for one event-loop tick do not count until they are written. Client mode: the bound on what one link holds for its remote, frames waiting in the socket and in the offline queue together.' },
  { key: 'SLOW_CONSUMER_POLICY', type: { kind: 'enum', values: ['close', 'drop'] }, default: 'close', scope: 'both', perLink: true, doc: 'close: close a slow session with 1013; drop: drop messages for it while it is over the bound (counted), and close it with 1013 when an answer to its own op (ok, error, pong, res) would have to be dropped. Client mode: close: close the link\'s connection with 1013 and reconnect, the frame waiting in the offline queue; drop: drop frames for the remote while it is over the bound (counted).' },
  { key: 'MAX_SUBSCRIPTIONS', type: int(1, 1_000_000), default: 1000, scope: 'server', doc: 'Subscriptions one session may hold; more gets error limit_exceeded.' },
  { key: 'REPLY_GRANT_TTL_MS', type: int(100, 3_600_000), default: 60_000, scope: 'both', doc: 'A session (or component) may answer a reply subject it was handed for this long after receiving it (see docs/protocol.md, Subjects).' },
  { key: 'REPLY_GRANT_MAX_REPLIES', type: int(1, 1000), default: 1, scope: 'both', doc: 'Answers one received message allows to its reply subject (NATS allow_responses counts the same way).' },
  { key: 'REPLY_GRANTS_MAX', type: int(1, 100_000), default: 256, scope: 'both', doc: 'Reply subjects one session or component can hold answerable at once; past it the oldest is forgotten.' },
  { key: 'MAX_PENDING_REQUESTS', type: int(1, 1_000_000), default: 100, scope: 'server', doc: 'Requests (op req) one session may have in flight; more gets error too_many_requests.' },
  { key: 'REQUEST_TIMEOUT_MS', type: int(1, 3_600_000), default: 5000, scope: 'both', doc: 'Timeout of a request that gives no timeout_ms.' },
  { key: 'MAX_REQUEST_TIMEOUT_MS', type: int(1, 3_600_000), default: 60_000, scope: 'both', doc: 'Upper bound applied to any timeout_ms.' },
  { key: 'SHUTDOWN_TIMEOUT_MS', type: int(0, 600_000), default: 5000, scope: 'both', doc: 'On SIGTERM/SIGINT, how long to wait for sessions to finish their close handshake before cutting them.' },
  { key: 'LOG_LEVEL', type: { kind: 'enum', values: ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] }, default: 'info', scope: 'both', doc: 'pino log level. Logs go to stderr (see LOG_FORMAT).' },
  { key: 'LOG_FORMAT', type: { kind: 'enum', values: ['auto', 'json', 'pretty'] }, default: 'auto', scope: 'both', doc: 'json: one JSON object per line; pretty: readable lines (pino-pretty), coloured when stderr is a terminal and NO_COLOR is unset; auto: pretty when stderr is a terminal, else json.' },
  { key: 'COMPONENT_POOL_SIZE', type: int(1, 1024), default: 4, scope: 'both', doc: 'Instances per component unless the component sets pool_size. One instance runs one call at a time, also while suspended in an async import.' },
  { key: 'COMPONENT_TIMEOUT_MS', type: int(1, 3_600_000), default: 30_000, scope: 'both', doc: 'Deadline of one handle-message call; past it the call fails and its instance is replaced. It cannot interrupt a guest busy in a loop without awaiting the host.' },
  { key: 'COMPONENT_MAX_QUEUE', type: int(0, 1_000_000), default: 10_000, scope: 'both', doc: 'Messages waiting for a free instance, per component; past it a message is refused (counted as a handler error).' },
  { key: 'COMPONENT_CACHE_DIR', type: { kind: 'string' }, default: undefined, scope: 'both', doc: 'Where transpiled components are cached by content hash. Default: $XDG_CACHE_HOME/wsbridge/components, else ~/.cache/wsbridge/components.' },
  { key: 'OUTBOUND_ALLOW', type: { kind: 'list' }, default: [], scope: 'both', doc: 'Hosts components may open WebSockets to besides loopback (always allowed): host, host:port or *.domain. Anything else is refused.' },
  { key: 'OUTBOUND_MAX_CONNECTIONS', type: int(0, 100_000), default: 100, scope: 'both', doc: 'Outbound WebSocket connections one component (all its instances) may hold open.' },
  { key: 'OUTBOUND_RECEIVE_QUEUE', type: int(1, 1_000_000), default: 1000, scope: 'both', doc: 'Received messages queued per outbound connection; when full the socket stops reading (TCP backpressure) until the component has taken half of them.' },
  { key: 'OUTBOUND_TIMEOUT_MS', type: int(1, 3_600_000), default: 30_000, scope: 'both', doc: 'Connect timeout of an outbound WebSocket whose config gives none (golem connect has none).' },
  { key: 'NATS_URL', type: { kind: 'list' }, default: [], scope: 'both', doc: 'NATS server URL(s), comma-separated (flag --nats). Set: the bus spans every node on this NATS; unset: the in-memory bus.' },
  { key: 'NATS_PREFIX', type: { kind: 'string' }, default: '', scope: 'both', doc: 'Prefix of every subject on NATS (empty: subjects map one to one, as a wasmCloud messaging provider sees them). End it with a dot.' },
  { key: 'NATS_USER', type: { kind: 'string' }, default: undefined, scope: 'both', doc: 'NATS user (with NATS_PASSWORD).' },
  { key: 'NATS_PASSWORD', type: { kind: 'string' }, default: undefined, scope: 'both', doc: 'NATS password.' },
  { key: 'NATS_TOKEN', type: { kind: 'string' }, default: undefined, scope: 'both', doc: 'NATS auth token.' },
  { key: 'NATS_NKEY_SEED_FILE', type: { kind: 'string' }, default: undefined, scope: 'both', doc: 'File holding an NKEY user seed (SU…).' },
  { key: 'NATS_CREDS_FILE', type: { kind: 'string' }, default: undefined, scope: 'both', doc: 'JWT credentials file (.creds) for NATS.' },
  { key: 'NATS_TLS_CA_FILE', type: { kind: 'string' }, default: undefined, scope: 'both', doc: 'CA certificate (PEM) to verify a tls:// NATS server.' },
  { key: 'PRESENCE_TTL_SEC', type: int(1, 3600), default: 15, scope: 'both', doc: 'With NATS: how long a node stays in cluster presence without a heartbeat (JetStream KV bucket max age). Heartbeats every third of it.' },
  { key: 'HISTORY_SUBJECTS', type: { kind: 'list' }, default: [], scope: 'both', doc: 'With NATS: subject patterns whose messages are kept in JetStream (stream WSBRIDGE_HISTORY), carry a seq, and can be resumed with sub since.' },
  { key: 'HISTORY_MAX_AGE_SEC', type: int(1, 365 * 24 * 3600), default: 3600, scope: 'both', doc: 'History window: messages older than this are removed.' },
  { key: 'HISTORY_MAX_MSGS', type: int(1, 1_000_000_000), default: 100_000, scope: 'both', doc: 'History window: at most this many messages over all history subjects (the oldest go first).' },
  { key: 'LINK_NAME', type: { kind: 'string' }, default: undefined, scope: 'client', perLink: true, doc: 'The link\'s name in the operator API (/api/links/<name>), /api/stats, /readyz, metrics (label link) and logs: 1-64 of A-Z a-z 0-9 _ . -. Unset: link-1, link-2, … in the order links are made.' },
  { key: 'AUTH_TOKEN', type: { kind: 'string' }, default: undefined, scope: 'client', perLink: true, doc: 'Client mode: sent to the remote server as `Authorization: Bearer <token>`. Server mode: the token clients must present, like SERVER_AUTH_TOKEN.' },
  { key: 'AUTH_TOKEN_FILE', type: { kind: 'string' }, default: undefined, scope: 'client', perLink: true, doc: 'Client mode: a file holding the bearer token (trailing whitespace ignored), read again before every connection attempt, so a rotated credential is used on the next reconnect without a restart. An alternative to AUTH_TOKEN. Not accepted over the operator API.' },
  { key: 'LOGIN_FRAMES', type: { kind: 'json' }, default: undefined, scope: 'client', perLink: true, doc: 'Frames sent first on every (re)connect, before anything queued: a JSON array whose strings go as text frames as they are and whose objects go as their JSON text (e.g. [{"op":"auth","token":"{{AUTH_TOKEN}}"},{"op":"sub","subject":"ticks"}]). {{AUTH_TOKEN}} in a string is replaced by the current token (AUTH_TOKEN, or AUTH_TOKEN_FILE as read for that attempt).' },
  { key: 'REMOTE_TLS_CA_FILE', type: { kind: 'string' }, default: undefined, scope: 'client', perLink: true, doc: 'wss:// links: PEM file of the CA(s) that sign the remote server\'s certificate (a private CA), instead of the system\'s. Read again before every attempt. Not accepted over the operator API.' },
  { key: 'REMOTE_TLS_CERT', type: { kind: 'string' }, default: undefined, scope: 'client', perLink: true, doc: 'wss:// links: PEM client certificate (chain) presented to a server that requires one (mutual TLS), with REMOTE_TLS_KEY. Not accepted over the operator API.' },
  { key: 'REMOTE_TLS_KEY', type: { kind: 'string' }, default: undefined, scope: 'client', perLink: true, doc: 'PEM private key of REMOTE_TLS_CERT. Not accepted over the operator API.' },
  { key: 'REMOTE_TLS_SERVERNAME', type: { kind: 'string' }, default: undefined, scope: 'client', perLink: true, doc: 'wss:// links: the server name sent in TLS SNI and checked against the certificate, when it is not the URL\'s host (e.g. dialling an IP address).' },
  { key: 'PROXY_URL', type: { kind: 'string' }, default: undefined, scope: 'client', perLink: true, doc: 'Reach the remote through an HTTP(S) proxy with CONNECT: http://[user:password@]host:port or https://…; the credentials go as Proxy-Authorization: Basic. The CONNECT counts within CONNECT_TIMEOUT_SEC. HTTPS_PROXY and NO_PROXY from the environment are not read.' },
  { key: 'CONNECT_TIMEOUT_SEC', type: int(1, 3600), default: 30, scope: 'client', perLink: true, doc: 'Deadline of one connection attempt, from the start of the TCP connect to the end of the WebSocket handshake, TLS and a CONNECT proxy included (a server that trickles its answer does not extend it).' },
  { key: 'SUBPROTOCOLS', type: { kind: 'list' }, default: [], scope: 'client', perLink: true, doc: 'Comma-separated subprotocols offered in the handshake. A server that selects none is accepted (RFC 6455 allows it) and reported (log, /api/links subprotocol null) unless SUBPROTOCOL_REQUIRED.' },
  { key: 'SUBPROTOCOL_REQUIRED', type: { kind: 'bool' }, default: false, scope: 'client', perLink: true, doc: 'With SUBPROTOCOLS: a server that selects none of them fails the attempt (a failure, retried with backoff) instead of being accepted.' },
  { key: 'RECONNECT_BASE_MS', type: int(1, 3_600_000), default: 500, scope: 'client', perLink: true, doc: 'Reconnect backoff: after the n-th consecutive failure the link waits a random time between 0 and min(RECONNECT_MAX_MS, RECONNECT_BASE_MS × 2^(n-1)) (full jitter).' },
  { key: 'RECONNECT_MAX_MS', type: int(1, 3_600_000), default: 30_000, scope: 'client', perLink: true, doc: 'Ceiling of the reconnect delay; also the delay after a permanent refusal (see PERMANENT_FAILURE_POLICY).' },
  { key: 'RECONNECT_MAX_ATTEMPTS', type: int(0, 1_000_000), default: 0, scope: 'client', perLink: true, doc: 'The link gives up after this many consecutive failures (the first attempt counts: 2 means two connections tried); 0 = never give up. A connection that closes before RECONNECT_STABLE_SEC is a failure.' },
  { key: 'RECONNECT_STABLE_SEC', type: int(1, 86_400), default: 10, scope: 'client', perLink: true, doc: 'A connection counts as a success, and resets the failure count and the backoff, only once it has stayed open this long; one that closes sooner (a remote that accepts and closes, a frame too large) is a failure.' },
  { key: 'PERMANENT_FAILURE_POLICY', type: { kind: 'enum', values: ['retry', 'give_up'] }, default: 'retry', scope: 'client', perLink: true, doc: 'What a permanent refusal does (HTTP 401 or 403 at the handshake, close code 1008): retry: count it as a failure and wait RECONNECT_MAX_MS (or a longer Retry-After) before the next attempt, which uses the credentials as they are then (AUTH_TOKEN_FILE is read again); give_up: the link gives up at once.' },
  { key: 'KEEPALIVE_INTERVAL_SEC', type: int(0, 3600), default: 30, scope: 'client', perLink: true, doc: 'Ping interval; a peer that has not answered the previous ping by the next one is dead and the link reconnects. 0 disables.' },
  { key: 'RAW_SUBJECT', type: { kind: 'string' }, default: 'ws.in', scope: 'client', perLink: true, doc: 'Subject for frames from the remote server that are not v1 envelopes (any text or binary feed).' },
  { key: 'FORWARD', type: { kind: 'list' }, default: [], scope: 'client', perLink: true, doc: 'Comma-separated subject patterns: local publishes matching them are sent to the remote server as v1 envelopes. Empty (the default): nothing is sent but answers to the remote\'s own frames. Reply subjects (sessions\', request inboxes) never match; a forwarded request\'s reply_to is shown only with FORWARD_REPLIES.' },
  { key: 'FORWARD_REPLIES', type: { kind: 'bool' }, default: false, scope: 'client', perLink: true, doc: 'Forwarded messages carry a reply_to the remote can answer: an opaque _WSB.LR.<token> alias, answerable once within REPLY_GRANT_TTL_MS. false: reply_to is null, and no local reply subject is shown to the remote.' },
  { key: 'RAW_OUT_SUBJECT', type: { kind: 'string' }, default: undefined, scope: 'client', perLink: true, doc: 'Raw outbound mode: local publishes on this subject are sent to the remote as the body alone, a plain text or binary frame (see RAW_OUT_FORMAT), not as an envelope; for servers with their own protocol. Unset: off.' },
  { key: 'RAW_OUT_FORMAT', type: { kind: 'enum', values: ['auto', 'text', 'binary'] }, default: 'auto', scope: 'client', perLink: true, doc: 'Frames of RAW_OUT_SUBJECT: auto: text when the body is valid UTF-8, else binary; text: always text (a body that is not UTF-8 is dropped, counted); binary: always binary.' },
  { key: 'OFFLINE_QUEUE_MAX', type: int(0, 1_000_000), default: 1000, scope: 'client', perLink: true, doc: 'Outbound messages kept while the link is reconnecting; past it, or past MAX_BUFFERED_BYTES, the oldest are dropped (counted).' },
];

export const SETTING_BY_KEY = new Map(SETTINGS.map((s) => [s.key, s]));

/** `MAX_MESSAGE_BYTES` → `--max-message-bytes`. */
export function flagName(key: string): string {
  return key.toLowerCase().replaceAll('_', '-');
}
