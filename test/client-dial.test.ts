// Subprotocol negotiation against local servers: a server that selects none of the offered
// subprotocols is accepted and reported (RFC 6455), or refused with SUBPROTOCOL_REQUIRED. This test
// also pins how dial.ts reaches into ws's handshake order.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { remoteServer, clientGateway, nextEvent } from './remote-helpers.ts';

const FAST = { RECONNECT_BASE_MS: '20', RECONNECT_MAX_MS: '40', KEEPALIVE_INTERVAL_SEC: '0' };

test('a server that selects no subprotocol is accepted and reported (subprotocol null)', async (t) => {
  const remote = await remoteServer(0, { handleProtocols: () => false });
  t.after(() => remote.close());
  const conn = remote.nextConn();
  const gw = await clientGateway({ URI: remote.url, SUBPROTOCOLS: 'feed.v2,feed.v1', ...FAST });
  t.after(() => gw.shutdown());
  const link = gw.links[0]!;
  const { req, ws } = await conn;
  if (link.state !== 'open') await nextEvent(link, 'open');
  assert.equal(req.headers['sec-websocket-protocol'], 'feed.v2,feed.v1');
  assert.equal(ws.protocol, '');
  assert.equal(link.subprotocol, null);
  // It works: a frame arrives.
  const got = new Promise<string>((r) => gw.linkSource('h', { handleMessage: (m) => { r(Buffer.from(m.body).toString()); return { tag: 'ok', val: undefined }; } }, ['ws.in']));
  ws.send('hello');
  assert.equal(await got, 'hello');
});

test('a server that selects one: reported as selected', async (t) => {
  const remote = await remoteServer(0, { handleProtocols: (p) => (p.has('feed.v1') ? 'feed.v1' : false) });
  t.after(() => remote.close());
  const gw = await clientGateway({ URI: remote.url, SUBPROTOCOLS: 'feed.v2,feed.v1', ...FAST });
  t.after(() => gw.shutdown());
  const link = gw.links[0]!;
  if (link.state !== 'open') await nextEvent(link, 'open');
  assert.equal(link.subprotocol, 'feed.v1');
});

test('SUBPROTOCOL_REQUIRED=true: a server that selects none fails the attempt', async (t) => {
  const remote = await remoteServer(0, { handleProtocols: () => false });
  t.after(() => remote.close());
  const gw = await clientGateway({ URI: remote.url, SUBPROTOCOLS: 'feed.v2', SUBPROTOCOL_REQUIRED: 'true', RECONNECT_MAX_ATTEMPTS: '2', ...FAST });
  t.after(() => gw.shutdown());
  const link = gw.links[0]!;
  const failed = nextEvent(link, 'failed');
  const [err] = await nextEvent<[Error]>(link, 'error');
  assert.match(err.message, /no subprotocol/);
  await failed;
  assert.equal(link.stats.connects, 0);
  assert.equal(remote.conns.length, 2);
});
