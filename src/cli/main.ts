#!/usr/bin/env node
// The `wsbridge` command: `serve` (server mode) and `connect <url>` (client mode). Parses flags,
// layers them over env and the config file, starts a Gateway, and shuts it down on SIGTERM/SIGINT.
import { parseCli } from './args.ts';
import type { Parsed } from './args.ts';
import { ConfigError } from '../config/load.ts';
import { Gateway, NatsUnavailableError } from '../gateway/gateway.ts';
import { createLogger } from '../observability/logger.ts';
import { runTool, TOOLS, UsageError } from './tools.ts';
import { ComponentLoadError } from '../components/component-config.ts';

async function main(): Promise<void> {
  const first = process.argv[2];
  if (first !== undefined && (TOOLS as readonly string[]).includes(first)) {
    try {
      process.exitCode = await runTool(first, process.argv.slice(3), { out: process.stdout, err: process.stderr, env: process.env, stdin: process.stdin });
    } catch (err) {
      process.stderr.write(`wsbridge ${first}: ${(err as Error).message}\n`);
      process.exitCode = err instanceof UsageError ? 2 : 1;
    }
    return;
  }
  let parsed: Parsed | { exit: number; out: string };
  try {
    parsed = parseCli(process.argv.slice(2), process.env);
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
  const log = createLogger(config.logLevel);
  let gw: Gateway;
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
  if (gw.server) process.stdout.write(`wsbridge listening on ${gw.server.url}\n`);
  for (const link of gw.links) {
    process.stdout.write(`wsbridge connecting to ${link.config.uri}\n`);
    link.on('open', () => process.stdout.write(`wsbridge connected to ${link.config.uri}\n`));
    link.on('failed', () => {
      process.stderr.write(`wsbridge: gave up on ${link.config.uri} after RECONNECT_MAX_ATTEMPTS attempts\n`);
      void gw.shutdown().then(() => process.exit(1));
    });
  }

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
}

await main();
