// Components open WebSockets of their own through wasmcloud:websocket/client and
// golem:websocket/client, against ws servers started here: every config field and method,
// observed from the server side.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { join } from 'node:path';
import { WebSocketServer } from 'ws';
import type WebSocket from 'ws';
import type { IncomingMessage } from 'node:http';
import { buildComponent, ROOT } from '../scripts/build-components.ts';
import { startGateway, once } from './helpers.ts';
import type { Gateway } from '../src/gateway/gateway.ts';

const CACHE = join(ROOT, 'build/cache');
const [wsProbe, golemProbe] = await Promise.all(['ws-probe', 'golem-probe'].map(async (n) => (await buildComponent(join(ROOT, 'examples/components', n))).path));

async function gatewayWith(settings: Record<string, string> = {}): Promise<Gateway> {
  const gw = await startGateway({ COMPONENT_CACHE_DIR: CACHE, ADMIN_TOKEN: 'stats', ...settings });
  for (const [id, path, subject] of [['ws-probe', wsProbe, 'wsprobe.>'], ['golem-probe', golemProbe, 'golemprobe.>']] as const) {
    await gw.addComponent({ id, path: path!, subscriptions: [{ subject, queue: undefined }], poolSize: 1, timeoutMs: 20_000, maxQueue: 100, env: {}, preopens: {} });
  }
  return gw;
}

const gw = await gatewayWith();
after(() => gw.shutdown());

async function step(g: Gateway, subject: string, args: unknown = {}): Promise<Record<string, any>> {
  const r = await g.request(subject, Buffer.from(JSON.stringify(args)), 20_000);
  if (r.tag === 'err') throw new Error(r.val);
  return JSON.parse(Buffer.from(r.val.body).toString()) as Record<string, any>;
}

interface Server {
  wss: WebSocketServer;
  url: string;
  conn: Promise<{ ws: WebSocket; req: IncomingMessage }>;
}
async function server(opts: ConstructorParameters<typeof WebSocketServer>[0] = {}): Promise<Server> {
  const wss = new WebSocketServer({ port: 0, host: '127.0.0.1', ...opts });
  await once(wss, 'listening');
  const conn = new Promise<{ ws: WebSocket; req: IncomingMessage }>((resolve) => wss.once('connection', (ws, req) => resolve({ ws, req })));
  return { wss, url: `ws://127.0.0.1:${(wss.address() as net.AddressInfo).port}/feed`, conn };
}

/** The component's non-blocking receive, asked again until something has arrived (bounded). */
async function receiveSome(g: Gateway): Promise<Record<string, any>> {
  for (let i = 0; i < 200; i++) {
    const r = await step(g, 'wsprobe.receive');
    if (r.message !== null || r.error) return r;
    await new Promise((res) => setImmediate(res));
  }
  throw new Error('nothing received');
}

test('wasmcloud: headers and subprotocols reach the server; the chosen one is reported', async () => {
  const s = await server({ handleProtocols: (p) => (p.has('chat.v2') ? 'chat.v2' : false) });
  const r = await step(gw, 'wsprobe.connect', { url: s.url, subprotocols: ['chat.v1', 'chat.v2'], headers: [{ name: 'X-Probe', value: 'yes' }, { name: 'Authorization', value: 'Bearer t0k' }] });
  assert.deepEqual(r, { state: 'open', url: s.url, subprotocol: 'chat.v2' });
  const { req } = await s.conn;
  assert.equal(req.headers['x-probe'], 'yes');
  assert.equal(req.headers.authorization, 'Bearer t0k');
  assert.equal(req.headers['sec-websocket-protocol'], 'chat.v1,chat.v2');
  await step(gw, 'wsprobe.close', {});
  s.wss.close();
});

test('wasmcloud: send every message kind; receive is non-blocking (none, then some)', async () => {
  const s = await server();
  await step(gw, 'wsprobe.connect', { url: s.url });
  const { ws } = await s.conn;
  assert.deepEqual(await step(gw, 'wsprobe.receive'), { message: null, state: 'open' });
  const got = new Promise<string[]>((resolve) => {
    const seen: string[] = [];
    ws.on('message', (d, bin) => { seen.push(bin ? `bin:${[...(d as Buffer)]}` : `text:${d}`); if (seen.length === 2) resolve(seen); });
  });
  const pinged = new Promise<Buffer>((resolve) => ws.once('ping', resolve));
  await step(gw, 'wsprobe.send', { text: 'hello server' });
  await step(gw, 'wsprobe.send', { binary: [1, 2, 3] });
  await step(gw, 'wsprobe.send', { ping: [9] });
  assert.deepEqual(await got, ['text:hello server', 'bin:1,2,3']);
  assert.deepEqual([...(await pinged)], [9]);
  // The pong the server sent back to that ping is a message too.
  assert.deepEqual((await receiveSome(gw)).message, { pong: [9] });
  ws.send('hello component');
  assert.deepEqual((await receiveSome(gw)).message, { text: 'hello component' });
  await step(gw, 'wsprobe.close', {});
  s.wss.close();
});

test('wasmcloud: close(code, reason) sends a real Close frame; state goes closing → closed', async () => {
  const s = await server();
  await step(gw, 'wsprobe.connect', { url: s.url });
  const { ws } = await s.conn;
  const closed = new Promise<[number, string]>((resolve) => ws.once('close', (c, r) => resolve([c, r.toString()])));
  assert.deepEqual(await step(gw, 'wsprobe.close', { code: 4001, reason: 'probe done' }), { state: 'closing' });
  assert.deepEqual(await closed, [4001, 'probe done']);
  const after1 = await receiveSome(gw); // the server's answering close frame, then closed
  assert.deepEqual(after1.message, { close: { code: 4001, reason: 'probe done' } });
  assert.equal((await step(gw, 'wsprobe.state')).state, 'closed');
  assert.deepEqual((await step(gw, 'wsprobe.receive')).error, { tag: 'connection-closed', val: null });
  s.wss.close();
});

test('wasmcloud: a Close frame from the server arrives as message::close, then the state is closed', async () => {
  const s = await server();
  await step(gw, 'wsprobe.connect', { url: s.url });
  (await s.conn).ws.close(4002, 'server bye');
  const r = await receiveSome(gw);
  assert.deepEqual(r.message, { close: { code: 4002, reason: 'server bye' } });
  assert.equal(r.state, 'closed');
  s.wss.close();
});

test('wasmcloud: timeout-ms against a listener that never answers the upgrade → timeout', async () => {
  const sockets: net.Socket[] = [];
  const silent = net.createServer((c) => sockets.push(c)).listen(0, '127.0.0.1');
  await once(silent, 'listening');
  const r = await step(gw, 'wsprobe.connect', { url: `ws://127.0.0.1:${(silent.address() as net.AddressInfo).port}/`, timeout_ms: 300 });
  assert.deepEqual(r.error, { tag: 'timeout', val: null });
  sockets.forEach((c) => c.destroy());
  silent.close();
});

test('wasmcloud: larger inbound than max-message-size → invalid-message, closed with 1009', async () => {
  const s = await server();
  await step(gw, 'wsprobe.connect', { url: s.url, max_message_size: 100 });
  const { ws } = await s.conn;
  const closed = new Promise<number>((resolve) => ws.once('close', (c) => resolve(c)));
  ws.send('x'.repeat(200));
  assert.equal(await closed, 1009);
  const r = await receiveSome(gw);
  assert.equal(r.error.tag, 'invalid-message');
  s.wss.close();
});

test('wasmcloud: keepalive detects a silent peer → connection-closed', async () => {
  const s = await server({ autoPong: false });
  await step(gw, 'wsprobe.connect', { url: s.url, keepalive_ms: 100 });
  const { ws } = await s.conn;
  await new Promise((resolve) => ws.once('close', resolve)); // the probe gave up on it
  const r = await receiveSome(gw);
  assert.deepEqual(r.error, { tag: 'connection-closed', val: null });
  s.wss.close();
});

test('wasmcloud: 401 at the handshake → authentication-failed; http:// → invalid-url', async () => {
  const s = await server({ verifyClient: (_i, cb) => cb(false, 401, 'Unauthorized') });
  assert.equal((await step(gw, 'wsprobe.connect', { url: s.url })).error.tag, 'authentication-failed');
  assert.equal((await step(gw, 'wsprobe.connect', { url: 'http://127.0.0.1/' })).error.tag, 'invalid-url');
  assert.equal((await step(gw, 'wsprobe.connect', { url: 'not a url' })).error.tag, 'invalid-url');
  s.wss.close();
});

test('allowlist: hosts outside loopback are refused unless OUTBOUND_ALLOW names them', async () => {
  const r = await step(gw, 'wsprobe.connect', { url: 'ws://192.0.2.1:9/' });
  assert.equal(r.error.tag, 'connection-failed');
  assert.match(r.error.val, /not in OUTBOUND_ALLOW/);
  const g = await step(gw, 'golemprobe.connect', { url: 'wss://example.invalid/' });
  assert.equal(g.error.tag, 'connection-failure');
  assert.match(g.error.val, /not in OUTBOUND_ALLOW/);
});

test('cap: OUTBOUND_MAX_CONNECTIONS per component; connections close when the component goes', async () => {
  const g2 = await gatewayWith({ OUTBOUND_MAX_CONNECTIONS: '1' });
  const s = await server();
  assert.equal((await step(g2, 'wsprobe.connect', { url: s.url })).state, 'open');
  const second = await step(g2, 'wsprobe.connect', { url: s.url });
  assert.equal(second.error.tag, 'connection-failed');
  assert.match(second.error.val, /connection limit reached: 1/);
  // Another component has its own budget.
  const { ws } = await s.conn;
  const stats = (await (await fetch(`http://127.0.0.1:${g2.server!.address.port}/api/stats`, { headers: { authorization: 'Bearer stats' } })).json()) as { outbound_websockets: { open: number; bytesOut: number } };
  assert.equal(stats.outbound_websockets.open, 1);
  const closed = new Promise<number>((resolve) => ws.once('close', (c) => resolve(c)));
  await g2.deleteLink('ws-probe');
  assert.equal(await closed, 1001);
  for (let i = 0; i < 1000 && g2.stats.outbound.open > 0; i++) await new Promise((r) => setImmediate(r));
  assert.equal(g2.stats.outbound.open, 0);
  await g2.shutdown();
  s.wss.close();
});

test('golem: connect, send, blocking receive, close — against an echo server', async () => {
  const s = await server();
  s.wss.on('connection', (ws) => ws.on('message', (d, bin) => ws.send(d, { binary: bin })));
  const r = await step(gw, 'golemprobe.roundtrip', { url: s.url, text: 'ping golem', headers: [['X-Golem', '1']] });
  assert.deepEqual(r, { received: { text: 'ping golem' } });
  assert.equal((await s.conn).req.headers['x-golem'], '1');
  s.wss.close();
});

test('golem: blocking receive waits for the server; receive-with-timeout both ways; close', async () => {
  const s = await server();
  await step(gw, 'golemprobe.connect', { url: s.url });
  const { ws } = await s.conn;
  // receive-with-timeout: nothing arrives → none.
  assert.deepEqual(await step(gw, 'golemprobe.receive-with-timeout', { ms: 50 }), { message: null });
  // Blocking receive: the instance is suspended until the server speaks.
  const pending = step(gw, 'golemprobe.receive');
  ws.send('late news');
  assert.deepEqual(await pending, { message: { text: 'late news' } });
  ws.send(Buffer.from([7, 7]), { binary: true });
  assert.deepEqual(await step(gw, 'golemprobe.receive-with-timeout', { ms: 5000 }), { message: { binary: [7, 7] } });
  // Close with code and reason, observed by the server; then operations report closed.
  const closed = new Promise<[number, string]>((resolve) => ws.once('close', (c, r) => resolve([c, r.toString()])));
  await step(gw, 'golemprobe.close', { code: 4100, reason: 'golem out' });
  assert.deepEqual(await closed, [4100, 'golem out']);
  const after1 = await step(gw, 'golemprobe.receive');
  assert.equal(after1.error.tag, 'closed');
  s.wss.close();
});

test('golem: subscribe() pollables and wasi:io/poll, driven through the host imports', async () => {
  // componentize-js gives JS guests no wasi:io/poll ready/poll (it keeps the interface for its
  // event loop), so this drives the same import objects a component from another toolchain gets.
  const { golemWebsocketImports } = await import('../src/components/outbound/golem-websocket.ts');
  const { HostPollable: Pollable, pollInterface } = await import('../src/components/event-loop.ts');
  const { ComponentSockets } = await import('../src/components/outbound/context.ts');
  const owned = new Set<{ destroy(): void }>();
  const sockets = new ComponentSockets({ allow: [], maxConnections: 2, receiveQueue: 10 }, { open: 0, opened: 0, bytesIn: 0, bytesOut: 0 }, { timeoutMs: 2000, maxMessageBytes: 1 << 20 });
  const imports = golemWebsocketImports(sockets.forInstance(owned)) as Record<string, any>;
  const { WebsocketConnection } = imports['golem:websocket/client@1.5.0'];
  const { poll } = pollInterface;
  const s = await server();
  const conn = await WebsocketConnection.connect(s.url, [['X-Poll', '1']]);
  const { ws } = await s.conn;
  const p = conn.subscribe();
  assert.ok(p instanceof Pollable);
  assert.equal(p.ready(), false);
  const polled = poll([p]);
  ws.send('wake up');
  assert.deepEqual([...(await polled)], [0]);
  assert.equal(p.ready(), true);
  assert.equal(conn.subscribe().ready(), true, 'readiness does not consume the message');
  assert.deepEqual(await conn.receiveWithTimeout(10n), { tag: 'text', val: 'wake up' });
  assert.equal(p.ready(), false);
  const blocked = p.block();
  ws.send('again');
  await blocked;
  assert.deepEqual(await conn.receive(), { tag: 'text', val: 'again' });
  // After the server closes: pollable ready, receive reports closed with the close info.
  ws.close(4200, 'bye');
  await p.block();
  await assert.rejects(conn.receive(), (e: any) => e.payload.tag === 'closed' && e.payload.val.code === 4200 && e.payload.val.reason === 'bye');
  for (const r of owned) r.destroy();
  s.wss.close();
});

test('golem: a JS guest waits on a subscribe() pollable (pollable.block suspends until a message arrives)', async () => {
  const s = await server();
  await step(gw, 'golemprobe.connect', { url: s.url });
  const { ws } = await s.conn;
  const waiting = step(gw, 'golemprobe.wait');
  ws.send('wake the pollable');
  assert.deepEqual(await waiting, { ready: true, message: { text: 'wake the pollable' } });
  await step(gw, 'golemprobe.close', {});
  s.wss.close();
});

test('invalid frames are errors, not traps: ping over 125 bytes, close code 1005, close reason over 123 bytes', async () => {
  const running = gw.wasm.get('ws-probe')!;
  const trapsBefore = running.pool.stats.traps;
  const s = await server();
  await step(gw, 'wsprobe.connect', { url: s.url });
  const { ws } = await s.conn;
  assert.equal((await step(gw, 'wsprobe.send', { ping: Array(126).fill(1) })).error.tag, 'invalid-message');
  assert.equal((await step(gw, 'wsprobe.send', { close: { code: 1005 } })).error.tag, 'protocol-error');
  assert.equal((await step(gw, 'wsprobe.send', { close: { code: 1000, reason: 'x'.repeat(124) } })).error.tag, 'protocol-error');
  assert.equal((await step(gw, 'wsprobe.close', { code: 1000, reason: 'é'.repeat(62) })).error.tag, 'protocol-error', '124 bytes in UTF-8');
  assert.equal(running.pool.stats.traps, trapsBefore, 'the instance never trapped');
  // The connection is still usable, and a valid close through send() works.
  const closed = new Promise<[number, string]>((resolve) => ws.once('close', (c, r) => resolve([c, r.toString()])));
  assert.equal((await step(gw, 'wsprobe.send', { close: { code: 4005, reason: 'via send' } })).state, 'closing');
  assert.deepEqual(await closed, [4005, 'via send']);
  s.wss.close();
});

test('golem: close(none, some(reason)) keeps the reason (sent with 1000)', async () => {
  const s = await server();
  await step(gw, 'golemprobe.connect', { url: s.url });
  const { ws } = await s.conn;
  const closed = new Promise<[number, string]>((resolve) => ws.once('close', (c, r) => resolve([c, r.toString()])));
  await step(gw, 'golemprobe.close', { reason: 'only a reason' });
  assert.deepEqual(await closed, [1000, 'only a reason']);
  s.wss.close();
});

test('dropping a connection handle (what jco calls on resource drop) closes the socket and frees its slot', async () => {
  const { wasmcloudWebsocketImports } = await import('../src/components/outbound/wasmcloud-websocket.ts');
  const { golemWebsocketImports } = await import('../src/components/outbound/golem-websocket.ts');
  const { ComponentSockets } = await import('../src/components/outbound/context.ts');
  const stats = { open: 0, opened: 0, bytesIn: 0, bytesOut: 0 };
  const sockets = new ComponentSockets({ allow: [], maxConnections: 1, receiveQueue: 10 }, stats, { timeoutMs: 2000, maxMessageBytes: 1 << 20 });
  const wc = (wasmcloudWebsocketImports(sockets.forInstance(new Set())) as Record<string, any>)['wasmcloud:websocket/client'];
  const golem = (golemWebsocketImports(sockets.forInstance(new Set())) as Record<string, any>)['golem:websocket/client'];
  const s = await server();
  try {
    // With a cap of 1, each connect below succeeds only if the previous dropped handle gave its slot back.
    for (const open of [(url: string) => wc.connect({ url }), (url: string) => golem.WebsocketConnection.connect(url), (url: string) => wc.connect({ url })]) {
      const conn = new Promise<WebSocket>((resolve) => s.wss.once('connection', (ws) => resolve(ws)));
      const c = await open(s.url);
      const ws = await conn;
      const closed = new Promise<number>((resolve) => ws.once('close', (code) => resolve(code)));
      c[Symbol.dispose]();
      assert.equal(await closed, 1001);
      for (let i = 0; i < 1000 && stats.open > 0; i++) await new Promise((r) => setImmediate(r));
      assert.equal(stats.open, 0);
    }
  } finally {
    for (const c of s.wss.clients) c.terminate();
    s.wss.close();
  }
});

test('a connect still in flight when its instance is retired is closed as soon as it opens', async () => {
  const { ComponentSockets } = await import('../src/components/outbound/context.ts');
  const sockets = new ComponentSockets({ allow: [], maxConnections: 5, receiveQueue: 10 }, { open: 0, opened: 0, bytesIn: 0, bytesOut: 0 }, { timeoutMs: 2000, maxMessageBytes: 1 << 20 });
  let retired = false;
  const owned = new Set<{ destroy(): void }>();
  const ctx = sockets.forInstance(owned, () => retired);
  const s = await server();
  const opening = ctx.open({ url: s.url, headers: {}, subprotocols: [], timeoutMs: 2000, maxMessageBytes: 1024, keepaliveMs: 0, receiveQueue: 10, surfaceControlFrames: false });
  retired = true;
  const { ws } = await s.conn;
  const closed = new Promise<number>((resolve) => ws.once('close', (c) => resolve(c)));
  await assert.rejects(opening, (e: any) => /retired/.test(e.message));
  assert.equal(await closed, 1001);
  assert.equal(owned.size, 0);
  s.wss.close();
});
