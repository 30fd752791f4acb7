// Command-line parsing for `wsbridge`: flags for every setting, `--header Name=value`, and the
// command (serve | connect <url>). Produces a Config or a ConfigError; never exits by itself.
import { parseArgs } from 'node:util';
import { readFileSync } from 'node:fs';
import { SETTINGS, SETTING_BY_KEY, flagName } from '../config/settings.ts';
import { loadConfig, ConfigError } from '../config/load.ts';
import type { Config } from '../config/load.ts';

const COMMANDS = ['serve', 'connect'] as const;

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

// Settings by topic, for --help-all. Every setting is in exactly one (test/cli-help.test.ts).
export const TOPICS: ReadonlyArray<{ title: string; keys: readonly string[] }> = [
  { title: 'Mode', keys: ['MODE'] },
  { title: 'Listener and HTTP endpoints', keys: ['LISTEN', 'PORT', 'URI', 'ADMIN_TOKEN', 'ENABLE_SESSION_TRACKING', 'METRICS_TOKEN', 'DEMO_PAGE', 'ALLOWED_ORIGINS'] },
  { title: 'TLS', keys: ['TLS_CERT', 'TLS_KEY', 'TLS_CLIENT_CA'] },
  { title: 'Authentication of clients', keys: ['SERVER_AUTH_TOKEN', 'AUTH_TOKEN', 'JWT_SECRET', 'JWT_PUBLIC_KEY_FILE', 'JWT_JWKS', 'JWT_ISSUER', 'JWT_AUDIENCE', 'AUTH_DEADLINE_MS', 'REQUIRE_JWT_EXP', 'JWT_MAX_LIFETIME_SEC', 'HANDSHAKE_RATE_PER_IP', 'AUTH_FAILURE_BACKOFF_MS', 'TRUSTED_PROXIES', 'PROXY_PROTOCOL'] },
  { title: 'Reply subjects (capabilities)', keys: ['REPLY_GRANT_TTL_MS', 'REPLY_GRANT_MAX_REPLIES', 'REPLY_GRANTS_MAX'] },
  { title: 'Limits and timeouts', keys: ['MAX_CONNECTIONS', 'MAX_CONNECTIONS_PER_IP', 'RATE_LIMIT_MSGS', 'RATE_LIMIT_BYTES', 'IDLE_TIMEOUT_SEC', 'HANDSHAKE_TIMEOUT_MS', 'PING_INTERVAL_SEC', 'MAX_MESSAGE_BYTES', 'MAX_BUFFERED_BYTES', 'SLOW_CONSUMER_POLICY', 'MAX_SUBSCRIPTIONS', 'MAX_PENDING_REQUESTS', 'REQUEST_TIMEOUT_MS', 'MAX_REQUEST_TIMEOUT_MS', 'SHUTDOWN_TIMEOUT_MS', 'PERMESSAGE_DEFLATE', 'DEFLATE_THRESHOLD_BYTES'] },
  { title: 'Remote server (client mode)', keys: ['LINK_NAME', 'AUTH_TOKEN_FILE', 'LOGIN_FRAMES', 'REMOTE_TLS_CA_FILE', 'REMOTE_TLS_CERT', 'REMOTE_TLS_KEY', 'REMOTE_TLS_SERVERNAME', 'PROXY_URL', 'CONNECT_TIMEOUT_SEC', 'SUBPROTOCOLS', 'SUBPROTOCOL_REQUIRED', 'RECONNECT_BASE_MS', 'RECONNECT_MAX_MS', 'RECONNECT_MAX_ATTEMPTS', 'RECONNECT_STABLE_SEC', 'PERMANENT_FAILURE_POLICY', 'KEEPALIVE_INTERVAL_SEC', 'RAW_SUBJECT', 'FORWARD', 'FORWARD_REPLIES', 'RAW_OUT_SUBJECT', 'RAW_OUT_FORMAT', 'OFFLINE_QUEUE_MAX'] },
  { title: 'WebAssembly components', keys: ['COMPONENT_POOL_SIZE', 'COMPONENT_TIMEOUT_MS', 'COMPONENT_MAX_QUEUE', 'COMPONENT_CACHE_DIR', 'OUTBOUND_ALLOW', 'OUTBOUND_MAX_CONNECTIONS', 'OUTBOUND_RECEIVE_QUEUE', 'OUTBOUND_TIMEOUT_MS'] },
  { title: 'NATS: scale-out, presence, history', keys: ['NATS_URL', 'NATS_PREFIX', 'NATS_USER', 'NATS_PASSWORD', 'NATS_TOKEN', 'NATS_NKEY_SEED_FILE', 'NATS_CREDS_FILE', 'NATS_TLS_CA_FILE', 'NATS_TLS_CERT_FILE', 'NATS_TLS_KEY_FILE', 'NATS_PING_INTERVAL_SEC', 'NATS_MAX_PINGS_OUT', 'NATS_CONNECT_TIMEOUT_MS', 'NATS_RECONNECT_WAIT_MS', 'NATS_RECONNECT_JITTER_MS', 'NATS_STARTUP_RETRY_SEC', 'NATS_JS_DOMAIN', 'NATS_JS_API_PREFIX', 'NATS_JS_REPLICAS', 'NATS_JS_PLACEMENT_CLUSTER', 'NATS_JS_PLACEMENT_TAGS', 'NATS_PUBLISH_ACK_TIMEOUT_MS', 'PRESENCE_TTL_SEC', 'HISTORY_SUBJECTS', 'HISTORY_MAX_AGE_SEC', 'HISTORY_MAX_MSGS'] },
  { title: 'Presence per subject', keys: ['PRESENCE_SUBJECTS', 'PRESENCE_MAX_MEMBERS'] },
  { title: 'Logs', keys: ['LOG_LEVEL', 'LOG_FORMAT'] },
];

const TOOL_LIST = `Talk to a running gateway:
  pub <subject> [text]     publish one message
  sub <pattern>            print messages as they arrive
  req <subject> [text]     send a request and print the reply
  sessions                 list sessions (operator API)`;

const USAGE: Record<string, string> = {
  '': `Usage: wsbridge <command> [options]

Run a gateway:
  serve                    accept WebSocket clients (server mode; the default)
  connect <url>            dial a remote ws:// or wss:// server (client mode)
${TOOL_LIST}`,
  serve: 'Usage: wsbridge serve [options]\n\nAccepts WebSocket clients on ws://HOST:PORT/ws (server mode), with the operator API, /metrics,\n/healthz and the demo page on the same port.',
  connect: 'Usage: wsbridge connect <ws-or-wss-url> [options]\n\nDials a remote WebSocket server and routes its frames onto the bus (client mode); with --listen,\nlocal WebSocket clients can use them too.',
};

// The options most people need, per command; the rest is in --help-all.
const COMMON: Record<string, string> = {
  '': `Common options:
  --listen HOST:PORT           where to accept clients (default 127.0.0.1:8080; env LISTEN or PORT)
  --config <file.json>         JSON config file (env WSBRIDGE_CONFIG)
  --component <file.wasm> --subscribe <pattern>
                               run a WebAssembly component for the subjects it handles
  --nats nats://host:port      scale out over NATS
  --mode server|client         what runs without a command (env MODE; default server)
  --log-level <level>          fatal, error, warn, info (default), debug, trace, silent
  -h, --help                   this text;  --help-all: every setting, by topic
  -v, --version                print the version`,
  serve: `Common options:
  --listen HOST:PORT           where to accept clients (default 127.0.0.1:8080; env LISTEN or PORT)
  --config <file.json>         JSON config file (env WSBRIDGE_CONFIG)
  --admin-token <token>        turn on the operator API under /api/
  --server-auth-token <token>, --jwt-secret <secret>
                               require clients to authenticate
  --tls-cert <pem> --tls-key <pem>
                               serve wss:// and https://
  --component <file.wasm>      run a WebAssembly component; options after it apply to it:
    --subscribe <pattern>        subjects it handles (repeatable)
    --queue <group>  --pool-size <n>  --id <name>
  --nats nats://host:port      scale out over NATS
  --log-level <level>          fatal, error, warn, info (default), debug, trace, silent
  --log-format <format>        auto (default: readable on a terminal), json, pretty`,
  connect: `Common options:
  --auth-token <token>         sent as Authorization: Bearer <token>
  --header Name=value          handshake header (env HEADER_<Name>); repeatable
  --raw-subject <subject>      where frames that are not wsbridge envelopes arrive (default ws.in)
  --forward <patterns>         local subjects sent to the remote server (default: none)
  --listen HOST:PORT           also accept local WebSocket clients
  --config <file.json>         JSON config file, also for several links (env WSBRIDGE_CONFIG)
  --nats nats://host:port      put the feed on NATS
  --log-level <level>          fatal, error, warn, info (default), debug, trace, silent`,
};

function settingRow(key: string): string {
  const s = SETTING_BY_KEY.get(key)!;
  const def = s.default === undefined ? '' : ` (default ${Array.isArray(s.default) ? s.default.join(',') || 'none' : String(s.default) || "''"})`;
  return `  --${flagName(s.key).padEnd(26)} ${s.key}${def}\n      ${s.doc}`;
}

function help(command: string, all: boolean): string {
  const usage = USAGE[command] ?? USAGE['']!;
  if (!all) {
    const more = command === '' ? '`wsbridge <command> --help` for one command, `--help-all` for every setting by topic.' : `\`wsbridge ${command} --help-all\` for every setting of ${command}, by topic.`;
    return `${usage}\n\n${COMMON[command] ?? COMMON['']!}\n\nEach option is also an env var and a config-file key (flags > env > config file > defaults).\n${more}\nFull reference: docs/configuration.md\n`;
  }
  // serve shows what applies to server mode, connect what applies to client mode.
  const scopes = command === 'connect' ? ['both', 'client'] : command === 'serve' ? ['both', 'server'] : ['both', 'server', 'client'];
  const sections = TOPICS.map((t) => {
    const keys = t.keys.filter((k) => scopes.includes(SETTING_BY_KEY.get(k)!.scope) || (command === 'connect' && ['LISTEN', 'URI'].includes(k)));
    return keys.length ? `${t.title}:\n${keys.map(settingRow).join('\n')}` : '';
  }).filter(Boolean);
  const special = `Command line only:
  --config <file.json>         JSON config file (env WSBRIDGE_CONFIG)
  --nats nats://host:port      same as --nats-url${command !== 'serve' ? '\n  --header Name=value          handshake header for client mode (env HEADER_<Name>); repeatable' : ''}${command !== 'connect' ? `
  --component <file.wasm>      run a WebAssembly component (repeatable); the options below
    --subscribe <pattern>        apply to the --component before them: subjects it handles
    --queue <group>              (repeatable), its queue group, its instance pool size and
    --pool-size <n>              its link id (default: the file name)
    --id <name>` : ''}
  -h, --help                   the short help;  --help-all: this text
  -v, --version                print the version`;
  return `${usage}\n\nOptions (each also an env var and a config-file key; flags > env > config file > defaults):\n\n${[special, ...sections].join('\n\n')}\n\nFull reference: docs/configuration.md\n`;
}

export interface Parsed {
  command: string;
  config: Config;
}

export function parseCli(argv: string[], env: Record<string, string | undefined>): Parsed | { exit: number; out: string } {
  const options: Record<string, { type: 'string' | 'boolean'; multiple?: boolean; short?: string }> = {
    config: { type: 'string' },
    header: { type: 'string', multiple: true },
    nats: { type: 'string' },
    component: { type: 'string', multiple: true },
    subscribe: { type: 'string', multiple: true },
    queue: { type: 'string', multiple: true },
    'pool-size': { type: 'string', multiple: true },
    id: { type: 'string', multiple: true },
    help: { type: 'boolean', short: 'h' },
    'help-all': { type: 'boolean' },
    version: { type: 'boolean', short: 'v' },
  };
  for (const s of SETTINGS) options[flagName(s.key)] = { type: 'string' };
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options, allowPositionals: true, strict: true, tokens: true });
  } catch (err) {
    throw new ConfigError(`${(err as Error).message} (see wsbridge --help)`);
  }
  const { values, positionals } = parsed;
  // --subscribe, --queue, --pool-size and --id belong to the --component before them.
  const components: Array<Record<string, unknown>> = [];
  for (const t of parsed.tokens ?? []) {
    if (t.kind !== 'option' || t.value === undefined) continue;
    if (t.name === 'component') {
      components.push({ path: t.value, subscriptions: [] });
      continue;
    }
    if (!['subscribe', 'queue', 'pool-size', 'id'].includes(t.name)) continue;
    const current = components.at(-1);
    if (!current) throw new ConfigError(`--${t.name} must follow the --component it belongs to`);
    if (t.name === 'subscribe') (current.subscriptions as string[]).push(t.value);
    else if (t.name === 'pool-size') current.pool_size = t.value;
    else current[t.name] = t.value;
  }
  const given = positionals[0];
  if (values.version) return { exit: 0, out: `${version()}\n` };
  if (given !== undefined && !(COMMANDS as readonly string[]).includes(given)) {
    throw new ConfigError(`unknown command ${JSON.stringify(given)}: expected serve, connect, pub, sub, req or sessions`);
  }
  if (values.help || values['help-all']) return { exit: 0, out: help(given ?? '', values['help-all'] === true) };

  const flags: Record<string, string | undefined> = {};
  for (const s of SETTINGS) {
    const v = values[flagName(s.key)];
    if (typeof v === 'string') flags[s.key] = v;
  }
  // The command, when given, is the mode; --mode may repeat it but not contradict it. Without a
  // command the mode comes from --mode, env MODE, the config file's MODE or the default (server),
  // like any other setting; loadConfig validates MODE in every layer that sets it.
  if (given !== undefined) {
    const mode = given === 'connect' ? 'client' : 'server';
    if (flags.MODE !== undefined && flags.MODE !== mode) throw new ConfigError(`--mode ${flags.MODE} contradicts the command ${given} (MODE=${mode}): give one of them`);
    flags.MODE = mode;
  }
  if (typeof values.nats === 'string') flags.NATS_URL = values.nats;
  for (const h of (values.header as string[] | undefined) ?? []) {
    const eq = h.indexOf('=');
    if (eq <= 0) throw new ConfigError(`--header ${JSON.stringify(h)}: expected Name=value`);
    flags[`HEADER_${h.slice(0, eq)}`] = h.slice(eq + 1);
  }
  if (given === 'connect') {
    if (positionals.length > 2) throw new ConfigError('connect takes one URL');
    if (positionals[1] !== undefined) flags.URI = positionals[1];
  } else if (positionals.length > 1) {
    throw new ConfigError(`${given ?? 'serve'} takes no positional arguments (got ${JSON.stringify(positionals[1])})`);
  }
  const config = loadConfig({ flags, env, file: values.config as string | undefined, components });
  const command = config.mode === 'client' ? 'connect' : 'serve';
  return { command, config };
}

