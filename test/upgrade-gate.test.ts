// The handshake gate, black-box over real sockets: connection slots reserved before the token is
// verified (no race past MAX_CONNECTIONS / MAX_CONNECTIONS_PER_IP), per-IP handshake rate and
// failed-auth backoff (429 + Retry-After, counted in metrics), trusted proxies, and the bearer
// tokens of /metrics and /api compared alike.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SignJWT } from 'jose';
import { withGateway, TestClient, once } from './helpers.ts';

const SECRET = 'gate-suite-secret-of-enough-length-0123456';
const jwt = () => new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).setExpirationTime('10m').sign(new TextEncoder().encode(SECRET));

type Outcome = { open: TestClient } | { status: number; retryAfter: string | undefined };

/** One upgrade: welcomed (the client is returned) or refused with an HTTP status. */
function attempt(url: string, opts: Record<string, unknown> = {}): Promise<Outcome> {
  const c = new TestClient(url, undefined, opts);
  return Promise.race([
    c.next((f) => f.op === 'welcome', 10_000).then(() => ({ open: c })),
    new Promise<Outcome>((resolve) => c.ws.once('unexpected-response', (_q, res) => {
      resolve({ status: res.statusCode ?? 0, retryAfter: res.headers['retry-after'] });
      res.resume();
    })),
  ]);
}

async function burst(n: number, url: string, opts: Record<string, unknown> = {}) {
  const outcomes = await Promise.all(Array.from({ length: n }, () => attempt(url, opts)));
  const open = outcomes.flatMap((o) => ('open' in o ? [o.open] : []));
  const statuses = outcomes.flatMap((o) => ('status' in o ? [o.status] : []));
  return { open, statuses, outcomes };
}

async function closeAll(clients: TestClient[]): Promise<void> {
  for (const c of clients) c.close();
  await Promise.all(clients.map((c) => c.closed));
}

/** Waits (bounded) until the server has let go of every connection. */
async function drained(gw: { server?: { openConnections: number } | undefined }): Promise<void> {
  for (let i = 0; i < 500 && gw.server!.openConnections > 0; i++) await new Promise((r) => setTimeout(r, 10));
  assert.equal(gw.server!.openConnections, 0);
}

test('30 concurrent upgrades with a token to verify: exactly MAX_CONNECTIONS_PER_IP get in, every time', async () => {
  await withGateway({ JWT_SECRET: SECRET, MAX_CONNECTIONS_PER_IP: '3' }, async (gw) => {
    const token = await jwt();
    for (let round = 0; round < 2; round++) {
      const { open, statuses } = await burst(30, `${gw.server!.url}?token=${token}`);
      assert.equal(open.length, 3, `round ${round}: ${open.length} accepted`);
      assert.deepEqual([...new Set(statuses)], [429]);
      await closeAll(open);
      await drained(gw); // every slot released once: the next round gets exactly 3 again
    }
  });
});

test('30 concurrent upgrades with a token to verify: exactly MAX_CONNECTIONS get in', async () => {
  await withGateway({ JWT_SECRET: SECRET, MAX_CONNECTIONS: '3' }, async (gw) => {
    const token = await jwt();
    let n = 0;
    const { open, statuses } = await burst(30, `${gw.server!.url}?token=${token}`);
    assert.equal(open.length, 3);
    assert.deepEqual([...new Set(statuses)], [503]);
    await closeAll(open);
    await drained(gw);
    // From five source addresses: only the total cap applies.
    const again = await Promise.all(Array.from({ length: 10 }, () => attempt(`${gw.server!.url}?token=${token}`, { localAddress: `127.0.0.${2 + (n++ % 5)}` })));
    const opened = again.flatMap((o) => ('open' in o ? [o.open] : []));
    assert.equal(opened.length, 3);
    await closeAll(opened);
    // Refused and failed handshakes hold no slot either.
    const bad = await attempt(`${gw.server!.url}?token=wrong`);
    assert.equal('status' in bad && bad.status, 401);
    await drained(gw);
  });
});

test('HANDSHAKE_RATE_PER_IP: a burst past the rate gets 429 with Retry-After; another address is not affected; counted', async () => {
  await withGateway({ HANDSHAKE_RATE_PER_IP: '5' }, async (gw) => {
    const { open, outcomes } = await burst(20, gw.server!.url);
    assert.equal(open.length, 5);
    for (const o of outcomes) if ('status' in o) assert.deepEqual([o.status, Number(o.retryAfter) >= 1], [429, true]);
    const other = await attempt(gw.server!.url, { localAddress: '127.0.0.2' });
    assert.ok('open' in other, 'another IP has its own bucket');
    await closeAll([...open, other.open]);
    const metrics = await (await fetch(`http://127.0.0.1:${gw.server!.address.port}/metrics`)).text();
    assert.match(metrics, /wsbridge_handshakes_throttled_total\{reason="rate"\} 15/);
  });
});

test('AUTH_FAILURE_BACKOFF_MS: after 5 failed authentications an address gets 429, even with a good token; others do not', async () => {
  await withGateway({ JWT_SECRET: SECRET, AUTH_FAILURE_BACKOFF_MS: '60000', AUTH_DEADLINE_MS: '2000' }, async (gw) => {
    const url = gw.server!.url;
    // Failures in the handshake and in the first frame both count.
    for (let i = 0; i < 3; i++) {
      const o = await attempt(`${url}?token=guess-${i}`);
      assert.equal('status' in o && o.status, 401);
    }
    for (let i = 0; i < 3; i++) {
      const c = new TestClient(url);
      await once(c.ws, 'open');
      c.send({ op: 'auth', token: `guess-frame-${i}` });
      assert.equal((await c.closed).code, 1008);
    }
    const good = await jwt();
    const blocked = await attempt(`${url}?token=${good}`);
    assert.ok('status' in blocked && blocked.status === 429, 'shut out for the backoff');
    assert.ok('status' in blocked && Number(blocked.retryAfter) > 50 && Number(blocked.retryAfter) <= 60, `Retry-After ${'status' in blocked ? blocked.retryAfter : ''}`);
    const elsewhere = await attempt(`${url}?token=${good}`, { localAddress: '127.0.0.2' });
    assert.ok('open' in elsewhere, 'another address is not shut out');
    elsewhere.open.close();
    const metrics = await (await fetch(`http://127.0.0.1:${gw.server!.address.port}/metrics`)).text();
    assert.match(metrics, /wsbridge_handshakes_throttled_total\{reason="auth_backoff"\} 1/);
    assert.match(metrics, /wsbridge_auth_failures_total 6/);
  });
});

test('TRUSTED_PROXIES: forwarded client addresses count per IP only when the peer is a trusted proxy', async () => {
  await withGateway({ TRUSTED_PROXIES: '127.0.0.1,10.0.0.0/8', MAX_CONNECTIONS_PER_IP: '1', ENABLE_SESSION_TRACKING: 'true' }, async (gw) => {
    const url = gw.server!.url;
    const via = (xff: string, more: Record<string, unknown> = {}) => attempt(url, { headers: { 'x-forwarded-for': xff }, ...more });
    const a = await via('203.0.113.7');
    const b = await via('198.51.100.9, 10.1.2.3'); // the client, then an inner trusted proxy
    assert.ok('open' in a && 'open' in b, 'two clients behind one proxy each get their own slot');
    const again = await via('203.0.113.7');
    assert.ok('status' in again && again.status === 429, 'the same forwarded client is capped');
    // A client cannot pick its address by sending the header itself through the proxy: the
    // rightmost untrusted hop is the one the proxy saw.
    const spoof = await via('198.51.100.200, 203.0.113.7');
    assert.ok('status' in spoof && spoof.status === 429);
    const fwd = await attempt(url, { headers: { forwarded: 'for="[2001:db8::5]:4711";proto=https' } });
    assert.ok('open' in fwd, 'Forwarded (RFC 7239) is read too');
    const addresses = gw.listSessions().map((s) => s.remote_address).sort();
    assert.deepEqual(addresses, ['198.51.100.9', '2001:db8::5', '203.0.113.7']);
    // From a peer that is not trusted the headers are ignored: its own address counts.
    const untrusted = await via('192.0.2.1', { localAddress: '127.0.0.2' });
    assert.ok('open' in untrusted);
    const untrusted2 = await via('192.0.2.2', { localAddress: '127.0.0.2' });
    assert.ok('status' in untrusted2 && untrusted2.status === 429, 'capped as 127.0.0.2, whatever it claims');
    assert.ok(gw.listSessions().some((s) => s.remote_address.startsWith('127.0.0.2:')));
    await closeAll([a, b, fwd, untrusted].map((o) => (o as { open: TestClient }).open));
  });
});

test('/metrics and /api compare bearer tokens alike: only the exact token, one byte-identical 401', async () => {
  await withGateway({ METRICS_TOKEN: 'scrape-token', ADMIN_TOKEN: 'admin-token' }, async (gw) => {
    const base = `http://127.0.0.1:${gw.server!.address.port}`;
    const get = async (path: string, auth?: string) => {
      const res = await fetch(base + path, auth === undefined ? {} : { headers: { authorization: auth } });
      return { status: res.status, body: await res.text(), www: res.headers.get('www-authenticate') };
    };
    assert.equal((await get('/metrics', 'Bearer scrape-token')).status, 200);
    assert.equal((await get('/api/stats', 'Bearer admin-token')).status, 200);
    const refusals = [
      await get('/metrics'), await get('/metrics', 'Bearer scrape-toke'), await get('/metrics', 'Bearer scrape-token2'),
      await get('/metrics', 'bearer scrape-token'), await get('/metrics', 'Bearer admin-token'),
      await get('/api/stats'), await get('/api/stats', 'Bearer scrape-token'),
    ];
    for (const r of refusals) assert.deepEqual(r, refusals[0]);
    assert.equal(refusals[0]!.status, 401);
  });
});
