// Loads a WebAssembly component for use in worker threads: transpiles it with jco (JSPI async
// mode, so host imports may suspend), caches the transpiled output by the component's content
// hash and the toolchain, checks its contracts by exact version against what wsbridge provides,
// and compiles its core modules once: workers receive the compiled modules, so a fresh instance
// costs milliseconds, not a compile.
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import { ComponentLoadError } from './component-config.ts';
import { providesImport, asyncImports, ASYNC_EXPORTS, HANDLER_EXPORT, SUPPORTED_IMPORTS } from './host-imports.ts';

export { ComponentLoadError };

type Instantiate = (getCoreModule: (name: string) => WebAssembly.Module | Promise<WebAssembly.Module>, imports: Record<string, unknown>) => Promise<Record<string, unknown>>;

export interface LoadedComponent {
  path: string;
  /** Cache key: sha256 of the component bytes, the toolchain and the transpile options. */
  hash: string;
  /** Folder of the transpiled output (component.js and its core modules). */
  dir: string;
  /** Interfaces the component imports and exports, with their versions. */
  imports: string[];
  exports: string[];
  /** Whether the transpiled output came from the cache. */
  cached: boolean;
  /** The compiled core modules by file name; they can be posted to worker threads. */
  modules: Map<string, WebAssembly.Module>;
  /** Instantiates in the calling thread (workers and benchmarks). */
  instantiate(imports: Record<string, unknown>): Promise<Record<string, unknown>>;
}

export interface LoadOptions {
  /** The bus acknowledges publishes (NATS): consumer.publish becomes a suspending import. */
  publishAcked?: boolean;
}

const require = createRequire(import.meta.url);
// jco-transpile is jco's own transpiler without its build toolchain (componentize-js), so an
// installed wsbridge does not carry that toolchain. Its package.json is not exported: found from
// its entry point (…/jco-transpile/dist/index.js).
const JCO_VERSION = (JSON.parse(readFileSync(join(dirname(require.resolve('@bytecodealliance/jco-transpile')), '..', 'package.json'), 'utf8')) as { version: string }).version;
// Part of the cache key with jco's version: change it when the transpile options change.
const TRANSPILER_TAG = 'jco-jspi-v4';

interface CacheMeta {
  imports: string[];
  exports: string[];
  files: string[];
}

function readMeta(file: string): CacheMeta | undefined {
  try {
    const m = JSON.parse(readFileSync(file, 'utf8')) as CacheMeta;
    if (!Array.isArray(m.imports) || !Array.isArray(m.exports) || !Array.isArray(m.files)) return undefined;
    return m;
  } catch {
    return undefined;
  }
}

export async function loadComponent(path: string, cacheDir: string, opts: LoadOptions = {}): Promise<LoadedComponent> {
  let bytes: Buffer;
  try {
    bytes = readFileSync(path);
  } catch (err) {
    throw new ComponentLoadError(`component ${path}: cannot read it (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
  }
  const publishAcked = opts.publishAcked ?? false;
  const hash = createHash('sha256').update(`${TRANSPILER_TAG}\njco ${JCO_VERSION}\npublish-async ${publishAcked}\n`).update(bytes).digest('hex');
  const dir = join(cacheDir, hash);
  const metaFile = join(dir, 'wsbridge.json');
  let meta = existsSync(metaFile) ? readMeta(metaFile) : undefined;
  let cached = meta !== undefined;
  if (!meta) {
    // Nothing cached, or a cache entry that cannot be read: (re)build it.
    rmSync(dir, { recursive: true, force: true });
    meta = await transpileInto(path, bytes, dir, cacheDir, publishAcked);
  }
  checkContracts(path, meta);

  let modules: Map<string, WebAssembly.Module>;
  let mod: { instantiate: Instantiate };
  try {
    modules = await compileCores(dir, meta.files);
    mod = (await import(pathToFileURL(join(dir, 'component.js')).href)) as { instantiate: Instantiate };
  } catch (e) {
    if (!cached) throw new ComponentLoadError(`component ${path}: cannot compile it (${(e as Error).message.split('\n')[0]})`);
    // A damaged cache entry (a truncated core module…): rebuild it once.
    rmSync(dir, { recursive: true, force: true });
    meta = await transpileInto(path, bytes, dir, cacheDir, publishAcked);
    cached = false;
    try {
      modules = await compileCores(dir, meta.files);
      mod = (await import(`${pathToFileURL(join(dir, 'component.js')).href}?rebuilt=${Date.now()}`)) as { instantiate: Instantiate };
    } catch (e2) {
      throw new ComponentLoadError(`component ${path}: cannot compile it (${(e2 as Error).message.split('\n')[0]})`);
    }
  }
  return {
    path, hash, dir, imports: meta.imports, exports: meta.exports, cached, modules,
    instantiate: (imports) => mod.instantiate((name) => modules.get(name)!, imports),
  };
}

async function compileCores(dir: string, files: string[]): Promise<Map<string, WebAssembly.Module>> {
  const modules = new Map<string, WebAssembly.Module>();
  for (const f of files) modules.set(f, await WebAssembly.compile(readFileSync(join(dir, f))));
  return modules;
}

async function transpileInto(path: string, bytes: Buffer, dir: string, cacheDir: string, publishAcked: boolean): Promise<CacheMeta> {
  const { transpileBytes } = await import('@bytecodealliance/jco-transpile');
  const { componentWit } = await import('@bytecodealliance/jco-transpile/wasm-tools');
  let out;
  let wit: string;
  try {
    // jco reports imports without versions: the component's own WIT has them.
    wit = await componentWit(bytes);
    out = await transpileBytes(bytes, {
      name: 'component',
      instantiation: 'async',
      asyncMode: 'jspi',
      asyncImports: asyncImports(publishAcked),
      asyncExports: ASYNC_EXPORTS,
      emitTypescriptDeclarations: false,
      noComponentErrorWrapping: false,
      wasiShim: false,
    });
  } catch (err) {
    throw new ComponentLoadError(`component ${path}: not a valid WebAssembly component (${(err as Error).message.split('\n')[0]})`);
  }
  const worldItems = (kind: string) => [...wit.matchAll(new RegExp(`^  ${kind} ([^;]+);`, 'gm'))].map((m) => m[1]!.trim());
  const meta: CacheMeta = {
    imports: worldItems('import'),
    exports: worldItems('export'),
    files: Object.keys(out.files).filter((f) => f.endsWith('.wasm')),
  };
  // Write into a fresh folder, then rename it into place: concurrent loaders never see half.
  const tmp = `${dir}.${process.pid}.${Date.now()}.tmp`;
  for (const [file, data] of Object.entries(out.files)) {
    mkdirSync(dirname(join(tmp, file)), { recursive: true });
    writeFileSync(join(tmp, file), file === 'component.js' ? withDebugFlagReadOnce(Buffer.from(data).toString('utf8')) : data);
  }
  writeFileSync(join(tmp, 'package.json'), '{"type":"module"}\n');
  writeFileSync(join(tmp, 'wsbridge.json'), JSON.stringify(meta));
  mkdirSync(cacheDir, { recursive: true });
  try {
    renameSync(tmp, dir);
  } catch {
    rmSync(tmp, { recursive: true, force: true }); // another process won the race
  }
  return meta;
}

/**
 * jco's generated `_debugLog` reads `process.env.JCO_DEBUG` on each of its ~200 call sites, dozens
 * of times per call (process.env is a slow, C++-backed object): 10–16 µs per call measured. The
 * flag is read once, when the module loads.
 */
function withDebugFlagReadOnce(js: string): string {
  const check = 'if (!globalThis?.process?.env?.JCO_DEBUG) { return; }';
  if (!js.includes(check)) return js;
  return `const WSBRIDGE_JCO_DEBUG = !!globalThis?.process?.env?.JCO_DEBUG;\n${js.replaceAll(check, 'if (!WSBRIDGE_JCO_DEBUG) { return; }')}`;
}

/** Refuses a component whose contracts wsbridge does not provide at the exact version. */
function checkContracts(path: string, meta: CacheMeta): void {
  const v3 = [...meta.imports, ...meta.exports].filter((i) => i.startsWith('wasmcloud:messaging/') && i.endsWith('@0.3.0'));
  if (v3.length > 0) {
    throw new ComponentLoadError(
      `component ${path} uses wasmcloud:messaging@0.3.0 (${v3.join(', ')}), which wsbridge does not run: ` +
      '0.3.0 passes message bodies as stream<u8> through async functions, and no 0.3.0 component has been shown to ' +
      `work through jco ${JCO_VERSION}'s stream/future lifting (componentize-js 0.23 cannot build one: its bindgen ` +
      'panics on async functions). Build it against wasmcloud:messaging@0.2.0',
    );
  }
  const missing = meta.imports.filter((i) => !providesImport(i));
  if (missing.length > 0) {
    throw new ComponentLoadError(`component ${path} imports ${missing.join(', ')}, which wsbridge does not provide (it provides: ${[...SUPPORTED_IMPORTS].join(', ')}, and WASI 0.2.x: cli, clocks, filesystem, io, random)`);
  }
  if (!meta.exports.includes(HANDLER_EXPORT)) {
    const other = meta.exports.filter((e) => e.startsWith('wasmcloud:messaging/handler'));
    throw new ComponentLoadError(`component ${path} does not export ${HANDLER_EXPORT}${other.length > 0 ? ` (it exports ${other.join(', ')})` : ''}`);
  }
}

export function unversioned(name: string): string {
  const at = name.indexOf('@');
  return at < 0 ? name : name.slice(0, at);
}
