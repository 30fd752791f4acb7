// Builds WebAssembly components from JS sources: each folder with `component.js` and `world.wit`
// becomes `build/components/<folder>.wasm`. Uses `jco componentize`, which runs componentize-js
// (StarlingMonkey, the default engine) or, with --engine quickjs, componentize-qjs. Outputs are
// cached by a hash of the sources, the WIT and the toolchain, so a second build is instant.
//
//   node scripts/build-components.ts [--engine starlingmonkey|quickjs] [--out DIR] [SRC_DIR…]
import { createHash } from 'node:crypto';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('..', import.meta.url));
export type Engine = 'starlingmonkey' | 'quickjs';

const JCO = join(ROOT, 'node_modules/@bytecodealliance/jco/dist/jco.js');
const PREOPEN = join(ROOT, 'scripts/preopen.mjs');

/** WIT packages a world may use, by the name it refers to them with. */
const WIT_DEPS: Array<{ uses: RegExp; files: string[]; dir: string }> = [
  { uses: /wasmcloud:messaging\/[\w-]+@0\.2\.0/, files: ['wasmcloud-messaging-0.2.0.wit'], dir: 'wasmcloud-messaging' },
  { uses: /wasmcloud:websocket\//, files: ['wasmcloud-websocket-0.1.1-draft.wit'], dir: 'wasmcloud-websocket' },
  { uses: /golem:websocket\//, files: ['golem-websocket.wit'], dir: 'golem-websocket' },
  { uses: /golem:websocket\/|wasi:io\/poll/, files: ['wasi-io-poll-0.2.3.wit'], dir: 'wasi-io' },
];

/**
 * StarlingMonkey features left out unless a folder's build.json says otherwise. Clocks, randomness
 * and stdio stay: with `--disable all`, Date.now() is frozen at build time, Math.random() repeats
 * the same sequence in every instance and timers cannot fire. A folder may opt out for speed
 * (`{"disable": ["all"]}`) when it needs none of them.
 */
const DEFAULT_DISABLE = ['http', 'fetch-event'];

function engineFlags(engine: Engine, disable: string[]): string[] {
  // The QuickJS flags stub WASI out and build a synchronous guest.
  return engine === 'quickjs' ? ['--backend', 'qjs', '--backend-qjs-stub-wasi', '--backend-qjs-disable-async'] : ['--disable', ...disable];
}

function toolVersion(engine: Engine): string {
  const pkg = (p: string) => (JSON.parse(readFileSync(join(ROOT, 'node_modules', p, 'package.json'), 'utf8')) as { version: string }).version;
  // StarlingMonkey builds use the top-level componentize-js; QuickJS builds go through jco.
  return engine === 'starlingmonkey' ? `componentize-js ${pkg('@bytecodealliance/componentize-js')}` : `jco ${pkg('@bytecodealliance/jco')}`;
}

export interface BuildResult {
  path: string;
  cached: boolean;
  ms: number;
}

/** Builds one component folder; returns the .wasm path. */
export async function buildComponent(srcDir: string, opts: { engine?: Engine; outDir?: string; name?: string } = {}): Promise<BuildResult> {
  const engine = opts.engine ?? 'starlingmonkey';
  const name = opts.name ?? (engine === 'starlingmonkey' ? basename(srcDir) : `${basename(srcDir)}.${engine}`);
  const outDir = opts.outDir ?? join(ROOT, 'build/components');
  const source = join(srcDir, 'component.js');
  const worldText = readFileSync(join(srcDir, 'world.wit'), 'utf8');
  const world = /^\s*world\s+([\w-]+)\s*\{/m.exec(worldText)?.[1];
  if (!world) throw new Error(`${srcDir}/world.wit: no world found`);
  const deps = WIT_DEPS.filter((d) => d.uses.test(worldText));
  const buildJson = join(srcDir, 'build.json');
  const disable = existsSync(buildJson) ? (JSON.parse(readFileSync(buildJson, 'utf8')) as { disable: string[] }).disable : DEFAULT_DISABLE;

  const hash = createHash('sha256');
  hash.update(`${engine}\n${disable.join(',')}\n${toolVersion(engine)}\n${worldText}\n`);
  hash.update(readFileSync(source));
  for (const d of deps) for (const f of d.files) hash.update(readFileSync(join(ROOT, 'wit', f)));
  const digest = hash.digest('hex');
  const out = join(outDir, `${name}.wasm`);
  const stamp = `${out}.sha256`;
  if (existsSync(out) && existsSync(stamp) && readFileSync(stamp, 'utf8') === digest) return { path: out, cached: true, ms: 0 };

  const started = performance.now();
  const work = mkdtempSync(join(tmpdir(), 'wsbridge-build-'));
  try {
    mkdirSync(join(work, 'wit'));
    writeFileSync(join(work, 'wit/world.wit'), worldText);
    for (const d of deps) {
      mkdirSync(join(work, 'wit/deps', d.dir), { recursive: true });
      for (const f of d.files) writeFileSync(join(work, 'wit/deps', d.dir, f), readFileSync(join(ROOT, 'wit', f)));
    }
    const tmpOut = join(work, 'out.wasm');
    // StarlingMonkey: componentize-js's own API, the top-level (0.23) release. `jco componentize`
    // would run jco's nested 0.22, whose guest bindings cost ~5× more per call and leak memory
    // with large bodies (ComponentizeJS#350). QuickJS: through jco's CLI (componentize-qjs).
    const args = engine === 'starlingmonkey'
      ? ['--import', PREOPEN, fileURLToPath(import.meta.url), '--componentize-child', JSON.stringify({ sourcePath: resolve(source), witPath: join(work, 'wit'), worldName: world, disableFeatures: disable.includes('all') ? ['stdio', 'random', 'clocks', 'http', 'fetch-event'] : disable, out: tmpOut })]
      : ['--import', PREOPEN, JCO, 'componentize', resolve(source), '--wit', join(work, 'wit'), '--world-name', world, ...engineFlags(engine, disable), '-o', tmpOut];
    const output = await run(process.execPath, args);
    if (!existsSync(tmpOut)) throw new Error(`componentize ${srcDir} failed:\n${output}`);
    mkdirSync(outDir, { recursive: true });
    // Write then rename, so a concurrent reader never sees half a file.
    renameSync(tmpOut, `${out}.tmp`);
    renameSync(`${out}.tmp`, out);
    writeFileSync(stamp, digest);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  return { path: out, cached: false, ms: Math.round(performance.now() - started) };
}

function run(cmd: string, args: string[]): Promise<string> {
  return new Promise((resolvePromise, reject) => {
    const p = spawn(cmd, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.stderr.on('data', (d: Buffer) => (out += d.toString()));
    p.on('error', reject);
    p.on('close', (code) => (code === 0 ? resolvePromise(out) : reject(new Error(`${basename(cmd)} exited ${code}:\n${out}`))));
  });
}

/** The component folders under a directory (those with component.js and world.wit). */
export function componentDirs(parent: string): string[] {
  return readdirSync(parent, { withFileTypes: true })
    .filter((d) => d.isDirectory() && existsSync(join(parent, d.name, 'component.js')) && existsSync(join(parent, d.name, 'world.wit')))
    .map((d) => join(parent, d.name));
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url) && process.argv[2] === '--componentize-child') {
  // The child build process (started with preview2-shim's preopens, so the bundled wasm-tools can
  // read the WIT folder).
  const o = JSON.parse(process.argv[3]!) as { sourcePath: string; witPath: string; worldName: string; disableFeatures: Array<'stdio' | 'random' | 'clocks' | 'http' | 'fetch-event'>; out: string };
  const { componentize } = await import('@bytecodealliance/componentize-js');
  const { component } = await componentize({ sourcePath: o.sourcePath, witPath: o.witPath, worldName: o.worldName, disableFeatures: o.disableFeatures });
  writeFileSync(o.out, component);
} else if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const argv = process.argv.slice(2);
  let engine: Engine = 'starlingmonkey';
  let outDir: string | undefined;
  const dirs: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--engine') {
      const e = argv[++i];
      if (e !== 'starlingmonkey' && e !== 'quickjs') throw new Error(`--engine: expected starlingmonkey or quickjs, got ${e}`);
      engine = e;
    } else if (a === '--out') outDir = argv[++i];
    else dirs.push(a);
  }
  const targets = dirs.length > 0 ? dirs : componentDirs(join(ROOT, 'examples/components'));
  for (const dir of targets) {
    const r = await buildComponent(dir, { engine, outDir });
    console.log(`${r.cached ? 'cached ' : 'built  '} ${r.path}${r.cached ? '' : ` (${(r.ms / 1000).toFixed(1)} s)`}`);
  }
}
