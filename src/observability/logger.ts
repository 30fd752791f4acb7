// Structured logs with pino. Message bodies and tokens are never logged: log subjects, ids, sizes.
import { pino } from 'pino';
import type { Logger } from 'pino';

export type { Logger };
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export function createLogger(level: LogLevel, destination: NodeJS.WritableStream = process.stderr): Logger {
  return pino({ name: 'wsbridge', level, base: { pid: process.pid } }, pino.destination({ dest: (destination as { fd?: number }).fd ?? 2, sync: true }));
}

export const silentLogger: Logger = pino({ level: 'silent' });
