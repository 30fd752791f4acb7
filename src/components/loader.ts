// Loads a WebAssembly component for in-process use: transpiles it with jco (JSPI async mode, so
// host imports may await), caches the transpiled output by the component's content hash, checks
// its imports against what wsbridge provides, and compiles its core modules once so that new
// instances cost milliseconds.
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { pathToFileURL } from 'node:url';
// jco-transpile is jco's own transpiler without its build toolchain (componentize-js), so an
// installed wsbridge does not carry that toolchain.
import { transpileBytes } from '@bytecodealliance/jco-transpile';
import { ComponentLoadError } from './component-config.ts';
import { SUPPORTED_IMPORTS, ASYNC_IMPORTS, ASYNC_EXPORTS } from './host-imports.ts';

export { ComponentLoadError };

type Instantiate = (getCoreModule: (name: string) => Promise<WebAssembly.Module>, imports: Record<string, unknown>) => Promise<Record<string, unknown>>;

export interface LoadedComponent {
  path: string;
  /** sha256 of the component bytes. */
  hash: string;
  /** Interfaces the component imports, as jco names them (without versions). */
  imports: string[];
  exports: string[];
  /** Whether the transpiled output came from the cache. */
  cached: boolean;
  instantiate(imports: Record<string, unknown>): Promise<Record<string, unknown>>;
}

// Part of the cache key: change it when the transpile options (async imports…) change.
const TRANSPILER_TAG = 'jco-jspi-v2';

export async function loadComponent(path: string, cacheDir: string): Promise<LoadedComponent> {
  let bytes: Buffer;
  try {
    bytes = readFileSync(path);
  } catch (err) {
    throw new ComponentLoadError(`component ${path}: cannot read it (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
  }
  const hash = createHash('sha256').update(TRANSPILER_TAG).update(bytes).digest('hex');
  const dir = join(cacheDir, hash);
  const metaFile = join(dir, 'wsbridge.json');
  let meta: { imports: string[]; exports: string[] };
  let cached = true;
  if (existsSync(metaFile)) {
    meta = JSON.parse(readFileSync(metaFile, 'utf8')) as typeof meta;
  } else {
    cached = false;
    let out;
    try {
      out = await transpileBytes(bytes, {
        name: 'component',
        instantiation: 'async',
        asyncMode: 'jspi',
        asyncImports: ASYNC_IMPORTS,
        asyncExports: ASYNC_EXPORTS,
        emitTypescriptDeclarations: false,
        noComponentErrorWrapping: false,
        wasiShim: false,
      });
    } catch (err) {
      throw new ComponentLoadError(`component ${path}: not a valid WebAssembly component (${(err as Error).message.split('\n')[0]})`);
    }
    meta = { imports: out.imports, exports: out.exports.map(([name]) => name) };
    // Write into a fresh folder, then rename it into place: concurrent loaders never see half.
    const tmp = `${dir}.${process.pid}.${Date.now()}.tmp`;
    for (const [file, data] of Object.entries(out.files)) {
      mkdirSync(dirname(join(tmp, file)), { recursive: true });
      writeFileSync(join(tmp, file), data);
    }
    writeFileSync(join(tmp, 'package.json'), '{"type":"module"}\n');
    writeFileSync(join(tmp, 'wsbridge.json'), JSON.stringify(meta));
    mkdirSync(cacheDir, { recursive: true });
    try {
      renameSync(tmp, dir);
    } catch {
      rmSync(tmp, { recursive: true, force: true }); // another process won the race
    }
  }

  const missing = meta.imports.filter((i) => !SUPPORTED_IMPORTS.has(unversioned(i)));
  if (missing.length > 0) {
    throw new ComponentLoadError(`component ${path} imports ${missing.join(', ')}, which wsbridge does not provide (it provides: ${[...SUPPORTED_IMPORTS].join(', ')})`);
  }
  const names = new Set(meta.imports.map(unversioned));
  const wasiPollables = ['wasi:io/streams', 'wasi:clocks/monotonic-clock'].filter((i) => names.has(i));
  if (names.has('golem:websocket/client') && wasiPollables.length > 0) {
    throw new ComponentLoadError(`component ${path} imports golem:websocket/client together with ${wasiPollables.join(', ')}: wsbridge cannot poll WASI pollables and golem pollables together; build it without those WASI features (componentize-js --disable all)`);
  }
  if (!meta.exports.some((e) => unversioned(e) === 'wasmcloud:messaging/handler' || e === 'handler')) {
    throw new ComponentLoadError(`component ${path} does not export wasmcloud:messaging/handler@0.2.0`);
  }

  const mod = (await import(pathToFileURL(join(dir, 'component.js')).href)) as { instantiate: Instantiate };
  const cores = new Map<string, Promise<WebAssembly.Module>>();
  const getCore = (name: string): Promise<WebAssembly.Module> => {
    let m = cores.get(name);
    if (!m) {
      m = WebAssembly.compile(readFileSync(join(dir, name)));
      cores.set(name, m);
    }
    return m;
  };
  return { path, hash, imports: meta.imports, exports: meta.exports, cached, instantiate: (imports) => mod.instantiate(getCore, imports) };
}

export function unversioned(name: string): string {
  const at = name.indexOf('@');
  return at < 0 ? name : name.slice(0, at);
}
