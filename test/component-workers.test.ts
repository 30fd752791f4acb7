// Components off the gateway's thread: a spinning guest is terminated at its deadline without
// stalling other sessions or SIGTERM; a guest awaits real timers (its event loop suspends through
// wasi:io/poll); clocks and randomness are real; a failed handler answers `handler_failed`; the
// contracts are bound by exact version; startup failures exit 2 and a damaged cache is rebuilt.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildComponent, ROOT as BUILD_ROOT } from '../scripts/build-components.ts';
import { startGateway, TestClient, spawnCli, unb64, ROOT } from './helpers.ts';
import { loadComponent, ComponentLoadError } from '../src/components/loader.ts';

const CACHE = join(ROOT, 'build/cache');
const fixture = async (name: string) => (await buildComponent(join(BUILD_ROOT, 'test/fixtures/components', name), { outDir: join(ROOT, 'build/test-components') })).path;
const example = async (name: string) => (await buildComponent(join(BUILD_ROOT, 'examples/components', name))).path;
const [sleeper, faulty, echo] = await Promise.all([fixture('sleeper'), fixture('faulty'), example('echo')]);

const gw = await startGateway({ COMPONENT_CACHE_DIR: CACHE });
after(() => gw.shutdown());
const add = (id: string, path: string, subject: string, extra: Partial<{ poolSize: number; timeoutMs: number; maxQueue: number }> = {}) =>
  gw.addComponent({ id, path, subscriptions: [{ subject, queue: undefined }], poolSize: extra.poolSize ?? 1, timeoutMs: extra.timeoutMs ?? 10_000, maxQueue: extra.maxQueue ?? 100, env: {}, preopens: {} });
await add('echo', echo, 'echo.>');
const json = (f: Record<string, unknown>) => JSON.parse(unb64(f.body)) as Record<string, any>;

test('a guest spinning forever: other sessions are served meanwhile; at the deadline its worker is terminated, the requester gets handler_failed, a fresh instance serves', async () => {
  const running = await add('spinner', sleeper, 'spin.>', { timeoutMs: 500 });
  const c = await TestClient.connect(gw);
  const other = await TestClient.connect(gw);
  const spun = c.call({ op: 'req', id: 'spin', subject: 'spin.spin', text: JSON.stringify({ ms: 0 }), timeout_ms: 30_000 });
  // While the guest spins: another session's request through another component is answered, and
  // the spinning call is still running (not timed out yet).
  for (let i = 0; i < 5; i++) {
    const r = await other.call({ op: 'req', id: `e${i}`, subject: 'echo.during', text: `during ${i}` });
    assert.equal(unb64(r.body), `during ${i}`);
  }
  const startedBefore = running.pool.stats.timeouts;
  const t0 = performance.now();
  const res = await spun;
  assert.equal(res.op, 'error');
  assert.equal(res.code, 'handler_failed');
  assert.doesNotMatch(String(res.message), /deadline|trap|ms/, 'the reason stays in the log');
  assert.ok(performance.now() - t0 < 10_000, 'answered at the deadline, not at the request timeout');
  assert.equal(running.pool.stats.timeouts - startedBefore, 1);
  const clock = await c.call({ op: 'req', id: 'after', subject: 'spin.clock', text: '' });
  assert.equal(clock.op, 'res', 'a fresh instance took over');
  assert.equal(running.pool.stats.instancesCreated, 2);
  c.close();
  other.close();
  await gw.deleteLink('spinner');
});

test('a guest awaits setTimeout(100): its event loop suspends in wasi:io/poll, the gateway keeps running', async () => {
  await add('sleeper', sleeper, 'sleep.>', { poolSize: 2 });
  const c = await TestClient.connect(gw);
  let ticks = 0;
  const ticker = setInterval(() => ticks++, 10);
  try {
    const r = json(await c.call({ op: 'req', id: 's', subject: 'sleep.sleep', text: JSON.stringify({ ms: 300 }) }));
    assert.equal(r.slept, 300);
    assert.ok(r.elapsed >= 295 && r.elapsed < 3000, `the guest's own clock saw the wait: ${r.elapsed} ms`);
    assert.ok(ticks >= 5, `the gateway's event loop ran meanwhile (${ticks} ticks)`);
    // Two sleeping instances wait at the same time, each in its own worker.
    const t0 = performance.now();
    const both = await Promise.all([0, 1].map((i) => c.call({ op: 'req', id: `p${i}`, subject: 'sleep.sleep', text: JSON.stringify({ ms: 400 }) })));
    assert.deepEqual(both.map((f) => json(f).slept), [400, 400]);
    assert.ok(performance.now() - t0 < 790, 'the two waits overlapped');
  } finally {
    clearInterval(ticker);
    c.close();
  }
});

test('clocks and randomness are real: Date.now() is now, Math.random() differs between instances', async () => {
  const c = await TestClient.connect(gw);
  const before = Date.now();
  // Two calls at once go to the two instances of the sleeper pool.
  const [a, b] = (await Promise.all([0, 1].map((i) => c.call({ op: 'req', id: `c${i}`, subject: 'sleep.clock', text: '' })))).map(json);
  assert.ok(Math.abs(a!.now - before) < 5000 && Math.abs(b!.now - before) < 5000, `guest clock ${a!.now} vs host ${before}`);
  assert.notEqual(a!.random, b!.random, 'each instance has its own random sequence');
  c.close();
});

test('a failed handler answers handler_failed at once: guest error, trap, overload', async () => {
  await add('faulty', faulty, 'faulty.*');
  const c = await TestClient.connect(gw);
  for (const subject of ['faulty.throw', 'faulty.trap']) {
    const t0 = performance.now();
    const r = await c.call({ op: 'req', id: subject, subject, text: '', timeout_ms: 20_000 });
    assert.equal(r.op, 'error', subject);
    assert.equal(r.code, 'handler_failed');
    assert.doesNotMatch(String(r.message), /on purpose/, 'the guest text is not shown to clients');
    assert.ok(performance.now() - t0 < 5000, 'not a timeout');
  }
  // Overloaded: a pool of one, a queue of one, a guest sleeping: the third message is refused.
  await add('busy', sleeper, 'busy.>', { maxQueue: 1 });
  const calls = [0, 1, 2, 3].map((i) => c.call({ op: 'req', id: `b${i}`, subject: 'busy.sleep', text: JSON.stringify({ ms: 300 }), timeout_ms: 20_000 }));
  const results = await Promise.all(calls);
  const refused = results.filter((r) => r.op === 'error');
  assert.ok(refused.length >= 1, 'some were refused');
  for (const r of refused) assert.equal(r.code, 'handler_failed');
  c.close();
});

test('SIGTERM ends a CLI whose component spins forever', async () => {
  const { proc, match, exit } = await spawnCli(['serve', '--listen', '127.0.0.1:0', '--component', sleeper, '--subscribe', 'spin.>', '--pool-size', '1'], { COMPONENT_CACHE_DIR: CACHE });
  const c = await TestClient.connect(match![1]!);
  c.send({ subject: 'spin.spin', text: JSON.stringify({ ms: 0 }) });
  // The gateway still answers while the guest spins.
  assert.equal((await c.call({ op: 'ping', id: 'p' })).op, 'pong');
  proc.kill('SIGTERM');
  const killer = setTimeout(() => proc.kill('SIGKILL'), 15_000);
  const { code, signal } = await exit;
  clearTimeout(killer);
  assert.equal(signal, null, 'ended by itself, not by SIGKILL');
  assert.equal(code, 0);
});

test('wasmcloud:messaging@0.3.0 is refused at load, naming the version and what fails; CLI exits 2', async () => {
  const { componentEmbed, componentNew } = await import('@bytecodealliance/jco');
  // A real 0.3.0 component (dummy core implementation) made with jco's wasm-tools from the WIT.
  const strip = (f: string) => readFileSync(join(ROOT, 'wit/wasmcloud-messaging-0.3.0', f), 'utf8').replace(/^package [^;]+;/m, '');
  const witSource = `package wsbridge:echo3;\nworld echo3 {\n  import wasmcloud:messaging/consumer@0.3.0;\n  export wasmcloud:messaging/handler@0.3.0;\n}\npackage wasmcloud:messaging@0.3.0 {\n${['types.wit', 'consumer.wit', 'handler.wit'].map(strip).join('\n')}\n}\n`;
  const core = await componentEmbed({ witSource, dummy: true, world: 'echo3' });
  const dir = mkdtempSync(join(tmpdir(), 'wsbridge-v3-'));
  const path = join(dir, 'echo3.wasm');
  writeFileSync(path, await componentNew(core, undefined));
  await assert.rejects(loadComponent(path, CACHE), (e: Error) => e instanceof ComponentLoadError && /wasmcloud:messaging@0\.3\.0/.test(e.message) && /stream<u8>/.test(e.message));
  const cli = await spawnCli(['serve', '--listen', '127.0.0.1:0', '--component', path, '--subscribe', 'x'], { COMPONENT_CACHE_DIR: CACHE }, null);
  assert.equal((await cli.exit).code, 2);
  assert.match(cli.output(), /wasmcloud:messaging@0\.3\.0/);
});

test('a damaged cache entry is rebuilt: bad JSON, truncated core module', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'wsbridge-cache-'));
  const first = await loadComponent(echo, dir);
  const entry = join(dir, first.hash);
  writeFileSync(join(entry, 'wsbridge.json'), '{not json');
  const second = await loadComponent(echo, dir);
  assert.equal(second.cached, false, 'rebuilt');
  const core = readdirSync(entry).find((f) => f.endsWith('.wasm'))!;
  writeFileSync(join(entry, core), readFileSync(join(entry, core)).subarray(0, 100));
  const third = await loadComponent(echo, dir);
  assert.equal(third.cached, false, 'rebuilt after the truncated module failed to compile');
  const fourth = await loadComponent(echo, dir);
  assert.equal(fourth.cached, true);
});

test('a component that traps while instantiating: the CLI exits 2 with a clear message', async () => {
  const { componentEmbed, componentNew, print, parse } = await import('@bytecodealliance/jco');
  const witSource = `package wsbridge:trapper;\nworld trapper {\n  export wasmcloud:messaging/handler@0.2.0;\n}\n${readFileSync(join(ROOT, 'wit/wasmcloud-messaging-0.2.0.wit'), 'utf8').replace(/^package ([^;]+);/m, 'package $1 {')}\n}\n`;
  const dummy = await componentEmbed({ witSource, dummy: true, world: 'trapper' });
  // The same core module with a start function that traps: instantiation fails.
  const wat = (await print(dummy)).replace(/\)\s*$/, '  (func $wsbridge_trap unreachable)\n  (start $wsbridge_trap)\n)');
  const core = await componentEmbed({ binary: await parse(wat), witSource, world: 'trapper' });
  const dir = mkdtempSync(join(tmpdir(), 'wsbridge-trapper-'));
  const path = join(dir, 'trapper.wasm');
  writeFileSync(path, await componentNew(core, undefined));
  const cli = await spawnCli(['serve', '--listen', '127.0.0.1:0', '--component', path, '--subscribe', 'x'], { COMPONENT_CACHE_DIR: CACHE }, null);
  assert.equal((await cli.exit).code, 2);
  assert.match(cli.output(), /cannot start an instance/);
  assert.doesNotMatch(cli.output(), /LISTEN/);
});

test('stdin of a component is empty, never the gateway\'s', async () => {
  const { wasiImports } = await import('../src/components/wasi.ts');
  const stdin = (wasiImports({ env: {}, preopens: {} })['wasi:cli/stdin'] as { getStdin(): { read(n: bigint): unknown; blockingRead(n: bigint): unknown } }).getStdin();
  assert.throws(() => stdin.read(10n), (e: any) => e.tag === 'closed');
  assert.throws(() => stdin.blockingRead(10n), (e: any) => e.tag === 'closed');
});

test('over NATS: a requester on another node gets handler_failed (Wsb-Error header), and publish waits for the ack', async () => {
  const { startNats } = await import('./nats-helpers.ts');
  const nats = await startNats();
  const a = await startGateway({ NATS_URL: nats.url, COMPONENT_CACHE_DIR: CACHE });
  const b = await startGateway({ NATS_URL: nats.url, COMPONENT_CACHE_DIR: CACHE });
  try {
    await b.addComponent({ id: 'faulty', path: faulty, subscriptions: [{ subject: 'faulty.*', queue: undefined }], poolSize: 1, timeoutMs: 10_000, maxQueue: 10, env: {}, preopens: {} });
    const c = await TestClient.connect(a);
    // faulty.ok answers through consumer.publish, which with NATS suspends until NATS has it.
    const okReply = await c.call({ op: 'req', id: 'ok', subject: 'faulty.ok', text: '', timeout_ms: 10_000 });
    assert.equal(okReply.op, 'res');
    const t0 = performance.now();
    const r = await c.call({ op: 'req', id: 'x', subject: 'faulty.throw', text: '', timeout_ms: 20_000 });
    assert.equal(r.op, 'error');
    assert.equal(r.code, 'handler_failed');
    assert.ok(performance.now() - t0 < 5000);
    c.close();
  } finally {
    await a.shutdown();
    await b.shutdown();
    await nats.stop();
  }
});

test('contracts are bound by exact version: wasmcloud:messaging@0.2.1 is refused, naming it', async () => {
  const { componentEmbed, componentNew } = await import('@bytecodealliance/jco');
  const v021 = readFileSync(join(ROOT, 'wit/wasmcloud-messaging-0.2.0.wit'), 'utf8').replace(/^package ([^;]+)@0\.2\.0;/m, 'package $1@0.2.1 {');
  const witSource = `package wsbridge:other;\nworld other {\n  import wasmcloud:messaging/consumer@0.2.1;\n  export wasmcloud:messaging/handler@0.2.1;\n}\n${v021}\n}\n`;
  const dir = mkdtempSync(join(tmpdir(), 'wsbridge-v021-'));
  const path = join(dir, 'other.wasm');
  writeFileSync(path, await componentNew(await componentEmbed({ witSource, dummy: true, world: 'other' }), undefined));
  await assert.rejects(loadComponent(path, CACHE), (e: Error) => e instanceof ComponentLoadError && /wasmcloud:messaging\/consumer@0\.2\.1/.test(e.message));
});
