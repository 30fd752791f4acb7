// Client mode against a local ws server started by the test: the bearer token and custom headers
// arrive, raw and envelope frames are routed to handlers, replies go back without echo loops,
// the handshake times out on a silent server, the link reconnects after a restart, keepalive
// finds a dead peer, and links to one URL share a connection.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { Gateway } from '../src/gateway/gateway.ts';
import { loadConfig } from '../src/config/load.ts';
import type { BrokerMessage } from '../src/gateway/messaging.ts';
import { once } from './helpers.ts';
import { remoteServer, clientGateway, recorder, nextEvent } from './remote-helpers.ts';

test('bearer token, custom headers and subprotocols arrive in the handshake', async () => {
  const remote = await remoteServer(0, { handleProtocols: (p) => (p.has('feed.v2') ? 'feed.v2' : false) });
  const conn = remote.nextConn();
  const gw = await clientGateway({ URI: remote.url, AUTH_TOKEN: 's3cret', HEADER_X_Tenant: 'acme', 'HEADER_User-Agent': 'wsbridge-test', SUBPROTOCOLS: 'feed.v2,feed.v1' });
  const { req, ws } = await conn;
  assert.equal(req.headers.authorization, 'Bearer s3cret');
  assert.equal(req.headers['x_tenant'], 'acme');
  assert.equal(req.headers['user-agent'], 'wsbridge-test');
  assert.equal(req.headers['sec-websocket-protocol'], 'feed.v2,feed.v1');
  assert.equal(ws.protocol, 'feed.v2');
  assert.equal(req.url, '/feed');
  await gw.shutdown();
  remote.wss.close();
});

test('raw frames go to RAW_SUBJECT, envelopes by subject; handler replies return to the remote, never echoed', async () => {
  const remote = await remoteServer();
  const connP = remote.nextConn();
  const gw = await clientGateway({ URI: remote.url, RAW_SUBJECT: 'feed.raw', FORWARD: 'status.>' });
  const raw = recorder();
  const orders = recorder();
  gw.linkSource('raw-handler', raw.handler, ['feed.raw']);
  gw.linkSource('orders-handler', orders.handler, ['orders.>']);
  const conn = await connP;
  await once(gw.links[0]!, 'open').catch(() => {});

  conn.ws.send('plain text tick');
  conn.ws.send(Buffer.from([1, 2, 3]), { binary: true });
  conn.ws.send('{"not":"an envelope"}');
  conn.ws.send(JSON.stringify({ subject: 'orders.new', body: Buffer.from('order-1').toString('base64'), reply_to: 'client.inbox.9' }));
  await raw.waitFor(3);
  await orders.waitFor(1);
  assert.deepEqual(raw.got.map((m) => Buffer.from(m.body).toString('latin1')), ['plain text tick', '\x01\x02\x03', '{"not":"an envelope"}']);
  const order = orders.got[0]!;
  assert.equal(order.subject, 'orders.new');
  assert.equal(Buffer.from(order.body).toString(), 'order-1');
  assert.ok(order.replyTo);

  // The handler answers via reply_to: the remote gets an envelope on its own reply subject.
  const consumer = gw.linkTarget('orders-handler');
  assert.deepEqual(consumer.publish({ subject: order.replyTo!, body: Buffer.from('accepted'), replyTo: null }), { tag: 'ok', val: undefined });
  const answer = JSON.parse(await remote.nextFrame(conn)) as { subject: string; body: string };
  assert.equal(answer.subject, 'client.inbox.9');
  assert.equal(Buffer.from(answer.body, 'base64').toString(), 'accepted');

  // A local publish matching FORWARD goes out once; nothing received from the remote was sent
  // back to it.
  consumer.publish({ subject: 'status.up', body: Buffer.from('1'), replyTo: null });
  const out = JSON.parse(await remote.nextFrame(conn)) as { subject: string };
  assert.equal(out.subject, 'status.up');
  assert.equal(conn.received.length, 0, `no echo of remote frames: ${conn.received.map((f) => f.data.toString()).join(' | ')}`);
  await gw.shutdown();
  remote.wss.close();
});

test('consumer.request over the link: the remote answers the envelope reply_to', async () => {
  const remote = await remoteServer();
  remote.wss.on('connection', (ws) => ws.on('message', (d) => {
    const m = JSON.parse(d.toString()) as { subject: string; reply_to: string };
    if (m.subject === 'time.now') ws.send(JSON.stringify({ subject: m.reply_to, text: 'noon' }));
  }));
  const gw = await clientGateway({ URI: remote.url, FORWARD: 'time.>', FORWARD_REPLIES: 'true' });
  await once(gw.links[0]!, 'open');
  const r = await gw.linkTarget('asker').request('time.now', Buffer.from('?'), 2000);
  assert.equal(r.tag, 'ok');
  assert.equal(Buffer.from((r as { val: BrokerMessage }).val.body).toString(), 'noon');
  await gw.shutdown();
  remote.wss.close();
});

test('CONNECT_TIMEOUT_SEC: a server that never answers the upgrade times the attempt out', async () => {
  const sockets: net.Socket[] = [];
  const silent = net.createServer((s) => { sockets.push(s); s.on('error', () => {}); }); // accepts TCP, never speaks
  silent.listen(0, '127.0.0.1');
  await once(silent, 'listening');
  const port = (silent.address() as net.AddressInfo).port;
  const started = Date.now();
  const gw = await clientGateway({ URI: `ws://127.0.0.1:${port}/`, CONNECT_TIMEOUT_SEC: '1', RECONNECT_MAX_ATTEMPTS: '1', RECONNECT_BASE_MS: '10', RECONNECT_MAX_MS: '10' });
  const link = gw.links[0]!;
  const failed = nextEvent(link, 'failed');
  const [err] = await nextEvent<[Error]>(link, 'error');
  assert.match(err.message, /timed out/i);
  assert.ok(Date.now() - started >= 900, 'not before the timeout');
  await failed;
  assert.equal(link.state, 'failed');
  await gw.shutdown();
  silent.close();
  for (const c of sockets) c.destroy();
});

test('reconnects with backoff after the server restarts, and flushes what was queued offline', async () => {
  let remote = await remoteServer();
  const port = remote.port;
  const first = remote.nextConn();
  const gw = await clientGateway({ URI: remote.url, FORWARD: 'while.>', RECONNECT_BASE_MS: '50', RECONNECT_MAX_MS: '200', KEEPALIVE_INTERVAL_SEC: '0' });
  const link = gw.links[0]!;
  await first;
  const reconnecting = once(link, 'reconnecting');
  await remote.close();
  const [delay] = (await reconnecting) as [number];
  assert.ok(delay >= 0 && delay <= 50, `first delay within [0, base] (full jitter), got ${delay}`);
  gw.publish({ subject: 'while.down', body: Buffer.from('queued'), replyTo: null });

  remote = await remoteServer(port);
  const conn = await remote.nextConn();
  const frame = JSON.parse(await remote.nextFrame(conn)) as { subject: string };
  assert.equal(frame.subject, 'while.down');
  assert.equal(link.state, 'open');
  assert.equal(link.stats.connects, 2);
  await gw.shutdown();
  remote.wss.close();
});

test('keepalive: a peer that stops answering pings is detected and the link reconnects', async () => {
  const remote = await remoteServer(0, { autoPong: false });
  const gw = await clientGateway({ URI: remote.url, KEEPALIVE_INTERVAL_SEC: '1', RECONNECT_BASE_MS: '20', RECONNECT_MAX_MS: '20' });
  const link = gw.links[0]!;
  await once(link, 'open');
  await once(link, 'dead-peer');
  await once(link, 'open'); // reconnected
  assert.equal(link.stats.connects, 2);
  await gw.shutdown();
  remote.wss.close();
});

test('links to the same URL share one connection; deleting the last link closes it', async () => {
  const remote = await remoteServer();
  const gw = await Gateway.start(loadConfig({ flags: { MODE: 'server', LISTEN: '127.0.0.1:0' }, env: {} }));
  const conn = remote.nextConn();
  gw.linkTarget('comp-a', { URI: remote.url, AUTH_TOKEN: 't' });
  gw.linkSource('comp-b', recorder().handler, ['x.>'], { URI: remote.url, AUTH_TOKEN: 't' });
  const { ws } = await conn;
  if (gw.links[0]!.state !== 'open') await nextEvent(gw.links[0]!, 'open');
  assert.equal(gw.links.length, 1);
  assert.equal(remote.conns.length, 1);
  await gw.deleteLink('comp-a');
  assert.equal(gw.links.length, 1, 'still held by comp-b');
  const closed = once(ws, 'close');
  await gw.deleteLink('comp-b');
  const [code] = (await closed) as [number];
  assert.equal(code, 1000);
  assert.equal(gw.links.length, 0);
  await gw.shutdown();
  remote.wss.close();
});

test('a refused handshake (401) is reported with the status and retried', async () => {
  const remote = await remoteServer(0, { verifyClient: (_info, cb) => cb(false, 401, 'Unauthorized') });
  const gw = await clientGateway({ URI: remote.url, RECONNECT_MAX_ATTEMPTS: '2', RECONNECT_BASE_MS: '10', RECONNECT_MAX_MS: '10' });
  const link = gw.links[0]!;
  const failed = nextEvent(link, 'failed');
  const [err] = await nextEvent<[Error]>(link, 'error');
  assert.match(err.message, /401/);
  await failed;
  await gw.shutdown();
  remote.wss.close();
});
