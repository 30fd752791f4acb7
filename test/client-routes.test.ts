// What crosses a client-mode link, against a local remote: FORWARD sends only what it names (never
// reply subjects or inboxes); every frame from the remote gets a reply route back over its link,
// answerable only by whoever was handed it; raw outbound mode speaks the remote's own protocol;
// and what is buffered toward a slow remote is bounded (MAX_BUFFERED_BYTES, SLOW_CONSUMER_POLICY,
// the offline queue included).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Socket } from 'node:net';
import { ok } from '../src/gateway/messaging.ts';
import { TestClient } from './helpers.ts';
import { remoteServer, clientGateway, recorder, nextEvent } from './remote-helpers.ts';
import type { Remote, RemoteConn } from './remote-helpers.ts';

const enc = (s: string) => Buffer.from(s);

async function setup(t: { after(fn: () => unknown): void }, settings: Record<string, string>) {
  const remote = await remoteServer();
  t.after(() => remote.close());
  const connP = remote.nextConn();
  const gw = await clientGateway({ URI: remote.url, KEEPALIVE_INTERVAL_SEC: '0', ...settings });
  t.after(() => gw.shutdown());
  const conn = await connP;
  if (gw.links[0]!.state !== 'open') await nextEvent(gw.links[0]!, 'open');
  return { remote, conn, gw, link: gw.links[0]! };
}

/** The first frame the remote gets; `sentinel` goes out last through RAW_OUT_SUBJECT. */
async function firstFrame(remote: Remote, conn: RemoteConn) {
  return (await remote.nextRaw(conn)).data.toString();
}

test('FORWARD unset sends nothing: not local publishes, not component requests, not session requests', async (t) => {
  const { remote, conn, gw } = await setup(t, { RAW_OUT_SUBJECT: 'to.remote', LISTEN: '127.0.0.1:0' });
  // A component answers svc.time for other components and for sessions.
  const answerer = gw.linkTarget('answerer');
  gw.linkSource('answerer', { handleMessage: (m) => answerer.publish({ subject: m.replyTo!, body: enc('local'), replyTo: null }) }, ['svc.>']);
  gw.publish({ subject: 'news.local', body: enc('x'), replyTo: null });
  const r = await gw.linkTarget('asker').request('svc.time', enc('?'), 2000);
  assert.equal(r.tag, 'ok');
  const session = await TestClient.connect(gw.server!.url);
  t.after(() => session.close());
  const res = await session.call({ op: 'req', id: 'q', subject: 'svc.time', text: '?' });
  assert.equal(res.op, 'res');
  gw.publish({ subject: 'to.remote', body: enc('sentinel'), replyTo: null });
  assert.equal(await firstFrame(remote, conn), 'sentinel', 'nothing went out before the sentinel');
});

test('FORWARD names what goes out; a forwarded request shows no inbox and the local responder answers', async (t) => {
  const { remote, conn, gw } = await setup(t, { FORWARD: 'svc.>' });
  const answerer = gw.linkTarget('answerer');
  gw.linkSource('answerer', { handleMessage: (m) => answerer.publish({ subject: m.replyTo!, body: enc('local'), replyTo: null }) }, ['svc.>']);
  const r = await gw.linkTarget('asker').request('svc.time', enc('?'), 2000);
  assert.equal(r.tag, 'ok');
  assert.equal(Buffer.from((r as { val: { body: Uint8Array } }).val.body).toString(), 'local');
  const out = JSON.parse(await firstFrame(remote, conn)) as { subject: string; reply_to: string | null };
  assert.equal(out.subject, 'svc.time');
  assert.equal(out.reply_to, null, 'no local inbox shown to the remote');
});

test('raw text and binary frames get a reply route: the answer goes back as a frame of the same type', async (t) => {
  const { remote, conn, gw } = await setup(t, { RAW_SUBJECT: 'feed.raw' });
  const rec = recorder();
  gw.linkSource('bot', rec.handler, ['feed.raw']);
  const consumer = gw.linkTarget('bot');
  conn.ws.send('LOGIN? ');
  conn.ws.send(Buffer.from([0xff, 0x00, 0x01]), { binary: true });
  await rec.waitFor(2);
  const [text, bin] = rec.got;
  assert.match(String(text!.replyTo), /^_WSB\.L\.[A-Za-z0-9_-]{22}\.T$/);
  assert.match(String(bin!.replyTo), /^_WSB\.L\.[A-Za-z0-9_-]{22}\.B$/);
  assert.deepEqual(consumer.publish({ subject: text!.replyTo!, body: enc('USER bot'), replyTo: null }), ok(undefined));
  const a = await remote.nextRaw(conn);
  assert.deepEqual([a.isBinary, a.data.toString()], [false, 'USER bot']);
  consumer.publish({ subject: bin!.replyTo!, body: enc('ACK'), replyTo: null });
  const b = await remote.nextRaw(conn);
  assert.deepEqual([b.isBinary, b.data.toString()], [true, 'ACK']);
  // A component that was not handed the route cannot use it.
  const other = gw.linkTarget('other');
  const refused = other.publish({ subject: text!.replyTo!, body: enc('forged'), replyTo: null });
  assert.equal(refused.tag, 'err');
  assert.match(String((refused as { val: string }).val), /^invalid_subject/);
});

test('an envelope without reply_to gets a route too (answer: a text frame); with reply_to the answer is an envelope on it', async (t) => {
  const { remote, conn, gw } = await setup(t, {});
  const rec = recorder();
  gw.linkSource('orders', rec.handler, ['orders.>']);
  const consumer = gw.linkTarget('orders');
  conn.ws.send(JSON.stringify({ subject: 'orders.new', text: 'o-1' }));
  conn.ws.send(JSON.stringify({ subject: 'orders.new', text: 'o-2', reply_to: 'my.inbox.7' }));
  await rec.waitFor(2);
  consumer.publish({ subject: rec.got[0]!.replyTo!, body: enc('got o-1'), replyTo: null });
  assert.equal((await remote.nextRaw(conn)).data.toString(), 'got o-1');
  consumer.publish({ subject: rec.got[1]!.replyTo!, body: enc('got o-2'), replyTo: null });
  const env = JSON.parse((await remote.nextRaw(conn)).data.toString()) as { subject: string; body: string };
  assert.equal(env.subject, 'my.inbox.7');
  assert.equal(Buffer.from(env.body, 'base64').toString(), 'got o-2');
});

test('a local WebSocket session subscribed to RAW_SUBJECT can answer the remote', async (t) => {
  const { remote, conn, gw } = await setup(t, { LISTEN: '127.0.0.1:0' });
  const s = await TestClient.connect(gw.server!.url);
  t.after(() => s.close());
  await s.call({ op: 'sub', subject: 'ws.in', id: 's' });
  conn.ws.send('ping?');
  const m = await s.next((f) => f.subject === 'ws.in');
  assert.equal((await s.call({ subject: m.reply_to, text: 'pong!', id: 'r' })).op, 'ok');
  assert.equal((await remote.nextRaw(conn)).data.toString(), 'pong!');
  // Once: the grant is used up.
  assert.equal((await s.call({ subject: m.reply_to, text: 'again', id: 'r2' })).op, 'error');
});

test('raw outbound mode: RAW_OUT_SUBJECT publishes go out as bare frames (auto, binary, text)', async (t) => {
  const { remote, conn, gw } = await setup(t, { RAW_OUT_SUBJECT: 'feed.out', FORWARD: '>' });
  gw.publish({ subject: 'feed.out', body: enc('{"jsonrpc":"2.0","method":"subscribe"}'), replyTo: null });
  const a = await remote.nextRaw(conn);
  assert.deepEqual([a.isBinary, a.data.toString()], [false, '{"jsonrpc":"2.0","method":"subscribe"}'], 'sent raw, and once (FORWARD > does not also send it as an envelope)');
  gw.publish({ subject: 'feed.out', body: Buffer.from([0xc3, 0x28]), replyTo: null });
  const b = await remote.nextRaw(conn);
  assert.equal(b.isBinary, true, 'not UTF-8: binary');
  const bin = await setup(t, { RAW_OUT_SUBJECT: 'feed.out', RAW_OUT_FORMAT: 'binary' });
  bin.gw.publish({ subject: 'feed.out', body: enc('text'), replyTo: null });
  assert.equal((await bin.remote.nextRaw(bin.conn)).isBinary, true);
  const txt = await setup(t, { RAW_OUT_SUBJECT: 'feed.out', RAW_OUT_FORMAT: 'text' });
  txt.gw.publish({ subject: 'feed.out', body: Buffer.from([0xc3, 0x28]), replyTo: null });
  txt.gw.publish({ subject: 'feed.out', body: enc('fine'), replyTo: null });
  assert.equal((await txt.remote.nextRaw(txt.conn)).data.toString(), 'fine');
  assert.equal(txt.link.stats.droppedNotText, 1);
});

/** Stops the remote reading: its kernel buffers fill, then ours. */
function stopReading(conn: RemoteConn): void {
  (conn.ws as unknown as { _socket: Socket })._socket.pause();
}

test('a remote that stops reading: MAX_BUFFERED_BYTES bounds what the link holds; drop drops the rest (counted)', async (t) => {
  const bound = 1024 * 1024;
  const { conn, gw, link } = await setup(t, { FORWARD: 'bulk.>', MAX_BUFFERED_BYTES: String(bound), SLOW_CONSUMER_POLICY: 'drop' });
  stopReading(conn);
  const chunk = Buffer.alloc(64 * 1024, 1);
  let maxHeld = 0;
  for (let i = 0; i < 400; i++) { // 25 MiB of payload, 33 MiB as base64 envelopes
    gw.publish({ subject: 'bulk.x', body: chunk, replyTo: null });
    maxHeld = Math.max(maxHeld, link.heldBytes);
    if (i % 20 === 0) await new Promise((r) => setImmediate(r));
  }
  assert.ok(maxHeld <= bound, `held ${maxHeld} bytes, bound ${bound}`);
  assert.ok(link.stats.droppedSlow > 300, `dropped ${link.stats.droppedSlow}`);
  assert.equal(link.state, 'open');
});

test('SLOW_CONSUMER_POLICY=close: the link closes (1013) and reconnects; frames wait in the offline queue, bounded by bytes', async (t) => {
  const bound = 1024 * 1024;
  const { remote, conn, gw, link } = await setup(t, { FORWARD: 'bulk.>', MAX_BUFFERED_BYTES: String(bound), SLOW_CONSUMER_POLICY: 'close', RECONNECT_BASE_MS: '2000', RECONNECT_MAX_MS: '2000' });
  stopReading(conn);
  const next = remote.nextConn();
  const chunk = Buffer.alloc(64 * 1024, 2);
  let maxHeld = 0;
  for (let i = 0; i < 400; i++) {
    gw.publish({ subject: 'bulk.x', body: chunk, replyTo: null });
    maxHeld = Math.max(maxHeld, link.heldBytes);
    if (i % 20 === 0) await new Promise((r) => setImmediate(r));
  }
  assert.equal(link.stats.slowCloses, 1);
  assert.ok(link.stats.droppedOffline > 300, `dropped ${link.stats.droppedOffline} while offline`);
  assert.ok(maxHeld <= 2 * bound, `held ${maxHeld}: the socket's bound, then the offline queue's`);
  const fresh = await next;
  // What waited offline (at most the bound) arrives on the new connection.
  let got = 0;
  while (got < 5) {
    const f = await remote.nextRaw(fresh);
    assert.equal((JSON.parse(f.data.toString()) as { subject: string }).subject, 'bulk.x');
    got++;
  }
});
