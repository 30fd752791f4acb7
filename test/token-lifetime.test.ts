// Token lifetimes and the first frame, black-box over real sockets: far-future exp (past the
// 2^31 ms timer limit), REQUIRE_JWT_EXP and JWT_MAX_LIFETIME_SEC, frames pipelined behind a
// first-frame auth, a closed session released long before its exp, JWKS fetch failures logged.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { createServer } from 'node:http';
import { Writable } from 'node:stream';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { SignJWT, generateKeyPair } from 'jose';
import { pino } from 'pino';
import { withGateway, TestClient, once } from './helpers.ts';
import { loadConfig } from '../src/config/load.ts';
import { Gateway } from '../src/gateway/gateway.ts';

const SECRET = 'lifetime-suite-secret-of-enough-length-0123';
const key = new TextEncoder().encode(SECRET);
const now = () => Math.floor(Date.now() / 1000);
function sign(claims: { exp?: number; iat?: number } = {}): Promise<string> {
  let j = new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).setSubject('device-7');
  if (claims.iat !== undefined) j = j.setIssuedAt(claims.iat);
  if (claims.exp !== undefined) j = j.setExpirationTime(claims.exp);
  return j.sign(key);
}

async function outcome(url: string): Promise<TestClient | number> {
  const c = new TestClient(url);
  return Promise.race([
    c.next((f) => f.op === 'welcome', 5000).then((w) => { c.welcome = w; return c; }),
    new Promise<number>((resolve) => c.ws.once('unexpected-response', (_q, res) => { resolve(res.statusCode ?? 0); res.resume(); })),
  ]);
}

test('a JWT expiring 60 days ahead keeps its session open (handshake and first-frame auth)', async () => {
  await withGateway({ JWT_SECRET: SECRET }, async (gw) => {
    const token = await sign({ exp: now() + 60 * 86_400 });
    const viaHandshake = await TestClient.connect(`${gw.server!.url}?token=${token}`);
    const viaFrame = new TestClient(gw.server!.url);
    await once(viaFrame.ws, 'open');
    viaFrame.send({ op: 'auth', token });
    await viaFrame.next((f) => f.op === 'welcome');
    // A timer that overflowed would have fired right after welcome: these round trips see it.
    for (const c of [viaHandshake, viaFrame]) {
      for (let i = 0; i < 3; i++) assert.equal((await c.call({ op: 'ping', id: `p${i}` })).op, 'pong');
      await new Promise((r) => setTimeout(r, 50)); // lets a wrongly immediate timer run before the last check
      assert.equal((await c.call({ op: 'ping', id: 'last' })).op, 'pong');
      assert.equal(c.ws.readyState, c.ws.OPEN);
    }
    // A refresh to another far-future token re-arms the same way.
    assert.equal((await viaHandshake.call({ op: 'auth', token: await sign({ exp: now() + 400 * 86_400 }), id: 'r' })).op, 'ok');
    assert.equal((await viaHandshake.call({ op: 'ping', id: 'after-refresh' })).op, 'pong');
    viaHandshake.close();
    viaFrame.close();
  });
});

test('REQUIRE_JWT_EXP and JWT_MAX_LIFETIME_SEC refuse tokens that live forever or too long', async () => {
  await withGateway({ JWT_SECRET: SECRET, REQUIRE_JWT_EXP: 'true', AUTH_FAILURE_BACKOFF_MS: '0' }, async (gw) => {
    const url = gw.server!.url;
    assert.equal(await outcome(`${url}?token=${await sign()}`), 401, 'no exp');
    const ok = await outcome(`${url}?token=${await sign({ exp: now() + 600 })}`);
    assert.ok(ok instanceof TestClient);
    ok.close();
  });
  await withGateway({ JWT_SECRET: SECRET, JWT_MAX_LIFETIME_SEC: '3600', AUTH_FAILURE_BACKOFF_MS: '0' }, async (gw) => {
    const url = gw.server!.url;
    const t = now();
    assert.equal(await outcome(`${url}?token=${await sign()}`), 401, 'no exp: unbounded lifetime');
    assert.equal(await outcome(`${url}?token=${await sign({ iat: t, exp: t + 7200 })}`), 401, 'two hours from iat');
    assert.equal(await outcome(`${url}?token=${await sign({ exp: t + 7200 })}`), 401, 'two hours from now, no iat');
    assert.equal(await outcome(`${url}?token=${await sign({ iat: t + 5000, exp: t + 7200 })}`), 401, 'iat in the future does not stretch it');
    for (const claims of [{ iat: t - 1800, exp: t + 1800 }, { exp: t + 1800 }]) {
      const c = await outcome(`${url}?token=${await sign(claims)}`);
      assert.ok(c instanceof TestClient, JSON.stringify(claims));
      c.close();
    }
  });
});

/** Masked client frames, written by hand so several go out in one TCP write. */
const maskFrame = (payload: string): Buffer => {
  const data = Buffer.from(payload);
  assert.ok(data.length < 65536);
  const mask = Buffer.from([1, 2, 3, 4]);
  const head = data.length < 126 ? Buffer.from([0x81, 0x80 | data.length]) : Buffer.from([0x81, 0x80 | 126, data.length >> 8, data.length & 0xff]);
  return Buffer.concat([head, mask, Buffer.from(data.map((b, i) => b ^ mask[i % 4]!))]);
};

/** Reads unmasked server text frames off a raw socket, in order. */
function serverFrames(sock: net.Socket): { frames: Array<Record<string, unknown>>; until(n: number): Promise<void> } {
  let buf = Buffer.alloc(0);
  const frames: Array<Record<string, unknown>> = [];
  let headerDone = false;
  const waiters: Array<() => void> = [];
  sock.on('data', (d: Buffer) => {
    buf = Buffer.concat([buf, d]);
    if (!headerDone) {
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) return;
      headerDone = true;
      buf = buf.subarray(end + 4);
    }
    for (;;) {
      if (buf.length < 2) break;
      let len = buf[1]! & 0x7f;
      let off = 2;
      if (len === 126) { if (buf.length < 4) break; len = buf.readUInt16BE(2); off = 4; }
      if (buf.length < off + len) break;
      if ((buf[0]! & 0x0f) === 1) frames.push(JSON.parse(buf.subarray(off, off + len).toString()) as Record<string, unknown>);
      buf = buf.subarray(off + len);
    }
    for (const w of waiters.splice(0)) w();
  });
  return {
    frames,
    async until(n) {
      for (let i = 0; i < 100 && frames.length < n; i++) await new Promise<void>((r) => { waiters.push(r); setTimeout(r, 100); });
      assert.ok(frames.length >= n, `got ${JSON.stringify(frames)}`);
    },
  };
}

/** A raw socket that sent the upgrade request without a token (auth comes in the first frame). */
async function rawUpgrade(gw: Gateway): Promise<{ sock: net.Socket; rx: ReturnType<typeof serverFrames> }> {
  const sock = net.connect(gw.server!.address.port, '127.0.0.1');
  await once(sock, 'connect');
  const rx = serverFrames(sock);
  sock.write(`GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n`);
  return { sock, rx };
}

test('frames pipelined behind a first-frame auth in one TCP write: welcome first, then each answered in order', async () => {
  await withGateway({ JWT_SECRET: SECRET, RATE_LIMIT_MSGS: '1' }, async (gw) => {
    const token = await sign({ exp: now() + 600 });
    const { sock, rx } = await rawUpgrade(gw);
    sock.write(Buffer.concat([
      maskFrame(JSON.stringify({ op: 'auth', token })),
      maskFrame(JSON.stringify({ op: 'ping', id: 'one' })),
      maskFrame(JSON.stringify({ op: 'ping', id: 'two' })),
    ]));
    await rx.until(3);
    assert.equal(rx.frames[0]!.op, 'welcome', `nothing before welcome: ${JSON.stringify(rx.frames)}`);
    // RATE_LIMIT_MSGS=1: the auth frame is not charged, the first ping is answered, the second is over the rate.
    assert.deepEqual(rx.frames.slice(1, 3).map((f) => [f.op, f.id ?? f.code]), [['pong', 'one'], ['error', 'rate_limited']]);
    sock.on('error', () => {});
    sock.destroy();
  });
  await withGateway({ JWT_SECRET: SECRET }, async (gw) => {
    const token = await sign({ exp: now() + 600 });
    const { sock, rx } = await rawUpgrade(gw);
    sock.write(Buffer.concat([
      maskFrame(JSON.stringify({ op: 'auth', token })),
      maskFrame(JSON.stringify({ op: 'sub', subject: 'piped', id: 's' })),
      maskFrame(JSON.stringify({ subject: 'piped', text: 'hi', id: 'p' })),
      maskFrame(JSON.stringify({ op: 'ping', id: 'z' })),
    ]));
    await rx.until(5);
    assert.deepEqual(rx.frames.map((f) => f.op ?? `msg:${String(f.subject)}`).slice(0, 5).sort(), ['msg:piped', 'ok', 'ok', 'pong', 'welcome'].sort());
    assert.equal(rx.frames[0]!.op, 'welcome');
    assert.deepEqual(rx.frames.filter((f) => f.op !== undefined && f.op !== 'welcome').map((f) => f.id), ['s', 'p', 'z'], 'answered in order');
    sock.on('error', () => {});
    sock.destroy();
  });
});

test('more than 100 frames piled up behind a first-frame auth close the session with 1008', async () => {
  await withGateway({ JWT_SECRET: SECRET }, async (gw) => {
    const token = await sign({ exp: now() + 600 });
    const sock = net.connect(gw.server!.address.port, '127.0.0.1');
    sock.on('error', () => {});
    await once(sock, 'connect');
    let data = Buffer.alloc(0);
    sock.on('data', (d: Buffer) => (data = Buffer.concat([data, d])));
    sock.write(`GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n`);
    const pings = Array.from({ length: 150 }, (_, i) => maskFrame(JSON.stringify({ op: 'ping', id: String(i) })));
    sock.write(Buffer.concat([maskFrame(JSON.stringify({ op: 'auth', token })), ...pings]));
    // The close frame arrives (the raw client never answers it, so the TCP close would wait for ws's close timeout).
    for (let i = 0; i < 100 && !data.includes('too many frames before welcome'); i++) await new Promise((r) => setTimeout(r, 50));
    sock.destroy();
    const text = data.toString('latin1');
    assert.match(text, /too many frames before welcome/);
    assert.doesNotMatch(text, /"op":"welcome"/, 'no session was opened');
    assert.equal(gw.hub.stats.sessionsOpened, 0);
  });
});

test('a JWT session closed long before its exp is released (its expiry timer no longer holds it)', async () => {
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  await withGateway({ JWT_SECRET: SECRET, PING_INTERVAL_SEC: '0' }, async (gw) => {
    const c = await TestClient.connect(`${gw.server!.url}?token=${await sign({ exp: now() + 86_400 })}`);
    const ref = new WeakRef(gw.hub.sessions.get(String(c.welcome.session))!);
    c.close();
    await c.closed;
    for (let i = 0; i < 500 && gw.server!.openConnections > 0; i++) await new Promise((r) => setTimeout(r, 10));
    assert.equal(gw.server!.openConnections, 0, 'the gateway counts it closed');
    assert.equal(gw.hub.sessions.size, 0);
    for (let i = 0; i < 20 && ref.deref() !== undefined; i++) {
      await new Promise((r) => setTimeout(r, 20));
      gc();
    }
    assert.equal(ref.deref(), undefined, 'the closed session was garbage collected');
  });
});

test('a JWKS URL that cannot be fetched is logged (and its tokens refused)', async () => {
  const jwks = createServer((_req, res) => { res.writeHead(500); res.end('down'); });
  jwks.listen(0, '127.0.0.1');
  await once(jwks, 'listening');
  const lines: string[] = [];
  const sink = new Writable({ write(chunk: Buffer, _e, cb) { lines.push(chunk.toString()); cb(); } });
  const url = `http://127.0.0.1:${(jwks.address() as net.AddressInfo).port}/jwks.json`;
  const gw = await Gateway.start(loadConfig({ flags: { MODE: 'server', LISTEN: '127.0.0.1:0', JWT_JWKS: url }, env: {} }), { log: pino({ level: 'warn' }, sink) });
  try {
    const { privateKey } = await generateKeyPair('EdDSA');
    const token = await new SignJWT({}).setProtectedHeader({ alg: 'EdDSA', kid: 'k' }).setExpirationTime('5m').sign(privateKey);
    assert.equal(await outcome(`${gw.server!.url}?token=${token}`), 401);
    const logged = lines.map((l) => JSON.parse(l) as { msg: string; jwks?: string }).find((l) => /JWKS fetch failed/.test(l.msg));
    assert.ok(logged, `logged: ${lines.join('')}`);
    assert.equal(logged.jwks, url);
  } finally {
    await gw.shutdown();
    jwks.close();
  }
});

test('shutdown answers 503 to upgrades whose token is still being verified, without waiting for them', async () => {
  // A JWKS URL that never answers keeps the handshake's verification pending.
  const stuck = createServer(() => {});
  stuck.listen(0, '127.0.0.1');
  await once(stuck, 'listening');
  const url = `http://127.0.0.1:${(stuck.address() as net.AddressInfo).port}/jwks.json`;
  const gw = await Gateway.start(loadConfig({ flags: { MODE: 'server', LISTEN: '127.0.0.1:0', JWT_JWKS: url, SHUTDOWN_TIMEOUT_MS: '60000' }, env: {} }));
  try {
    const { privateKey } = await generateKeyPair('EdDSA');
    const token = await new SignJWT({}).setProtectedHeader({ alg: 'EdDSA', kid: 'k' }).setExpirationTime('5m').sign(privateKey);
    const pending = outcome(`${gw.server!.url}?token=${token}`);
    await once(stuck, 'request'); // the gateway is now fetching the key set for this handshake
    await gw.shutdown();
    assert.equal(await pending, 503);
  } finally {
    await gw.shutdown();
    stuck.closeAllConnections();
    stuck.close();
  }
});
