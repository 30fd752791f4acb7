// Hostile clients on loopback against one server while a well-behaved session keeps its
// traffic: fragmented frames, floods, oversize and invalid frames, half-open connections,
// requests without upgrade, thousands of subscribes, auth bypass attempts.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { SignJWT, base64url } from 'jose';
import { startGateway, TestClient, once } from './helpers.ts';

const SECRET = 'hostile-suite-secret-of-enough-length!!';
const gw = await startGateway({ JWT_SECRET: SECRET, RATE_LIMIT_MSGS: '200', MAX_SUBSCRIPTIONS: '100', MAX_MESSAGE_BYTES: '4096', AUTH_DEADLINE_MS: '500' });
after(() => gw.shutdown());
const url = gw.server!.url;
const port = gw.server!.address.port;
const token = (claims: Record<string, unknown> = {}) => new SignJWT(claims).setProtectedHeader({ alg: 'HS256' }).setExpirationTime('10m').sign(new TextEncoder().encode(SECRET));
const connect = async (claims?: Record<string, unknown>) => TestClient.connect(`${url}?token=${await token(claims)}`);

const good = await connect();
const watcher = await connect();
await watcher.call({ op: 'sub', subject: 'good.>', id: 'w' });
let n = 0;
async function goodTrafficFlows(): Promise<void> {
  const tag = `m${n++}`;
  good.send({ subject: 'good.news', text: tag });
  await watcher.next((f) => f.subject === 'good.news' && Buffer.from(String(f.body), 'base64').toString() === tag);
}
after(() => { good.close(); watcher.close(); });

/** A raw client socket that completed the upgrade with a valid token. */
async function rawSession(): Promise<net.Socket> {
  const sock = net.connect(port, '127.0.0.1');
  await once(sock, 'connect');
  sock.write(`GET /ws?token=${await token()} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n`);
  await new Promise<void>((resolve) => { let got = ''; const on = (d: Buffer) => { got += d.toString('latin1'); if (got.includes('\r\n\r\n')) { sock.off('data', on); resolve(); } }; sock.on('data', on); });
  return sock;
}
const maskFrame = (opcode: number, fin: boolean, payload: Buffer) => {
  const mask = Buffer.from([9, 8, 7, 6]);
  const head = Buffer.from([(fin ? 0x80 : 0) | opcode, 0x80 | payload.length]);
  return Buffer.concat([head, mask, Buffer.from(payload.map((b, i) => b ^ mask[i % 4]!))]);
};

test('fragmented frames are reassembled and answered; a bogus continuation closes only that socket', async () => {
  const sock = await rawSession();
  let data = Buffer.alloc(0);
  sock.on('data', (d: Buffer) => (data = Buffer.concat([data, d])));
  const ping = Buffer.from(JSON.stringify({ op: 'ping', id: 'frag' }));
  sock.write(maskFrame(0x1, false, ping.subarray(0, 5)));
  sock.write(maskFrame(0x0, false, ping.subarray(5, 10)));
  sock.write(maskFrame(0x0, true, ping.subarray(10)));
  for (let i = 0; i < 200 && !data.toString('latin1').includes('"frag"'); i++) await new Promise((r) => setTimeout(r, 10));
  assert.match(data.toString('latin1'), /"op":"pong","id":"frag"/);
  const closed = new Promise((r) => sock.on('close', r));
  sock.write(maskFrame(0x0, true, Buffer.from('orphan continuation')));
  await closed;
  await goodTrafficFlows();
});

test('a flood is rate limited; oversize and invalid UTF-8 close with 1009 and 1007', async () => {
  const flood = await connect();
  for (let i = 0; i < 2000; i++) flood.send({ subject: 'flood.x', text: 'spam' });
  assert.equal((await flood.next((f) => f.op === 'error')).code, 'rate_limited');
  await goodTrafficFlows();
  const big = await connect();
  big.send({ subject: 'x', text: 'z'.repeat(5000) });
  assert.equal((await big.closed).code, 1009);
  const sock = await rawSession();
  const closed = new Promise<Buffer>((resolve) => { let d = Buffer.alloc(0); sock.on('data', (x: Buffer) => (d = Buffer.concat([d, x]))); sock.on('close', () => resolve(d)); });
  sock.write(maskFrame(0x1, true, Buffer.from([0x7b, 0xc3, 0x28, 0x7d])));
  const reply = await closed;
  assert.equal(reply.readUInt16BE(2), 1007, 'close frame with 1007');
  flood.close();
  await goodTrafficFlows();
});

test('thousands of subscribe ops: the limit answers limit_exceeded, the session and others stay', async () => {
  // Its own server without a rate limit, so all 3000 ops are processed.
  const g = await startGateway({ MAX_SUBSCRIPTIONS: '100' });
  try {
    const greedy = await TestClient.connect(g);
    const bystander = await TestClient.connect(g);
    await bystander.call({ op: 'sub', subject: 'calm', id: 'b' });
    for (let i = 0; i < 3000; i++) greedy.send({ op: 'sub', subject: `s.${i}`, id: `s${i}` });
    await greedy.next((f) => f.id === 's2999', 10_000);
    const answers = [...greedy.frames];
    assert.equal(answers.filter((f) => f.op === 'ok').length, 100);
    assert.equal(answers.filter((f) => f.code === 'limit_exceeded').length + 1, 2900);
    greedy.send({ subject: 'calm', text: 'still fine' });
    await bystander.next((f) => f.subject === 'calm');
    greedy.close();
    bystander.close();
  } finally {
    await g.shutdown();
  }
  await goodTrafficFlows();
});

test('half-open connections and requests without upgrade leave no session behind', async () => {
  const before = gw.hub.sessions.size;
  const sock = await rawSession();
  for (let i = 0; i < 100 && gw.hub.sessions.size === before; i++) await new Promise((r) => setTimeout(r, 10));
  assert.equal(gw.hub.sessions.size, before + 1);
  sock.destroy(); // vanishes without a close frame
  for (let i = 0; i < 200 && gw.hub.sessions.size > before; i++) await new Promise((r) => setTimeout(r, 10));
  assert.equal(gw.hub.sessions.size, before);
  const plain = await fetch(`http://127.0.0.1:${port}/ws`);
  assert.equal(plain.status, 404);
  await goodTrafficFlows();
});

test('auth bypass attempts: none-alg, wrong key, expired, forbidden subjects, frames before auth', async () => {
  const refused = async (u: string) => new Promise<number>((resolve) => {
    const c = new TestClient(u);
    c.ws.once('unexpected-response', (_q, res) => { resolve(res.statusCode ?? 0); res.resume(); });
  });
  const none = `${base64url.encode(JSON.stringify({ alg: 'none' }))}.${base64url.encode(JSON.stringify({ exp: 9999999999 }))}.`;
  assert.equal(await refused(`${url}?token=${none}`), 401);
  const wrong = await new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).setExpirationTime('10m').sign(new TextEncoder().encode('not-the-secret-but-long-enough-0123'));
  assert.equal(await refused(`${url}?token=${wrong}`), 401);
  const expired = await new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).setExpirationTime(Math.floor(Date.now() / 1000) - 60).sign(new TextEncoder().encode(SECRET));
  assert.equal(await refused(`${url}?token=${expired}`), 401);
  const limited = await connect({ pub: ['ok.>'], subs: ['ok.>'] });
  assert.equal((await limited.call({ subject: 'good.news', text: 'x', id: '1' })).code, 'permission_denied');
  assert.equal((await limited.call({ op: 'sub', subject: 'good.>', id: '2' })).code, 'permission_denied');
  assert.equal((await limited.call({ subject: '_WSB.B.everyone', text: 'x', id: '3' })).code, 'invalid_subject');
  const sneaky = new TestClient(url);
  await once(sneaky.ws, 'open');
  sneaky.send({ subject: 'good.news', text: 'unauthenticated' });
  assert.equal((await sneaky.closed).code, 1008);
  assert.equal(sneaky.frames.length, 0);
  limited.close();
  await goodTrafficFlows();
  assert.equal(watcher.frames.filter((f) => Buffer.from(String(f.body), 'base64').toString() === 'unauthenticated').length, 0);
});
