// The operator HTTP API: disabled without ADMIN_TOKEN, 401 without the right bearer token, and
// each route doing what docs/protocol.md says.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { startGateway, TestClient, b64, unb64 } from './helpers.ts';

const TOKEN = 'op-secret-token';
const gw = await startGateway({ ADMIN_TOKEN: TOKEN });
const base = `http://127.0.0.1:${gw.server!.address.port}`;
after(() => gw.shutdown());

const api = (path: string, init: RequestInit & { token?: string | null } = {}) => {
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  const token = init.token === undefined ? TOKEN : init.token;
  if (token !== null) headers.authorization = `Bearer ${token}`;
  return fetch(base + path, { ...init, headers });
};

test('disabled when ADMIN_TOKEN is unset', async () => {
  const off = await startGateway();
  try {
    const res = await fetch(`http://127.0.0.1:${off.server!.address.port}/api/sessions`, { headers: { authorization: 'Bearer anything' } });
    assert.equal(res.status, 404);
    assert.equal(((await res.json()) as { error: { code: string } }).error.code, 'api_disabled');
  } finally {
    await off.shutdown();
  }
});

test('401 without or with a wrong token, for every route', async () => {
  for (const [method, path] of [['GET', '/api/sessions'], ['POST', '/api/broadcast'], ['POST', '/api/publish'], ['DELETE', '/api/sessions/x'], ['POST', '/api/sessions/x/messages'], ['GET', '/api/stats'], ['GET', '/api/presence/room.a'], ['GET', '/api/nothing/here'], ['GET', '/api/presence/%E0']] as const) {
    for (const token of [null, 'wrong', `${TOKEN}x`]) {
      const res = await api(path, { method, token, body: method === 'POST' ? JSON.stringify({ subject: 'a', text: 'x' }) : undefined });
      assert.equal(res.status, 401, `${method} ${path} with ${token}`);
      assert.match(res.headers.get('www-authenticate') ?? '', /^Bearer/);
    }
  }
});

test('a path that is not valid percent-encoding is a 400, not a failure', async () => {
  for (const path of ['/api/sessions/%E0', '/api/presence/%ZZ', '/api/sessions/%C3%28/messages']) {
    const res = await api(path, { method: 'GET' });
    assert.equal(res.status, 400, path);
    assert.equal(((await res.json()) as { error: { code: string } }).error.code, 'bad_request');
  }
});

test('GET /healthz needs no token', async () => {
  const res = await fetch(`${base}/healthz`);
  assert.equal(res.status, 200);
  assert.equal(((await res.json()) as { status: string }).status, 'ok');
});

test('list sessions, send to one, broadcast, publish, close', async () => {
  const a = await TestClient.connect(gw);
  const b = await TestClient.connect(gw);
  await a.call({ op: 'sub', subject: 'news.*', id: '1' });
  a.send({ subject: 'count.me', text: 'x' });
  await a.call({ op: 'ping', id: 'sync' });

  const list = (await (await api('/api/sessions')).json()) as { sessions: Array<Record<string, unknown>> };
  const sa = list.sessions.find((s) => s.id === a.welcome.session)!;
  assert.ok(sa, 'session a listed');
  assert.ok(list.sessions.some((s) => s.id === b.welcome.session));
  assert.deepEqual(sa.subscriptions, ['news.*']);
  assert.match(String(sa.remote_address), /^127\.0\.0\.1:\d+$/);
  assert.ok(!Number.isNaN(Date.parse(String(sa.connected_at))));
  assert.equal((sa.counters as { messagesIn: number }).messagesIn, 3);

  const sent = await api(`/api/sessions/${b.welcome.session}/messages`, { method: 'POST', body: JSON.stringify({ subject: 'direct', body: b64('just b') }) });
  assert.equal(sent.status, 202);
  assert.equal(unb64((await b.next((f) => f.subject === 'direct')).body), 'just b');

  const missing = await api('/api/sessions/nope/messages', { method: 'POST', body: JSON.stringify({ subject: 'direct', text: 'x' }) });
  assert.equal(missing.status, 404);

  const bc = await api('/api/broadcast', { method: 'POST', body: JSON.stringify({ subject: 'all', text: 'everyone' }) });
  assert.equal(bc.status, 202);
  await a.next((f) => f.subject === 'all');
  await b.next((f) => f.subject === 'all');

  const pub = await api('/api/publish', { method: 'POST', body: JSON.stringify({ subject: 'news.today', text: 'headline' }) });
  assert.equal(pub.status, 202);
  assert.equal(unb64((await a.next((f) => f.subject === 'news.today')).body), 'headline');

  const bad = await api('/api/publish', { method: 'POST', body: JSON.stringify({ subject: 'news.*', text: 'x' }) });
  assert.equal(bad.status, 400);
  assert.equal(((await bad.json()) as { error: { code: string } }).error.code, 'invalid_subject');
  const badJson = await api('/api/publish', { method: 'POST', body: '{nope' });
  assert.equal(((await badJson.json()) as { error: { code: string } }).error.code, 'bad_json');
  assert.equal((await api('/api/sessions', { method: 'PUT' })).status, 405);

  const del = await api(`/api/sessions/${a.welcome.session}`, { method: 'DELETE' });
  assert.equal(del.status, 204);
  assert.equal((await a.closed).code, 1000);
  assert.equal((await api(`/api/sessions/${a.welcome.session}`, { method: 'DELETE' })).status, 404);
  b.close();
});

test('session tracking off: session routes answer 404 session_tracking_disabled, publish still works', async () => {
  const gw2 = await startGateway({ ADMIN_TOKEN: TOKEN, ENABLE_SESSION_TRACKING: 'false' });
  try {
    const url = `http://127.0.0.1:${gw2.server!.address.port}`;
    const res = await fetch(`${url}/api/sessions`, { headers: { authorization: `Bearer ${TOKEN}` } });
    assert.equal(res.status, 404);
    assert.equal(((await res.json()) as { error: { code: string } }).error.code, 'session_tracking_disabled');
    const pub = await fetch(`${url}/api/publish`, { method: 'POST', headers: { authorization: `Bearer ${TOKEN}` }, body: JSON.stringify({ subject: 'a', text: 'x' }) });
    assert.equal(pub.status, 202);
  } finally {
    await gw2.shutdown();
  }
});
