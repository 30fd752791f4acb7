// The published package, as a consumer gets it: `npm pack` (which builds dist/), installed into
// a scratch project from the npm cache where it can (offline), then `npx wsbridge --help`, an SDK
// and an API import, the SDK's types without lib "dom" or @types/node, `npx wsbridge serve` with
// the example components the package carries (demo assets from dist/, no ExperimentalWarning,
// SIGTERM to the npx PID stops it) and a component of the consumer's own on the guest kit, built
// with this repository's build as docs/components.md says (the package does not export the kit), and the
// clear refusal under an old Node. Also what the tarball must not carry.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import net from 'node:net';
import { ROOT, startGateway, TestClient } from './helpers.ts';

const PATH = `${dirname(process.execPath)}:${process.env.PATH ?? ''}`;
const env = { ...process.env, PATH, npm_config_loglevel: 'warn', npm_config_update_notifier: 'false', npm_config_fund: 'false', npm_config_audit: 'false' };

/** Runs a command to its end (asynchronously: the in-process gateway keeps serving meanwhile). */
function run(cmd: string, args: string[], cwd: string, extraEnv: Record<string, string> = {}, timeoutMs = 240_000): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve) => {
    const p = spawn(cmd, args, { cwd, env: { ...env, ...extraEnv }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout.on('data', (d: Buffer) => (out += d));
    p.stderr.on('data', (d: Buffer) => (err += d));
    const timer = setTimeout(() => p.kill('SIGKILL'), timeoutMs);
    p.on('close', (code) => (clearTimeout(timer), resolve({ code, out, err })));
  });
}

function exited(p: ChildProcess, ms: number): Promise<number | null> {
  return new Promise((resolve, reject) => {
    if (p.exitCode !== null) return resolve(p.exitCode);
    const t = setTimeout(() => reject(new Error(`still running after ${ms} ms`)), ms);
    p.on('exit', (code) => (clearTimeout(t), resolve(code)));
  });
}

test('npm pack → install in a scratch project → npx wsbridge --help, SDK and API imports, types, serve, SIGTERM', async (t) => {
  const work = mkdtempSync(join(tmpdir(), 'wsbridge-pack-'));
  t.after(() => rmSync(work, { recursive: true, force: true }));

  // Pack (prepack builds dist/).
  const pack = await run('npm', ['pack', '--json', '--pack-destination', work], ROOT);
  assert.equal(pack.code, 0, pack.err);
  const [info] = JSON.parse(pack.out.slice(pack.out.indexOf('['))) as Array<{ filename: string; size: number; unpackedSize: number; files: Array<{ path: string }> }>;
  const files = info!.files.map((f) => f.path);
  for (const f of ['bin/wsbridge.js', 'components/echo.wasm', 'components/chat.wasm', 'dist/cli/main.js', 'dist/index.js', 'dist/sdk/client.js', 'dist/sdk/client.d.ts', 'dist/demo/index.html', 'dist/demo/demo.js', 'dist/admin/index.html', 'dist/admin/admin.js', 'dist/admin/admin.css', 'LICENSE', 'README.md']) assert.ok(files.includes(f), `${f} is packed`);
  assert.ok(!files.some((f) => f.startsWith('src/') || f.startsWith('test/') || f.endsWith('.map')), 'no sources, tests or source maps');
  assert.match(readFileSync(join(ROOT, 'LICENSE'), 'utf8'), /Apache License\s+Version 2\.0, January 2004/);
  const manifest = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as Record<string, Record<string, string> | string | boolean | undefined>;
  assert.equal(manifest.private, undefined, 'publishable');
  assert.equal(manifest.license, 'Apache-2.0');
  const deps = manifest.dependencies as Record<string, string>;
  for (const heavy of ['node', '@bytecodealliance/componentize-js', '@bytecodealliance/jco', 'bufferutil']) assert.equal(deps[heavy], undefined, `${heavy} is not a runtime dependency`);
  assert.ok((manifest.optionalDependencies as Record<string, string>).bufferutil);
  assert.ok((manifest.devDependencies as Record<string, string>)['@nats-io/nkeys'], 'tests import @nats-io/nkeys: declared');

  // A scratch project installs the tarball: offline from the npm cache when it holds everything,
  // else with the registry as a fallback.
  const app = join(work, 'app');
  spawnSync('mkdir', ['-p', app]);
  writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'scratch', version: '1.0.0', private: true, type: 'module' }));
  const tarball = join(work, info!.filename);
  let install = await run('npm', ['install', '--offline', tarball], app);
  let how = 'offline, from the npm cache';
  if (install.code !== 0 && /ENOTCACHED|offline/i.test(install.err)) {
    how = 'the cache lacked some metadata: --prefer-offline';
    install = await run('npm', ['install', '--prefer-offline', tarball], app);
  }
  t.diagnostic(`installed ${how}; node_modules ${(await run('du', ['-sm', 'node_modules'], app)).out.split('\t')[0]} MB`);
  assert.equal(install.code, 0, install.err);
  assert.doesNotMatch(install.err, /EBADENGINE/);
  for (const absent of ['node', '@bytecodealliance/componentize-js', '@bytecodealliance/jco']) assert.ok(!existsSync(join(app, 'node_modules', absent)), `${absent} not installed`);
  t.diagnostic(`tarball ${(info!.size / 1e6).toFixed(2)} MB, unpacked ${(info!.unpackedSize / 1e6).toFixed(2)} MB`);

  // npx wsbridge --help: quiet and quick.
  const started = performance.now();
  const help = await run('npx', ['wsbridge', '--help'], app);
  const helpMs = performance.now() - started;
  assert.equal(help.code, 0, help.err);
  assert.match(help.out, /Usage: wsbridge <command>/);
  assert.doesNotMatch(help.err, /EBADENGINE|ExperimentalWarning|Warning/);
  t.diagnostic(`npx wsbridge --help: ${helpMs.toFixed(0)} ms`);

  // The SDK and the API, imported by a consumer, against a real gateway.
  const gw = await startGateway();
  t.after(() => gw.shutdown());
  writeFileSync(join(app, 'use.mjs'), `import { connect, RequestError } from 'wsbridge/client';
import { Gateway, loadConfig } from 'wsbridge';
const c = connect(${JSON.stringify(gw.server!.url)}, { reconnect: false });
await c.ready();
const sub = c.subscribe('bad*', () => {});
const code = await sub.ready.then(() => 'accepted', (e) => e.code);
c.close();
console.log(JSON.stringify({ session: typeof c.url, code, gateway: typeof Gateway.start, config: loadConfig({ flags: { MODE: 'server' }, env: {} }).listen.port, requestError: typeof RequestError }));
`);
  const use = await run(process.execPath, ['use.mjs'], app);
  assert.equal(use.code, 0, use.err);
  assert.deepEqual(JSON.parse(use.out), { session: 'string', code: 'invalid_subject', gateway: 'function', config: 8080, requestError: 'function' });
  assert.doesNotMatch(use.err, /Warning/);

  // The guest kit is not in the package (docs/components.md, "With wsbridge installed from npm").
  writeFileSync(join(app, 'kit.mjs'), `import('wsbridge/guest').then(() => console.log('resolved'), (e) => console.log(e.code));\n`);
  assert.equal((await run(process.execPath, ['kit.mjs'], app)).out.trim(), 'ERR_PACKAGE_PATH_NOT_EXPORTED');
  // What works instead: this repository's build makes a component that lives in the consumer's
  // project and imports the consumer's own npm packages. (QuickJS, for speed, so the handler is
  // synchronous; test/new-component.test.ts builds a scaffold with the default engine.)
  spawnSync('mkdir', ['-p', join(app, 'node_modules/shout')]);
  writeFileSync(join(app, 'node_modules/shout/package.json'), JSON.stringify({ name: 'shout', version: '1.0.0', type: 'module', main: 'index.js' }));
  writeFileSync(join(app, 'node_modules/shout/index.js'), 'export const shout = (s) => `${s.toUpperCase()}!`;\n');
  const { INIT_CWD: _npmCwd, ...rootEnv } = process.env;
  const scaffolded = spawnSync(process.execPath, [join(ROOT, 'scripts/new-component.ts'), 'own-kit', '--dir', app], { cwd: ROOT, env: rootEnv, encoding: 'utf8' });
  assert.equal(scaffolded.status, 0, scaffolded.stderr);
  writeFileSync(join(app, 'own-kit/component.js'), `import { messageHandler } from 'wsbridge/guest';
import { shout } from 'shout';
export const handler = messageHandler((msg) => ({ said: shout(msg.text) }));
`);
  const built = await run('npm', ['run', '--silent', 'build:components', '--', join(app, 'own-kit'), '--engine', 'quickjs', '--out', join(app, 'build')], ROOT, { INIT_CWD: ROOT });
  assert.equal(built.code, 0, built.err);
  assert.ok(existsSync(join(app, 'build/own-kit.quickjs.wasm')), built.out);

  // The SDK's types check without lib "dom" and without @types/node.
  writeFileSync(join(app, 'use-types.ts'), `import { connect, RequestError, type Message, type Subscription } from 'wsbridge/client';
const c = connect('ws://127.0.0.1:8080/ws', { token: () => 't', reconnect: { baseMs: 100 } });
const s: Subscription = c.subscribe('a.*', (m: Message) => { m.text(); });
export const ok: Promise<void> = s.ready.catch((e: unknown) => { if (e instanceof RequestError) throw e; });
`);
  writeFileSync(join(app, 'tsconfig.json'), JSON.stringify({ compilerOptions: { strict: true, noEmit: true, module: 'nodenext', moduleResolution: 'nodenext', target: 'es2022', lib: ['es2022'], types: [], skipLibCheck: false }, files: ['use-types.ts'] }));
  const tsc = await run(process.execPath, [join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', app], app);
  assert.equal(tsc.code, 0, `${tsc.out}${tsc.err}`);

  // npx wsbridge serve: the demo page and the SDK from dist/ without ExperimentalWarning;
  // SIGTERM to the npx PID stops the gateway and frees its port.
  // With the example components the package carries (built with QuickJS, no toolchain needed).
  const shipped = (n: string) => `node_modules/wsbridge/components/${n}.wasm`;
  const serve = spawn('npx', ['wsbridge', 'serve', '--listen', '127.0.0.1:0', '--component', shipped('echo'), '--subscribe', 'echo.>', '--component', shipped('chat'), '--subscribe', 'chat.>', '--component', 'build/own-kit.quickjs.wasm', '--subscribe', 'own-kit.>', '--pool-size', '1'], { cwd: app, env: { ...env, LOG_FORMAT: 'json', COMPONENT_CACHE_DIR: join(work, 'cache') }, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  t.after(() => {
    try {
      process.kill(-serve.pid!, 'SIGKILL');
    } catch {
      // gone
    }
  });
  let out = '';
  serve.stdout!.on('data', (d: Buffer) => (out += d));
  serve.stderr!.on('data', (d: Buffer) => (out += d));
  const base = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`serve did not start:\n${out}`)), 30_000);
    const check = () => {
      const m = /demo page on (http:\/\/\S+)/.exec(out);
      if (m) (clearTimeout(timer), resolve(m[1]!));
    };
    serve.stdout!.on('data', check);
    serve.on('exit', (code) => (clearTimeout(timer), reject(new Error(`serve exited ${code}:\n${out}`))));
  });
  for (const path of ['', 'demo.js', 'sdk/client.js', 'favicon.ico']) assert.equal((await fetch(`${base}${path}`)).status, 200, `/${path}`);
  assert.match(await (await fetch(`${base}sdk/client.js`)).text(), /export function connect/);
  const port = Number(new URL(base).port);
  const session = await TestClient.connect(`ws://127.0.0.1:${port}/ws`);
  const echoed = await session.call({ op: 'req', id: 'e', subject: 'echo.packaged', text: 'from the package' });
  assert.equal(Buffer.from(String(echoed.body), 'base64').toString(), 'from the package');
  await session.call({ op: 'sub', subject: 'room.lobby', id: 's' });
  session.send({ subject: 'chat.lobby', text: 'hi from npx' });
  const said = await session.next((f) => f.subject === 'room.lobby', 10_000);
  assert.equal((JSON.parse(Buffer.from(String(said.body), 'base64').toString()) as { text: string }).text, 'hi from npx');
  const own = await session.call({ op: 'req', id: 'o', subject: 'own-kit.try', text: 'mine' });
  assert.deepEqual(JSON.parse(Buffer.from(String(own.body), 'base64').toString()), { said: 'MINE!' });
  process.kill(serve.pid!, 'SIGTERM'); // npx's own PID
  await exited(serve, 20_000);
  // npm exits first; the gateway notices within a second and closes its sessions (1001).
  const closed = await Promise.race([session.closed, new Promise<null>((r) => setTimeout(() => r(null), 10_000).unref())]);
  assert.equal(closed?.code, 1001, `the gateway did not stop after SIGTERM to npx:\n${out}`);
  const freed = await new Promise<boolean>((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    s.once('connect', () => (s.destroy(), resolve(false)));
    s.once('error', () => resolve(true));
  });
  assert.ok(freed, `port ${port} still held`);
  assert.doesNotMatch(out, /ExperimentalWarning|EBADENGINE/);

  // Under Node 20: a clear refusal, not a crash deep in a dependency.
  const old = '/usr/bin/node';
  const oldVersion = existsSync(old) ? spawnSync(old, ['--version'], { encoding: 'utf8' }).stdout.trim() : '';
  if (/^v(1\d|2[0-3])\./.test(oldVersion)) {
    const r = await run(old, [join(app, 'node_modules/wsbridge/bin/wsbridge.js'), '--help'], app);
    assert.equal(r.code, 1);
    assert.match(r.err, new RegExp(`wsbridge needs Node\\.js 24 or newer; this is Node ${oldVersion.replace(/\./g, '\\.')}`));
    assert.doesNotMatch(r.err, /is not a constructor/);
  } else {
    t.diagnostic(`no Node older than 24 at ${old} (${oldVersion || 'absent'}): the old-Node refusal is not exercised`);
  }
  assert.ok(statSync(tarball).size < 3_000_000, 'the tarball stays small');
});
