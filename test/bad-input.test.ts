// Every bad input gets its documented answer (error frame or close code) and never disturbs
// another session on the same server.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { startGateway, TestClient, b64 } from './helpers.ts';

const gw = await startGateway({ MAX_MESSAGE_BYTES: '1024', MAX_SUBSCRIPTIONS: '3' });
after(() => gw.shutdown());

// A bystander that keeps a subscription and must keep receiving throughout.
const bystander = await TestClient.connect(gw);
await bystander.call({ op: 'sub', subject: 'still.alive', id: 'b' });
const publisher = await TestClient.connect(gw);
async function bystanderStillServed(tag: string): Promise<void> {
  publisher.send({ subject: 'still.alive', text: tag });
  const m = await bystander.next((f) => f.subject === 'still.alive');
  assert.equal(Buffer.from(String(m.body), 'base64').toString(), tag);
}
after(() => {
  bystander.close();
  publisher.close();
});

const errorCases: Array<[string, unknown, string]> = [
  ['malformed JSON', '{"subject": "a", ', 'bad_json'],
  ['not an object', '[1,2]', 'bad_frame'],
  ['bad base64', { subject: 'a', body: 'not*base64' }, 'bad_base64'],
  ['unpadded base64', { subject: 'a', body: 'YQ' }, 'bad_base64'],
  ['missing subject', { body: b64('x') }, 'invalid_subject'],
  ['empty token', { subject: 'a..b', text: 'x' }, 'invalid_subject'],
  ['wildcard in publish', { subject: 'a.*', text: 'x' }, 'invalid_subject'],
  ['bad reply_to', { subject: 'a', text: 'x', reply_to: 'has space' }, 'invalid_subject'],
  ['unknown op', { op: 'explode', id: 'u' }, 'unknown_op'],
  ['req without id', { op: 'req', subject: 'a' }, 'bad_request'],
  ['negative timeout', { op: 'req', id: 'r', subject: 'a', timeout_ms: -5 }, 'bad_request'],
  ['body and text', { subject: 'a', body: b64('x'), text: 'x' }, 'bad_request'],
  ['reserved subscription', { op: 'sub', subject: '_WSB.>', id: 'r' }, 'invalid_subject'],
  ['wildcard mid-token', { op: 'sub', subject: 'a.b*', id: 'w' }, 'invalid_subject'],
];

for (const [name, frame, code] of errorCases) {
  test(`${name} → error ${code}, session stays`, async () => {
    const c = await TestClient.connect(gw);
    c.send(frame);
    const e = await c.next((f) => f.op === 'error');
    assert.equal(e.code, code);
    assert.equal(typeof e.message, 'string');
    // Still open and working.
    assert.equal((await c.call({ op: 'ping', id: 'after' })).op, 'pong');
    await bystanderStillServed(name);
    c.close();
  });
}

test('error frames echo the id when the frame had one', async () => {
  const c = await TestClient.connect(gw);
  const e = await c.call({ subject: 'bad subject', text: 'x', id: 'e1' });
  assert.deepEqual([e.op, e.code, e.id], ['error', 'invalid_subject', 'e1']);
  c.close();
});

test('subscriptions past MAX_SUBSCRIPTIONS → limit_exceeded', async () => {
  const c = await TestClient.connect(gw);
  for (let i = 0; i < 3; i++) assert.equal((await c.call({ op: 'sub', subject: `s.${i}`, id: `${i}` })).op, 'ok');
  const e = await c.call({ op: 'sub', subject: 's.3', id: '3' });
  assert.equal(e.code, 'limit_exceeded');
  c.close();
});

test('frame over MAX_MESSAGE_BYTES → close 1009', async () => {
  const c = await TestClient.connect(gw);
  c.send({ subject: 'big', text: 'x'.repeat(2000) });
  assert.equal((await c.closed).code, 1009);
  await bystanderStillServed('after 1009');
});

test('invalid UTF-8 in a text frame → close 1007', async () => {
  const c = await TestClient.connect(gw);
  // ws refuses to send invalid UTF-8 as text, so write the frame by hand: FIN+text, masked.
  const payload = Buffer.from([0x7b, 0xff, 0xfe, 0x7d]);
  const mask = Buffer.from([1, 2, 3, 4]);
  const masked = Buffer.from(payload.map((b, i) => b ^ mask[i % 4]!));
  const socket = (c.ws as unknown as { _socket: net.Socket })._socket;
  socket.write(Buffer.concat([Buffer.from([0x81, 0x80 | payload.length]), mask, masked]));
  assert.equal((await c.closed).code, 1007);
  await bystanderStillServed('after 1007');
});

test('invalid UTF-8 in a binary frame of a JSON session → close 1007', async () => {
  const c = await TestClient.connect(gw);
  c.ws.send(Buffer.from([0x7b, 0xff, 0x7d]), { binary: true });
  assert.equal((await c.closed).code, 1007);
});

test('upgrade on another path → 404; plain HTTP without upgrade on /ws → 404 JSON', async () => {
  const port = gw.server!.address.port;
  const res = await fetch(`http://127.0.0.1:${port}/nope`);
  assert.equal(res.status, 404);
  const c = new TestClient(`ws://127.0.0.1:${port}/other`);
  const closed = await c.closed;
  assert.equal(closed.code, 1006);
  await bystanderStillServed('after 404');
});

test('garbage instead of an HTTP request does not disturb the server', async () => {
  const port = gw.server!.address.port;
  const sock = net.connect(port, '127.0.0.1');
  await new Promise((r) => sock.once('connect', r));
  sock.write('\x00\x01\x02 not http at all\r\n\r\n');
  const answer = await new Promise<string>((resolve) => {
    let out = '';
    sock.on('data', (d) => (out += d.toString()));
    sock.on('close', () => resolve(out));
  });
  assert.match(answer, /^HTTP\/1\.1 400/);
  await bystanderStillServed('after garbage');
});
