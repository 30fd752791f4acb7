#!/usr/bin/env node
// The `wsbridge` command: `serve` (server mode), `connect <url>` (client mode) and the shell tools
// (pub, sub, req, sessions). Parses flags, layers them over env and the config file, starts a
// Gateway, and shuts it down on SIGTERM/SIGINT. Heavy modules (the gateway, NATS, the component
// runtime, the SDK) are imported only by the command that needs them, so `--help` and the tools
// start fast.
import { parseCli } from './args.ts';
import type { Parsed } from './args.ts';
import { ConfigError } from '../config/load.ts';
import type { RemoteLink } from '../client/remote-link.ts';
import { redactUrl } from '../client/link-sharing.ts';

const TOOL_NAMES: readonly string[] = ['pub', 'sub', 'req', 'sessions'];

export async function main(argv: string[] = process.argv.slice(2)): Promise<void> {
  const first = argv[0];
  if (first !== undefined && TOOL_NAMES.includes(first)) {
    const { runTool, UsageError } = await import('./tools.ts');
    try {
      process.exitCode = await runTool(first, argv.slice(1), { out: process.stdout, err: process.stderr, env: process.env, stdin: process.stdin });
    } catch (err) {
      process.stderr.write(`wsbridge ${first}: ${(err as Error).message}\n`);
      process.exitCode = err instanceof UsageError ? 2 : 1;
    }
    return;
  }
  let parsed: Parsed | { exit: number; out: string };
  try {
    parsed = parseCli(argv, process.env);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`wsbridge: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  if ('exit' in parsed) {
    process.stdout.write(parsed.out);
    process.exit(parsed.exit);
  }
  const { config } = parsed;
  const [{ Gateway, NatsUnavailableError }, { createLogger }, { ComponentLoadError }] = await Promise.all([
    import('../gateway/gateway.ts'),
    import('../observability/logger.ts'),
    import('../components/component-config.ts'),
  ]);
  const log = createLogger(config.logLevel, { format: config.logFormat });
  let gw: Awaited<ReturnType<typeof Gateway.start>>;
  try {
    gw = await Gateway.start(config, { log });
  } catch (err) {
    if (err instanceof NatsUnavailableError) {
      process.stderr.write(`wsbridge: ${err.message}\n`);
      process.exit(1);
    }
    if (err instanceof ComponentLoadError || err instanceof ConfigError) {
      process.stderr.write(`wsbridge: ${err.message}\n`);
      process.exit(2);
    }
    const e = err as NodeJS.ErrnoException;
    const where = config.listen ? `${config.listen.host}:${config.listen.port}` : '';
    const reason = e.code === 'EADDRINUSE' ? 'address already in use' : e.code === 'EACCES' ? 'permission denied' : e.message;
    process.stderr.write(`wsbridge: cannot listen on ${where} (LISTEN): ${reason}\n`);
    process.exit(1);
  }
  if (gw.server) {
    process.stdout.write(`wsbridge listening on ${gw.server.url}\n`);
    if (config.demoPage) process.stdout.write(`wsbridge demo page on ${gw.server.url.replace(/^ws/, 'http').replace(/\/ws$/, '/')}\n`);
  }
  // One link giving up never takes the others (or the listener) down; only a gateway left with
  // nothing to do (every link given up, no listener) exits 1.
  const watch = (link: RemoteLink) => {
    process.stdout.write(`wsbridge connecting to ${redactUrl(link.config.uri)} (${link.id})\n`);
    link.on('open', () => process.stdout.write(`wsbridge connected to ${redactUrl(link.config.uri)} (${link.id})\n`));
    link.on('failed', (why: string) => {
      process.stderr.write(`wsbridge: link ${link.id} gave up on ${redactUrl(link.config.uri)}: ${why}\n`);
      if (!gw.server && gw.links.every((l) => l.state === 'failed')) {
        process.stderr.write('wsbridge: every link has given up and there is no listener: exiting\n');
        void gw.shutdown().then(() => process.exit(1));
      }
    });
  };
  for (const link of gw.links) watch(link);
  gw.remoteLinks.onLink = watch;

  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) {
      process.stderr.write(`wsbridge: second ${signal}, exiting now\n`);
      process.exit(1);
    }
    stopping = true;
    log.info({ signal }, 'shutting down');
    gw.shutdown().then(
      () => process.exit(0),
      (err: unknown) => {
        log.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGHUP', () => {
    try {
      gw.server?.reloadTls();
    } catch (err) {
      log.error({ err: (err as Error).message }, 'TLS reload failed: keeping the old certificate');
    }
  });
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  watchNpmParent(stop);
}

/**
 * Under `npx wsbridge` (and npm scripts that do not `exec`), npm starts us through `sh -c`, and
 * a SIGTERM sent to npm reaches that shell, which dies without passing it on. We notice by being
 * re-parented, and stop as if we had got the signal ourselves. Outside npm, a parent that exits
 * is not our business (a gateway may well outlive the shell that started it).
 */
function watchNpmParent(stop: (why: string) => void): void {
  if (process.env.npm_command === undefined && process.env.npm_lifecycle_event === undefined) return;
  const parent = process.ppid;
  const timer = setInterval(() => {
    if (process.ppid === parent) return;
    clearInterval(timer);
    stop('SIGTERM (npm, our parent, exited)');
  }, 500);
  timer.unref();
}

if (import.meta.main) await main();
