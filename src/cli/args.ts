// Command-line parsing for `wsbridge`: flags for every setting, `--header Name=value`, and the
// command (serve | connect <url>). Produces a Config or a ConfigError; never exits by itself.
import { parseArgs } from 'node:util';
import { readFileSync } from 'node:fs';
import { SETTINGS, flagName } from '../config/settings.ts';
import { loadConfig, ConfigError } from '../config/load.ts';
import type { Config } from '../config/load.ts';

const COMMANDS = ['serve', 'connect'] as const;

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

function help(command?: string): string {
  const rows = SETTINGS.filter((s) => s.key !== 'MODE').map((s) => {
    const def = s.default === undefined ? '' : ` (default ${Array.isArray(s.default) ? s.default.join(',') || 'none' : String(s.default)})`;
    return `  --${flagName(s.key).padEnd(26)} ${s.key}${def}\n      ${s.doc}`;
  });
  const usage = command === 'connect'
    ? 'Usage: wsbridge connect <ws-or-wss-url> [options]\n\nDials a remote WebSocket server and routes its frames onto the bus (client mode).'
    : command === 'serve'
      ? 'Usage: wsbridge serve [options]\n\nAccepts WebSocket clients on ws://HOST:PORT/ws (server mode).'
      : 'Usage: wsbridge <command> [options]\n\nCommands:\n  serve                 accept WebSocket clients (server mode; the default)\n  connect <url>         dial a remote ws:// or wss:// server (client mode)\n  pub <subject> [text]  publish one message to a running gateway\n  sub <pattern>         print messages as they arrive\n  req <subject> [text]  send a request and print the reply\n  sessions              list sessions (operator API)\n\n`wsbridge <command> --help` describes each command.';
  return `${usage}

Options (each also an env var and a config-file key; flags > env > config file > defaults):
  --config <file.json>         JSON config file (env WSBRIDGE_CONFIG)
  --header Name=value          handshake header for client mode (env HEADER_<Name>); repeatable
  --nats nats://host:port      same as --nats-url: scale out over NATS
  --component <file.wasm>      run a WebAssembly component (repeatable); the options below
    --subscribe <pattern>        apply to the --component before them: subjects it handles
    --queue <group>              (repeatable), its queue group, its instance pool size and
    --pool-size <n>              its link id (default: the file name)
    --id <name>
${rows.join('\n')}
  -h, --help                   this text
  -v, --version                print the version

Full reference: docs/configuration.md
`;
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
    version: { type: 'boolean', short: 'v' },
  };
  for (const s of SETTINGS) if (s.key !== 'MODE') options[flagName(s.key)] = { type: 'string' };
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
  const command = positionals[0] ?? (env.MODE === 'client' ? 'connect' : 'serve');
  if (values.version) return { exit: 0, out: `${version()}\n` };
  if (values.help) return { exit: 0, out: help(positionals[0]) };
  if (!(COMMANDS as readonly string[]).includes(command)) throw new ConfigError(`unknown command ${JSON.stringify(command)}: expected serve or connect`);

  const flags: Record<string, string | undefined> = { MODE: command === 'connect' ? 'client' : 'server' };
  for (const s of SETTINGS) {
    const v = values[flagName(s.key)];
    if (typeof v === 'string') flags[s.key] = v;
  }
  if (typeof values.nats === 'string') flags.NATS_URL = values.nats;
  for (const h of (values.header as string[] | undefined) ?? []) {
    const eq = h.indexOf('=');
    if (eq <= 0) throw new ConfigError(`--header ${JSON.stringify(h)}: expected Name=value`);
    flags[`HEADER_${h.slice(0, eq)}`] = h.slice(eq + 1);
  }
  if (command === 'connect') {
    if (positionals.length > 2) throw new ConfigError('connect takes one URL');
    if (positionals[1] !== undefined) flags.URI = positionals[1];
  } else if (positionals.length > 1) {
    throw new ConfigError(`serve takes no positional arguments (got ${JSON.stringify(positionals[1])})`);
  }
  // The command line decides the mode; env MODE only picks the command when none is given.
  const envForConfig = { ...env };
  delete envForConfig.MODE;
  const config = loadConfig({ flags, env: envForConfig, file: values.config as string | undefined, components });
  return { command, config };
}

