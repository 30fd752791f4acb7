// How a component is configured. Kept apart from the runtime so that loading the config does
// not load jco.
import { basename } from 'node:path';
import type { Subscription } from '../gateway/messaging.ts';

export interface ComponentConfig {
  /** Link id; defaults to the file name without .wasm. */
  id: string;
  path: string;
  subscriptions: Subscription[];
  poolSize: number;
  timeoutMs: number;
  maxQueue: number;
  /** WASI grants: env vars and directories the component may see (none by default). */
  env: Record<string, string>;
  preopens: Record<string, string>;
}

export function defaultComponentId(path: string): string {
  return basename(path).replace(/\.wasm$/, '');
}


/** A component that cannot run here: unreadable, not a component, or an import wsbridge lacks. */
export class ComponentLoadError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ComponentLoadError';
  }
}
