// The WASI 0.2 interfaces a component may import, sandboxed: no environment variables, no
// arguments, no filesystem and no network unless its config grants them (env vars one by one,
// directories as preopens). The monotonic clock and wasi:io/poll are the worker's event loop
// (event-loop.ts); wall clock, randomness and streams come from preview2-shim. stdin is empty
// (never the gateway's); stdout and stderr both go to the gateway's stderr so they never mix with
// its stdout. wasi:cli/exit traps the instance instead of ending the gateway. wasi:sockets and
// wasi:http are not provided, so a component that imports them is refused at load.
import * as cli from '@bytecodealliance/preview2-shim/cli';
import * as clocks from '@bytecodealliance/preview2-shim/clocks';
import * as io from '@bytecodealliance/preview2-shim/io';
import * as random from '@bytecodealliance/preview2-shim/random';
import { createFilesystem, types as fsTypes } from '@bytecodealliance/preview2-shim/filesystem';
import { monotonicClock, pollInterface, HostPollable } from './event-loop.ts';

export const WASI_IMPORTS = [
  'wasi:cli/environment', 'wasi:cli/exit', 'wasi:cli/stdin', 'wasi:cli/stdout', 'wasi:cli/stderr',
  'wasi:cli/terminal-input', 'wasi:cli/terminal-output', 'wasi:cli/terminal-stdin', 'wasi:cli/terminal-stdout', 'wasi:cli/terminal-stderr',
  'wasi:clocks/monotonic-clock', 'wasi:clocks/wall-clock',
  'wasi:filesystem/types', 'wasi:filesystem/preopens',
  'wasi:io/error', 'wasi:io/poll', 'wasi:io/streams',
  'wasi:random/random', 'wasi:random/insecure', 'wasi:random/insecure-seed',
] as const;

export interface WasiGrants {
  /** Environment variables the component sees (nothing else of the gateway's environment). */
  env: Record<string, string>;
  /** Guest path → host directory. Empty: no filesystem. */
  preopens: Record<string, string>;
}

export class WasiExit extends Error {
  constructor(code: number) {
    super(`component called wasi:cli/exit (${code})`);
    this.name = 'WasiExit';
  }
}

// The package's type conditions resolve to its browser typings; this is the Node signature.
const createNodeFilesystem = createFilesystem as unknown as (o: { preopens: Record<string, string> }) => { types: unknown; preopens: unknown };

// stdin: a stream at its end. preview2-shim's stdin reads the process's fd 0 (the gateway's own
// stdin) and blocks the thread until input arrives.
const InputStreamClass = (io.streams as unknown as { InputStream: new () => object }).InputStream;
class EmptyInput extends InputStreamClass {
  read(): never {
    throw { tag: 'closed' };
  }
  blockingRead(): never {
    throw { tag: 'closed' };
  }
  skip(): never {
    throw { tag: 'closed' };
  }
  blockingSkip(): never {
    throw { tag: 'closed' };
  }
  subscribe(): HostPollable {
    return new HostPollable(() => true, () => Promise.resolve());
  }
}

export function wasiImports(grants: WasiGrants): Record<string, unknown> {
  const env = Object.entries(grants.env);
  const fs = Object.keys(grants.preopens).length > 0 ? createNodeFilesystem({ preopens: grants.preopens }) : { types: fsTypes, preopens: { getDirectories: () => [] } };
  const stderr = cli.stderr.getStderr();
  const stdin = new EmptyInput();
  return {
    'wasi:cli/environment': { getEnvironment: () => env, getArguments: () => [], initialCwd: () => undefined },
    'wasi:cli/exit': {
      exit(status: { tag: string }) { throw new WasiExit(status.tag === 'err' ? 1 : 0); },
      exitWithCode(code: number) { throw new WasiExit(code); },
    },
    'wasi:cli/stdin': { getStdin: () => stdin },
    'wasi:cli/stdout': { getStdout: () => stderr },
    'wasi:cli/stderr': cli.stderr,
    'wasi:cli/terminal-input': cli.terminalInput,
    'wasi:cli/terminal-output': cli.terminalOutput,
    'wasi:cli/terminal-stdin': cli.terminalStdin,
    'wasi:cli/terminal-stdout': cli.terminalStdout,
    'wasi:cli/terminal-stderr': cli.terminalStderr,
    'wasi:clocks/monotonic-clock': monotonicClock,
    'wasi:clocks/wall-clock': clocks.wallClock,
    'wasi:filesystem/types': fs.types,
    'wasi:filesystem/preopens': fs.preopens,
    'wasi:io/error': io.error,
    'wasi:io/poll': pollInterface,
    'wasi:io/streams': io.streams,
    'wasi:random/random': random.random,
    'wasi:random/insecure': random.insecure,
    'wasi:random/insecure-seed': random.insecureSeed,
  };
}
