// The operator API's runtime operations (the seed's link / delete link): client-mode links added,
// listed and deleted over HTTP; WebAssembly components linked and unlinked. Admin token required.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { startGateway, TestClient, ROOT } from './helpers.ts';
import { remoteServer, nextEvent } from './remote-helpers.ts';
import { buildComponent } from '../scripts/build-components.ts';

const TOKEN = 'link-api-token';
const gw = await startGateway({ ADMIN_TOKEN: TOKEN, HEADER_X_Team: 'ops', RECONNECT_BASE_MS: '20', RECONNECT_MAX_MS: '40', KEEPALIVE_INTERVAL_SEC: '0' });
after(() => gw.shutdown());
const api = (path: string, method = 'GET', body?: unknown, token: string | null = TOKEN) => fetch(`http://127.0.0.1:${gw.server!.address.port}${path}`, {
  method, body: body === undefined ? undefined : JSON.stringify(body), headers: token === null ? {} : { authorization: `Bearer ${token}` },
});
type Json = Record<string, unknown> & { error?: { code: string; message: string } };

test('POST /api/links dials a remote (inheriting the gateway\'s values), GET lists it, DELETE closes it with 1000', async (t) => {
  const remote = await remoteServer();
  t.after(() => remote.close());
  const conn = remote.nextConn();
  const res = await api('/api/links', 'POST', { URI: remote.url, LINK_NAME: 'feed', RAW_SUBJECT: 'feed.in', 'HEADER_X-Own': 'yes' });
  assert.equal(res.status, 201);
  const made = await res.json() as Json;
  assert.equal(made.id, 'feed');
  assert.deepEqual(made.owners, ['operator']);
  const { req, ws } = await conn;
  assert.equal(req.headers['x_team'], 'ops', 'the gateway\'s HEADER_ applies');
  assert.equal(req.headers['x-own'], 'yes');
  const link = gw.remoteLinks.get('feed')!;
  if (link.state !== 'open') await nextEvent(link, 'open');
  // The link works: a raw frame reaches a local session on feed.in.
  const s = await TestClient.connect(gw);
  t.after(() => s.close());
  await s.call({ op: 'sub', subject: 'feed.in', id: 's' });
  ws.send('tick');
  await s.next((f) => f.subject === 'feed.in');

  const list = await (await api('/api/links')).json() as { links: Json[] };
  assert.deepEqual(list.links.map((l) => [l.id, l.state]), [['feed', 'open']]);
  assert.equal((await api('/api/links/feed')).status, 200);

  const closed = new Promise<number>((r) => ws.once('close', (code) => r(code)));
  assert.equal((await api('/api/links/feed', 'DELETE')).status, 204);
  assert.equal(await closed, 1000);
  assert.equal(gw.links.length, 0);
  const again = await api('/api/links/feed', 'DELETE');
  assert.equal(again.status, 404);
  assert.equal((await again.json() as Json).error!.code, 'link_not_found');
});

test('POST /api/links refuses bad values (400), a missing URI, conflicts and taken names (409), and needs the token', async (t) => {
  const remote = await remoteServer();
  t.after(() => remote.close());
  const bad = await api('/api/links', 'POST', { URI: 'http://nope' });
  assert.equal(bad.status, 400);
  assert.match((await bad.json() as Json).error!.message, /URI .*ws:\/\/ or wss:\/\//);
  assert.equal((await api('/api/links', 'POST', { URI: remote.url, ADMIN_TOKEN: 'x' })).status, 400);
  assert.equal((await api('/api/links', 'POST', { RAW_SUBJECT: 'x' })).status, 400);
  assert.equal((await api('/api/links', 'POST', { URI: remote.url, RAW_SUBJECT: '_WSB.x' })).status, 400);
  assert.equal((await api('/api/links', 'POST', '[1]')).status, 400);
  const file = await api('/api/links', 'POST', { URI: remote.url, AUTH_TOKEN_FILE: '/etc/hostname' });
  assert.equal(file.status, 400, 'no reading the gateway\'s files into a header for any server');
  assert.match((await file.json() as Json).error!.message, /AUTH_TOKEN_FILE names a file/);
  assert.equal((await api('/api/links', 'POST', { URI: remote.url }, 'wrong')).status, 401);
  assert.equal((await api('/api/links', 'POST', { URI: remote.url, LINK_NAME: 'a', FORWARD: 'x.>' })).status, 201);
  const conflict = await api('/api/links', 'POST', { URI: remote.url, FORWARD: 'y.>' });
  assert.equal(conflict.status, 409);
  assert.match((await conflict.json() as Json).error!.message, /FORWARD/);
  assert.equal((await api('/api/links', 'POST', { URI: `${remote.url}/other`, LINK_NAME: 'a' })).status, 409);
  assert.equal((await api('/api/links/a', 'DELETE')).status, 204);
});

test('POST /api/components links a WebAssembly component at runtime; DELETE unlinks it', async () => {
  const echo = (await buildComponent(join(ROOT, 'examples/components', 'echo'))).path;
  const c = await TestClient.connect(gw);
  try {
    assert.equal((await c.call({ op: 'req', id: 'before', subject: 'echo.x', text: 'hi', timeout_ms: 500 })).code, 'no_responders');
    const refused = await api('/api/components', 'POST', { path: echo, subscriptions: ['echo.>'], preopens: { '/': '/' } });
    assert.equal(refused.status, 400);
    const res = await api('/api/components', 'POST', { path: echo, id: 'echo', subscriptions: ['echo.>'], pool_size: 1 });
    assert.equal(res.status, 201, await res.clone().text());
    assert.equal((await res.json() as Json).id, 'echo');
    const r = await c.call({ op: 'req', id: 'r', subject: 'echo.x', text: 'hi', timeout_ms: 10_000 });
    assert.equal(r.op, 'res');
    assert.equal((await api('/api/components', 'POST', { path: echo, id: 'echo', subscriptions: ['echo.>'] })).status, 409);
    assert.deepEqual(((await (await api('/api/components')).json()) as { components: Json[] }).components.map((x) => x.id), ['echo']);
    assert.equal((await api('/api/components', 'POST', { path: '/nonexistent.wasm' })).status, 400);
    assert.equal((await api('/api/components/echo', 'DELETE')).status, 204);
    assert.equal((await api('/api/components/echo', 'DELETE')).status, 404);
    assert.equal((await c.call({ op: 'req', id: 'after', subject: 'echo.x', text: 'hi', timeout_ms: 500 })).code, 'no_responders');
  } finally {
    c.close();
  }
});
