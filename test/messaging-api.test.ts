// The wasmcloud:messaging contract from TypeScript: handlers receive what WebSocket clients
// publish and answer via reply_to, consumers publish and request, queue groups deliver once, and
// a failing handler is counted without affecting anyone else.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { startGateway, TestClient, unb64 } from './helpers.ts';
import { ok, err } from '../src/gateway/messaging.ts';
import type { BrokerMessage } from '../src/gateway/messaging.ts';

const gw = await startGateway();
after(() => gw.shutdown());

test('a linked handler answers a WebSocket client via reply_to', async () => {
  const consumer = gw.linkTarget('echo');
  gw.linkSource('echo', {
    handleMessage(msg) {
      if (!msg.replyTo) return err('no reply_to');
      return consumer.publish({ subject: msg.replyTo, body: msg.body, replyTo: null });
    },
  }, ['echo.>']);
  const c = await TestClient.connect(gw);
  const res = await c.call({ op: 'req', id: 'r1', subject: 'echo.me', text: 'hello component' });
  assert.equal(res.op, 'res');
  assert.equal(unb64(res.body), 'hello component');
  c.close();
  await gw.deleteLink('echo');
  const gone = await TestClient.connect(gw);
  assert.equal((await gone.call({ op: 'req', id: 'r2', subject: 'echo.me', text: 'x' })).code, 'no_responders');
  gone.close();
});

test('consumer.request reaches a WebSocket responder; errors name no_responders and timeout', async () => {
  const svc = await TestClient.connect(gw);
  await svc.call({ op: 'sub', subject: 'ws.svc', id: '1' });
  svc.ws.on('message', (d) => {
    const f = JSON.parse(d.toString()) as { subject?: string; reply_to?: string };
    if (f.subject === 'ws.svc') svc.send({ subject: f.reply_to, text: 'from ws' });
  });
  const consumer = gw.linkTarget('caller');
  const r = await consumer.request('ws.svc', Buffer.from('q'), 2000);
  assert.equal(r.tag, 'ok');
  assert.equal(Buffer.from((r.val as BrokerMessage).body).toString(), 'from ws');
  const none = await consumer.request('nobody.home', new Uint8Array(), 100);
  assert.equal(none.tag, 'err');
  assert.match(String(none.val), /^no_responders/);
  await svc.call({ op: 'sub', subject: 'ws.silent', id: '2' });
  const slow = await consumer.request('ws.silent', new Uint8Array(), 50);
  assert.match(String(slow.val), /^timeout/);
  assert.deepEqual(consumer.publish({ subject: 'bad subject', body: new Uint8Array(), replyTo: null }).tag, 'err');
  svc.close();
});

test('a handler that throws or returns err is counted; other handlers and sessions keep going', async () => {
  const before = { ...gw.stats };
  const got: string[] = [];
  gw.linkSource('thrower', { handleMessage() { throw new Error('boom'); } }, ['fragile.*']);
  gw.linkSource('erring', { handleMessage: async () => err('nope') }, ['fragile.*']);
  gw.linkSource('healthy', { handleMessage(m) { got.push(m.subject); return ok(undefined); } }, ['fragile.*']);
  const c = await TestClient.connect(gw);
  const watcher = await TestClient.connect(gw);
  await watcher.call({ op: 'sub', subject: 'fragile.*', id: '1' });
  assert.equal((await c.call({ subject: 'fragile.x', text: '1', id: 'p' })).op, 'ok');
  await watcher.next((f) => f.subject === 'fragile.x');
  await new Promise((r) => setImmediate(r)); // the async handler's rejection settles
  assert.deepEqual(got, ['fragile.x']);
  assert.equal(gw.stats.handlerErrors - before.handlerErrors, 2);
  assert.equal(gw.stats.handlerCalls - before.handlerCalls, 3);
  for (const id of ['thrower', 'erring', 'healthy']) await gw.deleteLink(id);
  c.close();
  watcher.close();
});

test('queue groups: each message reaches exactly one member', async () => {
  const counts = new Map<string, number>();
  for (const id of ['w1', 'w2', 'w3']) {
    gw.linkSource(id, { handleMessage() { counts.set(id, (counts.get(id) ?? 0) + 1); return ok(undefined); } }, [{ subject: 'jobs.*', queue: 'workers' }]);
  }
  let plain = 0;
  gw.linkSource('observer', { handleMessage() { plain++; return ok(undefined); } }, ['jobs.*']);
  for (let i = 0; i < 300; i++) gw.publish({ subject: `jobs.${i}`, body: new Uint8Array(), replyTo: null });
  const total = [...counts.values()].reduce((a, b) => a + b, 0);
  assert.equal(total, 300, 'every job delivered once across the group');
  assert.equal(plain, 300, 'a non-queue subscriber sees all');
  assert.equal(counts.size, 3, 'spread over the members');
  for (const id of ['w1', 'w2', 'w3', 'observer']) await gw.deleteLink(id);
});

test('sessions can join queue groups too', async () => {
  const a = await TestClient.connect(gw);
  const b = await TestClient.connect(gw);
  await a.call({ op: 'sub', subject: 'tasks', queue: 'q', id: '1' });
  await b.call({ op: 'sub', subject: 'tasks', queue: 'q', id: '1' });
  for (let i = 0; i < 20; i++) gw.publish({ subject: 'tasks', body: Buffer.from(String(i)), replyTo: null });
  await a.call({ op: 'ping', id: 'sync' });
  await b.call({ op: 'ping', id: 'sync' });
  const seen = [...a.frames, ...b.frames].filter((f) => f.subject === 'tasks').map((f) => unb64(f.body)).sort((x, y) => Number(x) - Number(y));
  assert.deepEqual(seen, Array.from({ length: 20 }, (_, i) => String(i)));
  a.close();
  b.close();
});
