// Settings that no other test exercised, each set away from its default and observed from
// outside, so each test fails if its setting stopped working (or were removed): MAX_PENDING_REQUESTS,
// OFFLINE_QUEUE_MAX, COMPONENT_MAX_QUEUE, OUTBOUND_RECEIVE_QUEUE, OUTBOUND_TIMEOUT_MS,
// SHUTDOWN_TIMEOUT_MS, JWT_AUDIENCE, HISTORY_MAX_AGE_SEC and DEMO_PAGE.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { join } from 'node:path';
import WebSocketClient, { WebSocketServer } from 'ws';
import type WebSocket from 'ws';
import { SignJWT } from 'jose';
import { connect as natsConnect } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import { Gateway } from '../src/gateway/gateway.ts';
import { loadConfig } from '../src/config/load.ts';
import { ok } from '../src/gateway/messaging.ts';
import { buildComponent, ROOT } from '../scripts/build-components.ts';
import { withGateway, startGateway, TestClient, bounded, once } from './helpers.ts';
import { startNats, freePort } from './nats-helpers.ts';

const CACHE = join(ROOT, 'build/cache');

test('MAX_PENDING_REQUESTS: the request past it gets too_many_requests; the ones before stay pending', () => withGateway({ MAX_PENDING_REQUESTS: '2' }, async (gw) => {
  gw.linkSource('silent', { handleMessage: () => ok(undefined) }, ['slow.>']); // never answers
  const c = await TestClient.connect(gw);
  try {
    c.send({ op: 'req', id: 'r1', subject: 'slow.a', text: '', timeout_ms: 5000 });
    c.send({ op: 'req', id: 'r2', subject: 'slow.b', text: '', timeout_ms: 5000 });
    const third = await c.call({ op: 'req', id: 'r3', subject: 'slow.c', text: '', timeout_ms: 5000 });
    assert.deepEqual([third.op, third.code], ['error', 'too_many_requests']);
    assert.equal(c.frames.filter((f) => f.id === 'r1' || f.id === 'r2').length, 0, 'the first two are still waiting');
  } finally {
    c.close();
  }
}));

test('OFFLINE_QUEUE_MAX: while the remote is down only the newest N publishes are kept (the oldest dropped, counted)', async () => {
  const port = await freePort();
  const gw = await Gateway.start(loadConfig({ flags: { MODE: 'client', URI: `ws://127.0.0.1:${port}/feed`, FORWARD: 'out.>', OFFLINE_QUEUE_MAX: '2', RECONNECT_BASE_MS: '20', RECONNECT_MAX_MS: '50' }, env: {} }));
  let wss: WebSocketServer | undefined;
  try {
    for (const n of [1, 2, 3, 4, 5]) gw.publish({ subject: `out.m${n}`, body: new TextEncoder().encode(String(n)), replyTo: null });
    const link = gw.links[0]!;
    assert.equal(link.stats.droppedOffline, 3);
    wss = new WebSocketServer({ port, host: '127.0.0.1' });
    const conn = bounded(new Promise<WebSocket>((resolve) => wss!.once('connection', resolve)), 'the link reconnecting');
    const ws = await conn;
    const got: string[] = [];
    const all = bounded(new Promise<void>((resolve) => ws.on('message', (d) => {
      got.push((JSON.parse(d.toString()) as { subject: string }).subject);
      if (got.includes('out.sentinel')) resolve();
    })), 'the flushed queue and the sentinel');
    await once(link, 'open').catch(() => {}); // may already be open
    gw.publish({ subject: 'out.sentinel', body: new Uint8Array(), replyTo: null });
    await all;
    assert.deepEqual(got, ['out.m4', 'out.m5', 'out.sentinel']);
  } finally {
    await gw.shutdown();
    wss?.close();
  }
});

const forwarderWasm = (async () => (await buildComponent(join(ROOT, 'examples/components', 'forwarder'))).path)();

test('COMPONENT_MAX_QUEUE: with one instance busy, the message past the queue is refused at once', async () => {
  const path = await forwarderWasm;
  const config = loadConfig({ flags: { MODE: 'server', LISTEN: '127.0.0.1:0', COMPONENT_MAX_QUEUE: '1', COMPONENT_TIMEOUT_MS: '3000', COMPONENT_CACHE_DIR: CACHE }, env: {}, components: [{ path, subscriptions: ['fwd.>'], pool_size: 1, id: 'fwd' }] });
  const gw = await Gateway.start(config);
  try {
    gw.linkSource('black-hole', { handleMessage: () => ok(undefined) }, ['stuck.>']); // the forwarder waits on it
    const pool = gw.wasm.get('fwd')!.pool;
    gw.publish({ subject: 'fwd.stuck.1', body: new Uint8Array(), replyTo: null }); // runs, stuck
    gw.publish({ subject: 'fwd.stuck.2', body: new Uint8Array(), replyTo: null }); // queued (1)
    const c = await TestClient.connect(gw);
    // Past the queue: refused now, not after the 3 s deadline.
    const res = await c.call({ op: 'req', id: 'q', subject: 'fwd.stuck.3', text: '', timeout_ms: 2000 });
    assert.equal(pool.stats.rejected, 1, `refused once (${JSON.stringify(res)})`);
    c.close();
  } finally {
    await gw.shutdown();
  }
});

const wsProbe = (async () => (await buildComponent(join(ROOT, 'examples/components', 'ws-probe'))).path)();

async function probeGateway(settings: Record<string, string>): Promise<Gateway> {
  const gw = await startGateway({ COMPONENT_CACHE_DIR: CACHE, ...settings });
  await gw.addComponent({ id: 'ws-probe', path: await wsProbe, subscriptions: [{ subject: 'wsprobe.>', queue: undefined }], poolSize: 1, timeoutMs: 20_000, maxQueue: 100, env: {}, preopens: {} });
  return gw;
}

async function step(gw: Gateway, subject: string, args: unknown = {}): Promise<Record<string, unknown>> {
  const r = await gw.request(subject, Buffer.from(JSON.stringify(args)), 20_000);
  if (r.tag === 'err') throw new Error(r.val);
  return JSON.parse(Buffer.from(r.val.body).toString()) as Record<string, unknown>;
}

test('OUTBOUND_TIMEOUT_MS: a component connect without its own timeout gives up after it', async () => {
  // A TCP server that accepts and never answers the upgrade.
  const silent = net.createServer((s) => s.on('error', () => {}));
  silent.listen(0, '127.0.0.1');
  await once(silent, 'listening');
  const gw = await probeGateway({ OUTBOUND_TIMEOUT_MS: '300' });
  try {
    const started = performance.now();
    const r = await step(gw, 'wsprobe.connect', { url: `ws://127.0.0.1:${(silent.address() as net.AddressInfo).port}/` });
    assert.ok(r.error, `connect failed: ${JSON.stringify(r)}`);
    assert.match(JSON.stringify(r.error), /time/i);
    assert.ok(performance.now() - started < 10_000, 'well before the 30 s default');
  } finally {
    await gw.shutdown();
    silent.close();
  }
});

test('OUTBOUND_RECEIVE_QUEUE: a full receive queue stops reading (the server feels backpressure) until the component takes messages', async () => {
  const wss = new WebSocketServer({ port: 0, host: '127.0.0.1' });
  await once(wss, 'listening');
  const gw = await probeGateway({ OUTBOUND_RECEIVE_QUEUE: '2' });
  try {
    const conn = bounded(new Promise<WebSocket>((resolve) => wss.once('connection', resolve)), 'the component connecting');
    assert.equal((await step(gw, 'wsprobe.connect', { url: `ws://127.0.0.1:${(wss.address() as net.AddressInfo).port}/` })).state, 'open');
    const ws = await conn;
    const chunk = 'x'.repeat(256 * 1024);
    const count = 96; // 24 MiB: far more than loopback socket buffers hold (a few MiB each way)
    let written = 0;
    let takenWhenAllWritten = -1;
    let taken = 0;
    for (let i = 0; i < count; i++) ws.send(chunk, () => { if (++written === count) takenWhenAllWritten = taken; });
    // The component takes messages one at a time. With a queue of 2 its socket stops reading
    // whenever two wait, so the server can only finish writing once the component has taken most
    // of them (about 75 of 96 here); with the default queue (1000) it finishes after about 9.
    for (let polls = 0; taken < count; polls++) {
      assert.ok(polls < 50_000, `only ${taken} of ${count} messages arrived`);
      const r = await step(gw, 'wsprobe.receive');
      if (r.message !== null) {
        assert.equal((r.message as { text: string }).text.length, chunk.length);
        taken++;
      }
      await new Promise((res) => setImmediate(res)); // a component call never yields to I/O by itself
    }
    assert.equal(written, count);
    assert.ok(takenWhenAllWritten >= 40, `the server finished writing after the component had taken ${takenWhenAllWritten} of ${count}`);
  } finally {
    await gw.shutdown();
    wss.close();
  }
});

test('SHUTDOWN_TIMEOUT_MS: shutdown waits that long for a peer that never answers the close, then cuts it', async () => {
  const gw = await startGateway({ SHUTDOWN_TIMEOUT_MS: '300' });
  // A raw client that completes the upgrade and then never reads or answers anything.
  const port = gw.server!.address.port;
  const sock = net.connect(port, '127.0.0.1');
  await once(sock, 'connect');
  sock.write(`GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n`);
  await bounded(new Promise<void>((resolve) => sock.once('data', () => resolve())), 'the 101 answer');
  const cut = bounded(new Promise<void>((resolve) => sock.once('close', () => resolve())), 'the server cutting the silent peer');
  sock.on('error', () => {});
  const started = performance.now();
  await gw.shutdown();
  const ms = performance.now() - started;
  await cut;
  assert.ok(ms >= 250, `waited for the close handshake (${ms.toFixed(0)} ms)`);
  assert.ok(ms < 3000, `then cut it, long before the 5 s default (${ms.toFixed(0)} ms)`);
});

test('JWT_AUDIENCE: tokens for another audience, or none, are refused', () => withGateway({ JWT_SECRET: 'a-shared-secret-of-enough-length-for-hs256', JWT_AUDIENCE: 'wsbridge-demo' }, async (gw) => {
  const key = new TextEncoder().encode('a-shared-secret-of-enough-length-for-hs256');
  const token = (aud?: string) => {
    const t = new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).setSubject('u').setExpirationTime('5m');
    return (aud ? t.setAudience(aud) : t).sign(key);
  };
  const status = (tok: string) => bounded(new Promise<number>((resolve) => {
    const ws = new WebSocketClient(`${gw.server!.url}?token=${tok}`);
    ws.on('error', () => {});
    ws.once('unexpected-response', (_req, res) => (res.resume(), resolve(res.statusCode ?? 0)));
    ws.once('open', () => (ws.close(), resolve(101)));
  }), 'the handshake answer');
  const good = await TestClient.connect(`${gw.server!.url}?token=${await token('wsbridge-demo')}`);
  good.close();
  assert.equal(await status(await token('some-other-service')), 401);
  assert.equal(await status(await token()), 401);
}));

test('HISTORY_MAX_AGE_SEC: the history stream keeps messages that long; older ones are gone (history_lost)', async () => {
  const nats = await startNats();
  const gw = await startGateway({ NATS_URL: nats.url, HISTORY_SUBJECTS: 'hist.>', HISTORY_MAX_AGE_SEC: '1' });
  const nc = await natsConnect({ servers: nats.url });
  try {
    const jsm = await jetstreamManager(nc);
    const info = await jsm.streams.info('WSBRIDGE_HISTORY');
    assert.equal(info.config.max_age, 1_000_000_000);
    const c = await TestClient.connect(gw);
    for (const id of ['p1', 'p2']) assert.equal((await c.call({ subject: 'hist.a', text: 'soon gone', id })).op, 'ok');
    // JetStream removes it after a second: wait for the stream to be empty (bounded).
    const deadline = Date.now() + 15_000;
    while ((await jsm.streams.info('WSBRIDGE_HISTORY')).state.messages > 0) {
      assert.ok(Date.now() < deadline, 'the message outlived HISTORY_MAX_AGE_SEC by far');
      await new Promise((r) => setTimeout(r, 100)); // polling external state (JetStream), bounded
    }
    c.send({ op: 'sub', subject: 'hist.>', since: 1, id: 'r' }); // it saw seq 1; seq 2 has expired
    const lost = await c.next((f) => f.op === 'history_lost');
    assert.equal(lost.since, 1);
    c.close();
  } finally {
    await nc.close();
    await gw.shutdown();
    await nats.stop();
  }
});

test('DEMO_PAGE: false turns off the page and the browser SDK; on by default', async () => {
  await withGateway({ DEMO_PAGE: 'false' }, async (gw) => {
    const base = `http://127.0.0.1:${gw.server!.address.port}`;
    for (const p of ['/', '/demo.js', '/sdk/client.js', '/favicon.ico']) assert.equal((await fetch(base + p)).status, 404, p);
    assert.equal((await fetch(`${base}/healthz`)).status, 200);
  });
  await withGateway({}, async (gw) => {
    const base = `http://127.0.0.1:${gw.server!.address.port}`;
    for (const p of ['/', '/demo.js', '/sdk/client.js', '/favicon.ico']) assert.equal((await fetch(base + p)).status, 200, p);
  });
});
