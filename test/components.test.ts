// Real WebAssembly components, built from source by the project's own build, running in the
// gateway: echo, chat fan-out, forwarder → echo, pool concurrency, queue groups, trap isolation,
// missing-import refusal, the transpile cache, and a QuickJS-built component treated the same.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildComponent, ROOT as BUILD_ROOT } from '../scripts/build-components.ts';
import { startGateway, TestClient, spawnCli, unb64, ROOT } from './helpers.ts';
import { loadComponent, ComponentLoadError } from '../src/components/loader.ts';
import { ok } from '../src/gateway/messaging.ts';
import type { BrokerMessage } from '../src/gateway/messaging.ts';

const CACHE = join(ROOT, 'build/cache');
const example = async (name: string) => (await buildComponent(join(BUILD_ROOT, 'examples/components', name))).path;
const fixture = async (name: string) => (await buildComponent(join(BUILD_ROOT, 'test/fixtures/components', name), { outDir: join(ROOT, 'build/test-components') })).path;

const [echo, chat, forwarder, faulty] = await Promise.all([example('echo'), example('chat'), example('forwarder'), fixture('faulty')]);

const gw = await startGateway({ COMPONENT_CACHE_DIR: CACHE });
after(() => gw.shutdown());
const component = (id: string, path: string, subscriptions: Array<string | { subject: string; queue?: string }>, extra: Partial<{ poolSize: number; timeoutMs: number }> = {}) =>
  gw.addComponent({ id, path, subscriptions: subscriptions.map((s) => (typeof s === 'string' ? { subject: s, queue: undefined } : s)), poolSize: extra.poolSize ?? 2, timeoutMs: extra.timeoutMs ?? 10_000, maxQueue: 1000, env: {}, preopens: {} });

test('WS client → echo component → reply reaches that session only', async () => {
  await component('echo', echo, ['echo.>']);
  const a = await TestClient.connect(gw);
  const b = await TestClient.connect(gw);
  const res = await a.call({ op: 'req', id: '1', subject: 'echo.hello', text: 'hi component' });
  assert.equal(res.op, 'res');
  assert.equal(unb64(res.body), 'hi component');
  // A plain publish gets the reply on the sender's reply subject, and only there.
  a.send({ subject: 'echo.again', text: 'again' });
  const m = await a.next((f) => f.subject === a.welcome.reply_to);
  assert.equal(unb64(m.body), 'again');
  await b.call({ op: 'ping', id: 'sync' });
  assert.equal(b.frames.length, 0);
  a.close();
  b.close();
});

test('chat component fans room messages out to every member session', async () => {
  await component('chat', chat, ['chat.>'], { poolSize: 1 });
  const members = await Promise.all([1, 2, 3].map(() => TestClient.connect(gw)));
  for (const m of members) await m.call({ op: 'sub', subject: 'room.lobby', id: 's' });
  for (const m of members) {
    const r = await m.call({ op: 'req', id: 'join', subject: 'chat.lobby.join', text: '' });
    assert.equal(r.op, 'res');
  }
  members[0]!.send({ subject: 'chat.lobby.send', text: 'hello room' });
  for (const m of members) {
    const ev = JSON.parse(unb64((await m.next((f) => f.subject === 'room.lobby' && unb64(f.body).includes('"message"'))).body)) as { text: string; members: number };
    assert.deepEqual(ev, { event: 'message', text: 'hello room', members: 3 });
  }
  for (const m of members) m.close();
});

test('forwarder → echo: request/response through two components', async () => {
  await component('forwarder', forwarder, ['fwd.>']);
  const c = await TestClient.connect(gw);
  const res = await c.call({ op: 'req', id: 'f', subject: 'fwd.echo.x', text: 'via two components' });
  assert.equal(unb64(res.body), 'via two components');
  const none = await c.call({ op: 'req', id: 'n', subject: 'fwd.nobody.home', text: 'x' });
  assert.match(unb64(none.body), /^error: no_responders/);
  c.close();
  await gw.deleteLink('forwarder'); // its `fwd.>` would also take the pool test's subjects
});

test('pool: N instances serve N suspended calls at once; one instance serves them one by one', async () => {
  for (const [poolSize, subject] of [[4, 'slowfwd4'], [1, 'slowfwd1']] as const) {
    await component(`forwarder-${poolSize}`, forwarder, [`fwd.${subject}.>`], { poolSize });
    // A responder that holds every request until the test releases it: concurrency is what it
    // sees in flight, measured by events rather than time.
    const held: BrokerMessage[] = [];
    let maxInFlight = 0;
    let arrived: () => void = () => {};
    gw.linkSource(`slow-${poolSize}`, {
      handleMessage(m) {
        held.push(m);
        maxInFlight = Math.max(maxInFlight, held.length);
        arrived();
        if (poolSize === 1) release();
        return ok(undefined);
      },
    }, [`${subject}.>`]);
    const release = () => {
      for (const m of held.splice(0)) gw.publish({ subject: m.replyTo!, body: m.body, replyTo: null });
    };
    const c = await TestClient.connect(gw);
    const answers = Promise.all([0, 1, 2, 3].map((i) => c.call({ op: 'req', id: `${poolSize}-${i}`, subject: `fwd.${subject}.${i}`, text: String(i) })));
    if (poolSize === 4) {
      while (held.length < 4) await new Promise<void>((r) => (arrived = r));
      release();
    }
    const results = await answers;
    assert.deepEqual(results.map((r) => unb64(r.body)), ['0', '1', '2', '3']);
    assert.equal(maxInFlight, poolSize, `pool ${poolSize}: requests in flight at once`);
    c.close();
  }
});

test('queue group: two echo components share the work, each message answered exactly once', async () => {
  await component('echo-a', echo, [{ subject: 'qecho.>', queue: 'echoers' }]);
  await component('echo-b', echo, [{ subject: 'qecho.>', queue: 'echoers' }]);
  const c = await TestClient.connect(gw);
  for (let i = 0; i < 40; i++) c.send({ subject: `qecho.${i}`, text: String(i) });
  await c.call({ op: 'ping', id: 'sync' });
  const seen: string[] = [];
  while (seen.length < 40) seen.push(unb64((await c.next((f) => f.subject === c.welcome.reply_to)).body));
  assert.deepEqual(seen.map(Number).sort((x, y) => x - y), Array.from({ length: 40 }, (_, i) => i));
  await c.call({ op: 'ping', id: 'sync2' });
  assert.equal(c.frames.filter((f) => f.subject === c.welcome.reply_to).length, 0, 'no duplicates');
  const a = gw.wasm.get('echo-a')!.pool.stats.calls;
  const b = gw.wasm.get('echo-b')!.pool.stats.calls;
  assert.equal(a + b, 40);
  assert.ok(a > 0 && b > 0, `both members served (${a}/${b})`);
  c.close();
});

test('a trap replaces the instance; a thrown error keeps it; the gateway and other sessions carry on', async () => {
  const running = await component('faulty', faulty, ['faulty.*'], { poolSize: 1 });
  await component('echo-beside-faulty', echo, ['still.>']); // its own, so this test stands alone
  const c = await TestClient.connect(gw);
  const other = await TestClient.connect(gw);
  const okReply = async (id: string) => unb64((await c.call({ op: 'req', id, subject: 'faulty.ok', text: '' })).body);
  assert.equal(await okReply('1'), 'ok 1');
  const errorsBefore = gw.stats.handlerErrors;
  c.send({ subject: 'faulty.throw', text: '' });
  assert.equal(await okReply('2'), 'ok 3', 'same instance after a guest error (its call count went on)');
  c.send({ subject: 'faulty.trap', text: '' });
  assert.equal(await okReply('3'), 'ok 1', 'a fresh instance after the trap');
  assert.equal(running.pool.stats.traps, 1);
  assert.equal(running.pool.stats.errors, 1);
  assert.equal(gw.stats.handlerErrors - errorsBefore, 2);
  assert.equal((await other.call({ op: 'req', id: 'e', subject: 'still.echo', text: 'fine' })).op, 'res');
  c.close();
  other.close();
});

test('a component importing an interface wsbridge does not provide is refused, naming it', async () => {
  const path = await fixture('unknown-import');
  await assert.rejects(loadComponent(path, CACHE), (e: Error) => e instanceof ComponentLoadError && /wsbridge:unknown\/ledger/.test(e.message));
  await assert.rejects(loadComponent(join(ROOT, 'package.json'), CACHE), /not a valid WebAssembly component/);
  await assert.rejects(loadComponent(join(ROOT, 'missing.wasm'), CACHE), /cannot read it \(ENOENT\)/);
});

test('transpiled output is cached by content hash', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'wsbridge-cache-'));
  const first = await loadComponent(echo, dir);
  assert.equal(first.cached, false);
  assert.deepEqual(readdirSync(dir), [first.hash]);
  const second = await loadComponent(echo, dir);
  assert.equal(second.cached, true);
  assert.equal(second.hash, first.hash);
});

test('a component built by another engine (QuickJS) runs the same way', async () => {
  const qjs = (await buildComponent(join(BUILD_ROOT, 'examples/components/echo'), { engine: 'quickjs' })).path;
  await component('echo-qjs', qjs, ['qjs.>']);
  const c = await TestClient.connect(gw);
  assert.equal(unb64((await c.call({ op: 'req', id: 'q', subject: 'qjs.x', text: 'quick' })).body), 'quick');
  c.close();
});

test('CLI: serve --component … --subscribe …, and a missing import exits 2 naming it', async () => {
  const { proc, match, exit } = await spawnCli(['serve', '--listen', '127.0.0.1:0', '--component', echo, '--subscribe', 'echo.>', '--pool-size', '2'], { COMPONENT_CACHE_DIR: CACHE });
  const c = await TestClient.connect(match![1]!);
  assert.equal(unb64((await c.call({ op: 'req', id: 'cli', subject: 'echo.cli', text: 'from cli' })).body), 'from cli');
  c.close();
  proc.kill('SIGTERM');
  assert.equal((await exit).code, 0);
  const bad = await spawnCli(['serve', '--listen', '127.0.0.1:0', '--component', await fixture('unknown-import'), '--subscribe', 'x'], { COMPONENT_CACHE_DIR: CACHE }, null);
  assert.equal((await bad.exit).code, 2);
  assert.match(bad.output(), /wsbridge:unknown\/ledger/);
});

test('WASI imports are served sandboxed: clocks and randomness work, no env, no filesystem', async () => {
  const path = await fixture('wasi');
  const loaded = await loadComponent(path, CACHE);
  assert.ok(loaded.imports.some((i) => i.startsWith('wasi:filesystem/preopens@0.2.')) && loaded.imports.some((i) => i.startsWith('wasi:clocks/wall-clock@0.2.')), 'the fixture really imports WASI');
  await component('wasi', path, ['wasi.>']);
  const c = await TestClient.connect(gw);
  const report = JSON.parse(unb64((await c.call({ op: 'req', id: 'w', subject: 'wasi.check', text: '' })).body)) as Record<string, boolean>;
  assert.deepEqual(report, { clock: true, random: true });
  c.close();
  // What the sandbox hands a component: nothing of the gateway's env, no directories, and an
  // exit that traps instead of ending the gateway.
  const { wasiImports, WasiExit } = await import('../src/components/wasi.ts');
  const sandbox = wasiImports({ env: {}, preopens: {} }) as Record<string, Record<string, (...a: unknown[]) => unknown>>;
  assert.deepEqual(sandbox['wasi:cli/environment']!.getEnvironment!(), []);
  assert.deepEqual(sandbox['wasi:filesystem/preopens']!.getDirectories!(), []);
  assert.throws(() => sandbox['wasi:cli/exit']!.exit!({ tag: 'ok' }), WasiExit);
  const granted = wasiImports({ env: { REGION: 'eu' }, preopens: { '/data': tmpdir() } }) as typeof sandbox;
  assert.deepEqual(granted['wasi:cli/environment']!.getEnvironment!(), [['REGION', 'eu']]);
  assert.equal((granted['wasi:filesystem/preopens']!.getDirectories!() as unknown[]).length, 1);
});

test('client mode: a component answers messages from a remote server over the link', async () => {
  const { WebSocketServer } = await import('ws');
  const remote = new WebSocketServer({ port: 0, host: '127.0.0.1' });
  await new Promise((r) => remote.once('listening', r));
  const url = `ws://127.0.0.1:${(remote.address() as { port: number }).port}/`;
  const conn = new Promise<import('ws').WebSocket>((resolve) => remote.once('connection', resolve));
  const { proc, exit } = await spawnCli(['connect', url, '--component', echo, '--subscribe', 'echo.>'], { COMPONENT_CACHE_DIR: CACHE }, /connected to/);
  const ws = await conn;
  const answer = new Promise<string>((resolve) => ws.once('message', (d) => resolve(d.toString())));
  ws.send(JSON.stringify({ subject: 'echo.remote', text: 'over the link', reply_to: 'remote.inbox' }));
  const env = JSON.parse(await answer) as { subject: string; body: string };
  assert.equal(env.subject, 'remote.inbox');
  assert.equal(unb64(env.body), 'over the link');
  proc.kill('SIGTERM');
  assert.equal((await exit).code, 0);
  remote.close();
});

test('per-call deadline: a call stuck awaiting the host fails, its instance is replaced, the next call is served', async () => {
  const running = await gw.addComponent({ id: 'fwd-deadline', path: forwarder, subscriptions: [{ subject: 'fwd.stuck.>', queue: undefined }, { subject: 'fwd.echo.deadline', queue: undefined }], poolSize: 1, timeoutMs: 200, maxQueue: 10, env: {}, preopens: {} });
  gw.linkSource('black-hole', { handleMessage: () => ok(undefined) }, ['stuck.>']); // never answers
  const before = gw.stats.handlerErrors;
  gw.publish({ subject: 'fwd.stuck.1', body: new Uint8Array(), replyTo: null });
  const c = await TestClient.connect(gw);
  // Queued behind the stuck call; served by a fresh instance once the deadline retires it.
  const res = await c.call({ op: 'req', id: 'd', subject: 'fwd.echo.deadline', text: 'after the deadline' });
  assert.equal(unb64(res.body), 'after the deadline');
  assert.equal(running.pool.stats.timeouts, 1);
  assert.equal(running.pool.stats.instancesCreated, 2);
  assert.equal(gw.stats.handlerErrors - before, 1);
  c.close();
});
