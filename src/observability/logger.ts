// Structured logs with pino. Message bodies and tokens are never logged: log subjects, ids, sizes.
// On a terminal they are readable lines (pino's own pretty printer), elsewhere JSON lines. Colour
// is decided on the stream the logs go to (stderr), never on stdout, and NO_COLOR turns it off.
import { pino } from 'pino';
import type { Logger } from 'pino';
import pretty from 'pino-pretty';

export type { Logger };
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];
export type LogFormat = 'auto' | 'json' | 'pretty';

export interface LoggerOptions {
  /** auto (the default): pretty on a terminal, JSON lines otherwise. */
  format?: LogFormat;
  /** Where logs go; default stderr. */
  destination?: NodeJS.WritableStream & { fd?: number; isTTY?: boolean };
  /** For NO_COLOR; default process.env. */
  env?: Record<string, string | undefined>;
}

/** Whether to colour output written to `stream`: a terminal, and NO_COLOR unset or empty (no-color.org). */
export function useColor(stream: { isTTY?: boolean }, env: Record<string, string | undefined> = process.env): boolean {
  return stream.isTTY === true && !env.NO_COLOR;
}

export function createLogger(level: LogLevel, options: LoggerOptions | NodeJS.WritableStream = {}): Logger {
  const opts: LoggerOptions = 'write' in options ? { destination: options as LoggerOptions['destination'] } : (options as LoggerOptions);
  const dest = opts.destination ?? process.stderr;
  const fd = (dest as { fd?: number }).fd ?? 2;
  const format = opts.format ?? 'auto';
  const base = { name: 'wsbridge', level, base: { pid: process.pid } };
  if (format === 'pretty' || (format === 'auto' && dest.isTTY === true)) {
    return pino(base, pretty({ colorize: useColor(dest, opts.env), destination: fd, sync: true, ignore: 'pid,hostname', translateTime: 'SYS:HH:MM:ss.l' }));
  }
  return pino(base, pino.destination({ dest: fd, sync: true }));
}

export const silentLogger: Logger = pino({ level: 'silent' });
