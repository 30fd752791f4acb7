// Builds WebAssembly components from JS sources: each folder with `component.js` and `world.wit`
// becomes `build/components/<folder>.wasm`.
//
//   npm run build:components -- [--engine starlingmonkey|quickjs] [--out DIR] [SRC_DIR…]
//
// (no SRC_DIR: every example in examples/components/). Relative paths are taken from the directory
// npm was run in. Steps:
//   1. bundle: rolldown follows the source's imports (other files, npm packages, and
//      `wsbridge/guest`, the authoring kit in guest/, bound to the interfaces the world imports)
//      into one ES module; WIT interfaces (`wasmcloud:…/…`, `wasi:…/…`) stay imports;
//   2. WIT: world.wit plus the packages it uses (wit/ here, WASI 0.2.12 from jco) in a wit/deps
//      folder, so a world never fails with "package … not found" for a contract wsbridge provides;
//   3. componentize: StarlingMonkey through componentize-js's own API (0.23, not `jco
//      componentize`, which runs jco's nested 0.22 with ~5× the per-call cost and a memory leak,
//      ComponentizeJS#350), or with --engine quickjs componentize-qjs through jco.
// Outputs are cached by a hash of the bundle, the WIT and the toolchain, so a second build is
// instant; a build that is not cached says so on stderr before it starts (10–50 s, ~850 MB).
import { createHash } from 'node:crypto';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('..', import.meta.url));
export type Engine = 'starlingmonkey' | 'quickjs';

const JCO = join(ROOT, 'node_modules/@bytecodealliance/jco/dist/jco.js');
const PREOPEN = join(ROOT, 'scripts/preopen.mjs');
const GUEST = join(ROOT, 'guest');
/** WASI 0.2.12 WIT packages, as jco ships them (componentize-js 0.23 components import @0.2.12). */
const WASI_0_2_12 = join(ROOT, 'node_modules/@bytecodealliance/jco/lib/wit/builtin/0.2.12');

/** WIT packages a world may use, by the name it refers to them with. */
const WIT_DEPS: Array<{ uses: RegExp; files: string[]; dir: string }> = [
  { uses: /wasmcloud:messaging\/[\w-]+@0\.2\.0/, files: ['wasmcloud-messaging-0.2.0.wit'], dir: 'wasmcloud-messaging' },
  { uses: /wasmcloud:websocket\//, files: ['wasmcloud-websocket-0.1.1-draft.wit'], dir: 'wasmcloud-websocket' },
  { uses: /golem:websocket\//, files: ['golem-websocket.wit'], dir: 'golem-websocket' },
  { uses: /golem:websocket\/|wasi:io\/[\w-]+@0\.2\.3|wasi:clocks\/[\w-]+@0\.2\.3/, files: ['wasi-io-poll-0.2.3.wit'], dir: 'wasi-io@0.2.3' },
  { uses: /wasi:clocks\/[\w-]+@0\.2\.3/, files: ['wasi-clocks-0.2.3.wit'], dir: 'wasi-clocks@0.2.3' },
];

/** A WIT interface reference (`ns:pkg/iface@version`) is an import of the component, never a file. */
const WIT_IMPORT = /^[a-z][a-z0-9-]*:[a-z][a-z0-9-]*\/[a-z][\w-]*(@[\w.+-]+)?$/;

/**
 * StarlingMonkey features left out unless a folder's build.json says otherwise. Clocks, randomness
 * and stdio stay: with `--disable all`, Date.now() is frozen at build time, Math.random() repeats
 * the same sequence in every instance and timers cannot fire. A folder may opt out for speed
 * (`{"disable": ["all"]}`) when it needs none of them.
 */
const DEFAULT_DISABLE = ['http', 'fetch-event'];
const FEATURES = ['stdio', 'random', 'clocks', 'http', 'fetch-event'];

function engineFlags(engine: Engine, disable: string[]): string[] {
  // The QuickJS flags stub WASI out and build a synchronous guest.
  return engine === 'quickjs' ? ['--backend', 'qjs', '--backend-qjs-stub-wasi', '--backend-qjs-disable-async'] : ['--disable', ...disable];
}

function toolVersion(engine: Engine): string {
  const pkg = (p: string) => (JSON.parse(readFileSync(join(ROOT, 'node_modules', p, 'package.json'), 'utf8')) as { version: string }).version;
  // StarlingMonkey builds use the top-level componentize-js; QuickJS builds go through jco.
  return `${engine === 'starlingmonkey' ? `componentize-js ${pkg('@bytecodealliance/componentize-js')}` : `jco ${pkg('@bytecodealliance/jco')}`}, rolldown ${pkg('rolldown')}`;
}

export interface BuildResult {
  path: string;
  cached: boolean;
  ms: number;
}

export interface BuildOptions {
  engine?: Engine;
  outDir?: string;
  name?: string;
  /** Told one line before a build that is not cached starts; default: stderr. false: silent. */
  progress?: ((line: string) => void) | false;
}

/** A build that cannot go on (bad source, bad world): its message is for the user as it is. */
export class BuildError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'BuildError';
  }
}

/** Builds one component folder; returns the .wasm path. */
export async function buildComponent(srcDir: string, opts: BuildOptions = {}): Promise<BuildResult> {
  const engine = opts.engine ?? 'starlingmonkey';
  const name = opts.name ?? (engine === 'starlingmonkey' ? basename(srcDir) : `${basename(srcDir)}.${engine}`);
  const outDir = opts.outDir ?? join(ROOT, 'build/components');
  const source = join(srcDir, 'component.js');
  if (!existsSync(source)) throw new BuildError(`${srcDir}: no component.js (a component folder holds component.js and world.wit; \`npm run new:component -- <name>\` makes one)`);
  if (!existsSync(join(srcDir, 'world.wit'))) throw new BuildError(`${srcDir}: no world.wit (a component folder holds component.js and world.wit; \`npm run new:component -- <name>\` makes one)`);
  const userWorld = readFileSync(join(srcDir, 'world.wit'), 'utf8');
  const world = /^\s*world\s+([\w-]+)\s*\{/m.exec(userWorld)?.[1];
  if (!world) throw new BuildError(`${srcDir}/world.wit: no world found (expected \`world <name> { … }\`)`);
  const buildJson = join(srcDir, 'build.json');
  const disable = existsSync(buildJson) ? readDisable(buildJson) : DEFAULT_DISABLE;

  const bundle = await bundleSource(source, userWorld, world, { engine, disable });
  const worldText = bundle.worldText;
  const deps = witDeps(worldText, `${srcDir}/world.wit`);

  const hash = createHash('sha256');
  hash.update(`${engine}\n${disable.join(',')}\n${toolVersion(engine)}\n${worldText}\n`);
  hash.update(bundle.code);
  for (const d of deps) for (const [f, text] of d.files) hash.update(`${d.dir}/${f}\n${text}`);
  const digest = hash.digest('hex');
  const out = join(outDir, `${name}.wasm`);
  const stamp = `${out}.sha256`;
  if (existsSync(out) && existsSync(stamp) && readFileSync(stamp, 'utf8') === digest) return { path: out, cached: true, ms: 0 };

  if (opts.progress !== false) {
    const say = opts.progress ?? ((line: string) => process.stderr.write(`${line}\n`));
    say(engine === 'starlingmonkey'
      ? `building ${name} with componentize-js (StarlingMonkey): 10–50 s and ~850 MB of memory; the result is cached until its sources change`
      : `building ${name} with componentize-qjs (QuickJS): a few seconds; the result is cached until its sources change`);
  }
  const started = performance.now();
  const work = mkdtempSync(join(tmpdir(), 'wsbridge-build-'));
  try {
    mkdirSync(join(work, 'wit'));
    writeFileSync(join(work, 'wit/world.wit'), worldText);
    for (const d of deps) {
      mkdirSync(join(work, 'wit/deps', d.dir), { recursive: true });
      for (const [f, text] of d.files) writeFileSync(join(work, 'wit/deps', d.dir, f), text);
    }
    const bundled = join(work, 'component.js');
    writeFileSync(bundled, bundle.code);
    const tmpOut = join(work, 'out.wasm');
    const args = engine === 'starlingmonkey'
      ? ['--import', PREOPEN, fileURLToPath(import.meta.url), '--componentize-child', JSON.stringify({ sourcePath: bundled, witPath: join(work, 'wit'), worldName: world, disableFeatures: disable.includes('all') ? FEATURES : disable, out: tmpOut })]
      : ['--import', PREOPEN, JCO, 'componentize', bundled, '--wit', join(work, 'wit'), '--world-name', world, ...engineFlags(engine, disable), '-o', tmpOut];
    let output: string;
    try {
      output = await run(process.execPath, args);
    } catch (e) {
      throw new BuildError(`componentize ${srcDir} failed:\n${(e as Error).message}`);
    }
    if (!existsSync(tmpOut)) throw new BuildError(`componentize ${srcDir} failed:\n${output}`);
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

function readDisable(file: string): string[] {
  let o: unknown;
  try {
    o = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new BuildError(`${file}: not valid JSON (${(e as Error).message})`);
  }
  const disable = (o as { disable?: unknown } | null)?.disable;
  if (!Array.isArray(disable) || disable.some((f) => typeof f !== 'string' || (f !== 'all' && !FEATURES.includes(f)))) {
    throw new BuildError(`${file}: expected {"disable": [...]} with features from: all, ${FEATURES.join(', ')}`);
  }
  return disable as string[];
}

/** The WIT packages a world needs besides itself, with their texts. */
function witDeps(worldText: string, where: string): Array<{ dir: string; files: Array<[string, string]> }> {
  const deps = WIT_DEPS.filter((d) => d.uses.test(worldText)).map((d) => ({ dir: d.dir, files: d.files.map((f): [string, string] => [f, readFileSync(join(ROOT, 'wit', f), 'utf8')]) }));
  const wasi = new Set([...worldText.matchAll(/wasi:([\w-]+)\/[\w-]+@([\w.+-]+)/g)].map((m) => `${m[1]}@${m[2]}`));
  let want0212 = false;
  for (const p of wasi) {
    const [pkg, version] = p.split('@') as [string, string];
    if (version === '0.2.12') want0212 = true;
    else if (!(version === '0.2.3' && (pkg === 'io' || pkg === 'clocks'))) {
      throw new BuildError(`${where}: uses wasi:${p}, whose WIT this build does not carry. Write wasi:${pkg}/…@0.2.12 (componentize-js 0.23 itself imports WASI @0.2.12, and wsbridge runs any 0.2.x)`);
    }
  }
  if (want0212) {
    // The whole 0.2.12 set: its packages use one another (cli uses io and filesystem, …).
    for (const pkg of readdirSync(WASI_0_2_12)) {
      deps.push({ dir: `${pkg}@0.2.12`, files: readdirSync(join(WASI_0_2_12, pkg)).filter((f) => f.endsWith('.wit')).map((f): [string, string] => [f, readFileSync(join(WASI_0_2_12, pkg, f), 'utf8')]) });
    }
  }
  return deps;
}

interface Bundle {
  code: string;
  /** world.wit as built: with wasi:io/poll and wasi:clocks @0.2.3 added when the kit's WebSocket needs them. */
  worldText: string;
}

/**
 * Bundles a component source into one ES module. `wsbridge/guest` resolves to a module generated
 * for this world: it imports the WIT interfaces the world has, binds the kit to them, and is
 * evaluated before the component's own code (so the kit sees every timer the component sets).
 */
async function bundleSource(source: string, userWorld: string, world: string, o: { engine: Engine; disable: string[] }): Promise<Bundle> {
  const imports = (iface: RegExp) => new RegExp(`^\\s*import\\s+${iface.source}\\s*;`, 'm').test(userWorld);
  const hasConsumer = imports(/wasmcloud:messaging\/consumer@0\.2\.0/);
  const hasGolem = imports(/golem:websocket\/client@1\.5\.0/);
  const hasWasmcloud = imports(/wasmcloud:websocket\/client@0\.1\.1-draft/);
  const timersOff = o.disable.includes('all') || o.disable.includes('clocks');
  const websocketWhy =
    o.engine === 'quickjs' ? 'the WebSocket class needs the StarlingMonkey engine (QuickJS builds have no event loop)'
    : !hasGolem && !hasWasmcloud ? undefined
    : timersOff ? 'the WebSocket class needs timers: build.json disables the clocks feature'
    : undefined;
  const golem = hasGolem && websocketWhy === undefined;
  const wasmcloud = !golem && hasWasmcloud && websocketWhy === undefined;
  const g = (f: string) => JSON.stringify(join(GUEST, f));
  const entry = [
    `// wsbridge/guest for world ${world}, generated by scripts/build-components.ts.`,
    hasConsumer ? `import * as consumer from 'wasmcloud:messaging/consumer@0.2.0';` : '',
    golem ? `import * as golemClient from 'golem:websocket/client@1.5.0';\nimport * as poll from 'wasi:io/poll@0.2.3';\nimport * as clock from 'wasi:clocks/monotonic-clock@0.2.3';\nimport { golemTransport } from ${g('golem.js')};` : '',
    wasmcloud ? `import * as wasmcloudClient from 'wasmcloud:websocket/client@0.1.1-draft';\nimport { wasmcloudTransport } from ${g('wasmcloud.js')};` : '',
    `import { bind } from ${g('bindings.js')};`,
    (golem || wasmcloud) ? `import { WebSocket, MessageEvent, CloseEvent } from ${g('websocket.js')};` : '',
    // The component's timers report what they throw (and golem's pump waits for them).
    o.engine === 'starlingmonkey' ? `import { installTimers } from ${g('timers.js')};\ninstallTimers();` : '',
    `bind({ ${[
      hasConsumer ? 'consumer' : '',
      golem ? 'websocket: golemTransport(golemClient, poll, clock)' : wasmcloud ? 'websocket: wasmcloudTransport(wasmcloudClient)' : websocketWhy ? `websocket: ${JSON.stringify(websocketWhy)}` : '',
      o.engine === 'quickjs' ? 'eventLoop: false' : '',
    ].filter(Boolean).join(', ')} });`,
    // Code written for browsers reaches for the globals.
    (golem || wasmcloud) ? 'globalThis.WebSocket ??= WebSocket;\nglobalThis.MessageEvent ??= MessageEvent;\nglobalThis.CloseEvent ??= CloseEvent;' : '',
    `export * from ${g('index.js')};`,
  ].filter(Boolean).join('\n');

  let usesKit = false;
  let code = await rolldownBundle(resolve(source), entry, () => (usesKit = true));
  if (usesKit) {
    // Again, with the kit evaluated first.
    code = await rolldownBundle(MAIN_ID, entry, () => {}, `import ${JSON.stringify(GUEST_ID)};\nexport * from ${JSON.stringify(resolve(source))};\n`);
  }
  let worldText = userWorld;
  if (usesKit && golem) {
    // The kit waits on golem pollables and a clock pollable together: both wasi:io@0.2.3.
    const add = ['wasi:io/poll@0.2.3', 'wasi:clocks/monotonic-clock@0.2.3'].filter((i) => !imports(new RegExp(i.replace(/[./]/g, '\\$&'))));
    worldText = userWorld.replace(/^(\s*world\s+[\w-]+\s*\{)/m, `$1\n${add.map((i) => `  import ${i};`).join('\n')}`);
  }
  return { code, worldText };
}

// Modules the bundler is handed as text (rolldown virtual modules: stable names, so the bundle,
// and with it the build cache key, does not depend on temporary paths).
const GUEST_ID = '\0wsbridge/guest';
const MAIN_ID = '\0wsbridge/main';

async function rolldownBundle(input: string, guestEntry: string, onKit: () => void, main?: string): Promise<string> {
  const { rolldown } = await import('rolldown');
  const problems: string[] = [];
  const build = await rolldown({
    input,
    cwd: ROOT,
    platform: 'neutral',
    resolve: { mainFields: ['module', 'main'] },
    external: (id) => WIT_IMPORT.test(id),
    plugins: [{
      name: 'wsbridge-guest',
      resolveId(id) {
        if (id === MAIN_ID || id === GUEST_ID) return id;
        if (id !== 'wsbridge/guest') return null;
        onKit();
        return GUEST_ID;
      },
      load(id) {
        if (id === GUEST_ID) return guestEntry;
        if (id === MAIN_ID) return main ?? null;
        return null;
      },
    }],
    onLog(level, log) {
      if (level === 'warn' && (log.code === 'UNRESOLVED_IMPORT' || log.code === 'MISSING_EXPORT')) problems.push(log.message);
    },
  });
  try {
    const { output } = await build.generate({ format: 'esm', codeSplitting: false });
    if (problems.length > 0) throw new BuildError(problems.join('\n'));
    const chunks = output.filter((o) => o.type === 'chunk');
    if (chunks.length !== 1) throw new BuildError(`bundling gave ${chunks.length} chunks, expected one`);
    return chunks[0]!.code;
  } catch (e) {
    if (e instanceof BuildError) throw e;
    throw new BuildError(`cannot bundle the component's source (${(e as Error).message})`);
  } finally {
    await build.close();
  }
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

/** The directory a user ran `npm run …` in (npm runs scripts from the package root). */
export const USER_CWD = process.env.INIT_CWD ?? process.cwd();

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
  const usage = 'usage: npm run build:components -- [--engine starlingmonkey|quickjs] [--out DIR] [SRC_DIR…]';
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--engine') {
      const e = argv[++i];
      if (e !== 'starlingmonkey' && e !== 'quickjs') {
        console.error(`--engine: expected starlingmonkey or quickjs, got ${e}\n${usage}`);
        process.exit(2);
      }
      engine = e;
    } else if (a === '--out') {
      const d = argv[++i];
      if (!d) {
        console.error(`--out: expected a directory\n${usage}`);
        process.exit(2);
      }
      outDir = resolve(USER_CWD, d);
    } else if (a === '--help' || a === '-h') {
      console.log(usage);
      process.exit(0);
    } else if (a.startsWith('-')) {
      console.error(`unknown option ${a}\n${usage}`);
      process.exit(2);
    } else dirs.push(resolve(USER_CWD, a));
  }
  const targets = dirs.length > 0 ? dirs : componentDirs(join(ROOT, 'examples/components'));
  const shown = (p: string) => (relative(USER_CWD, p).startsWith('..') ? p : relative(USER_CWD, p));
  for (const dir of targets) {
    try {
      const r = await buildComponent(dir, { engine, outDir });
      console.log(`${r.cached ? 'cached ' : 'built  '} ${shown(r.path)}${r.cached ? '' : ` (${(r.ms / 1000).toFixed(1)} s)`}`);
    } catch (e) {
      console.error(e instanceof BuildError ? `wsbridge build: ${e.message}` : e);
      process.exit(1);
    }
  }
}
