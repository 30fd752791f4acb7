// Server mode end to end over real sockets: pub/sub with wildcards, reply-to routing, broadcast,
// request/reply (success, timeout, no responders), MessagePack sessions.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { pack } from 'msgpackr';
import { startGateway, TestClient, b64, unb64 } from './helpers.ts';

const gw = await startGateway({ REQUEST_TIMEOUT_MS: '200' });
after(() => gw.shutdown());

test('welcome frame names an unguessable session id and its reply subject', async () => {
  const a = await TestClient.connect(gw);
  const b = await TestClient.connect(gw);
  assert.equal(a.welcome.protocol, 'wsbridge.v1');
  assert.match(String(a.welcome.session), /^[A-Za-z0-9_-]{22}$/); // 16 random bytes, base64url
  assert.notEqual(a.welcome.session, b.welcome.session);
  // The reply subject is node-scoped, with its own 128-bit token: not the session id.
  assert.match(String(a.welcome.reply_to), /^_WSB\.S\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{22}$/);
  assert.ok(!String(a.welcome.reply_to).includes(String(a.welcome.session)));
  assert.notEqual(a.welcome.reply_to, b.welcome.reply_to);
  a.close();
  b.close();
});

test('two clients exchange pub/sub with * and > wildcards', async () => {
  const pub = await TestClient.connect(gw);
  const star = await TestClient.connect(gw);
  const tail = await TestClient.connect(gw);
  assert.deepEqual(await star.call({ op: 'sub', subject: 'chat.*', id: '1' }), { op: 'ok', id: '1' });
  assert.deepEqual(await tail.call({ op: 'sub', subject: 'chat.>', id: '1' }), { op: 'ok', id: '1' });

  pub.send({ subject: 'chat.room1', body: b64('hello') });
  const m1 = await star.next((f) => f.subject === 'chat.room1');
  assert.equal(unb64(m1.body), 'hello');
  assert.equal(m1.reply_to, pub.welcome.reply_to, 'publish without reply_to gets the sender reply subject');
  await tail.next((f) => f.subject === 'chat.room1');

  pub.send({ subject: 'chat.room1.thread', text: 'deep' });
  const m2 = await tail.next((f) => f.subject === 'chat.room1.thread');
  assert.equal(unb64(m2.body), 'deep');

  // Unsubscribe, then a marker publish proves nothing else arrived for `chat.*`.
  assert.equal((await star.call({ op: 'unsub', subject: 'chat.*', id: '2' })).op, 'ok');
  await star.call({ op: 'sub', subject: 'marker', id: '3' });
  pub.send({ subject: 'chat.room2', text: 'after unsub' });
  pub.send({ subject: 'marker', text: 'm' });
  await star.next((f) => f.subject === 'marker');
  assert.equal(star.frames.filter((f) => f.subject === 'chat.room2').length, 0);
  assert.equal(star.frames.filter((f) => f.subject === 'chat.room1.thread').length, 0, '* matches one token only');

  const err = await star.call({ op: 'unsub', subject: 'never.subscribed', id: '4' });
  assert.equal(err.code, 'not_subscribed');
  for (const c of [pub, star, tail]) c.close();
});

test('a message to a reply subject reaches exactly that session', async () => {
  const asker = await TestClient.connect(gw);
  const other = await TestClient.connect(gw);
  const responder = await TestClient.connect(gw);
  await responder.call({ op: 'sub', subject: 'svc.echo', id: 's' });
  await other.call({ op: 'sub', subject: '>', id: 's' }); // even `>` must not see other sessions' replies

  asker.send({ subject: 'svc.echo', text: 'ping' });
  const got = await responder.next((f) => f.subject === 'svc.echo');
  responder.send({ subject: got.reply_to, text: 'pong' });
  const reply = await asker.next((f) => f.subject === asker.welcome.reply_to);
  assert.equal(unb64(reply.body), 'pong');

  await other.next((f) => f.subject === 'svc.echo'); // it saw the public publish…
  await other.call({ op: 'ping', id: 'sync' });
  assert.equal(other.frames.filter((f) => String(f.subject).startsWith('_WSB.')).length, 0, '…but never the reply');
  for (const c of [asker, other, responder]) c.close();
});

test('broadcast reaches every session', async () => {
  const clients = await Promise.all(Array.from({ length: 5 }, () => TestClient.connect(gw)));
  const n = gw.broadcast({ subject: 'announce', body: Buffer.from('all hands') });
  assert.ok(n >= 5);
  for (const c of clients) {
    const m = await c.next((f) => f.subject === 'announce');
    assert.equal(unb64(m.body), 'all hands');
  }
  for (const c of clients) c.close();
});

test('request/reply: success, timeout and no responders', async () => {
  const client = await TestClient.connect(gw);
  const svc = await TestClient.connect(gw);
  await svc.call({ op: 'sub', subject: 'svc.time', id: 's' });

  client.send({ op: 'req', id: '7', subject: 'svc.time', body: b64('what time'), timeout_ms: 2000 });
  const req = await svc.next((f) => f.subject === 'svc.time');
  assert.equal(unb64(req.body), 'what time');
  svc.send({ subject: req.reply_to, text: 'noon' });
  const res = await client.next((f) => f.id === '7');
  assert.equal(res.op, 'res');
  assert.equal(unb64(res.body), 'noon');

  await svc.call({ op: 'sub', subject: 'svc.silent', id: 's2' });
  const timeout = await client.call({ op: 'req', id: '8', subject: 'svc.silent', text: 'x', timeout_ms: 100 });
  assert.deepEqual([timeout.op, timeout.code], ['error', 'timeout']);

  const none = await client.call({ op: 'req', id: '9', subject: 'svc.nobody', text: 'x' });
  assert.deepEqual([none.op, none.code], ['error', 'no_responders']);
  client.close();
  svc.close();
});

test('publish with an id is acknowledged; ping answers pong', async () => {
  const c = await TestClient.connect(gw);
  assert.deepEqual(await c.call({ subject: 'x.y', text: 'a', id: 'p1' }), { op: 'ok', id: 'p1' });
  c.send({ op: 'ping', id: 'z' });
  assert.deepEqual(await c.next((f) => f.op === 'pong'), { op: 'pong', id: 'z' });
  c.close();
});

test('MessagePack sessions speak the same shapes in binary frames, and meet JSON sessions', async () => {
  const mp = await TestClient.connect(gw, 'wsbridge.v1.msgpack');
  const js = await TestClient.connect(gw, 'wsbridge.v1.json');
  assert.equal(mp.ws.protocol, 'wsbridge.v1.msgpack');
  assert.equal(js.ws.protocol, 'wsbridge.v1.json');
  assert.equal(mp.welcome.op, 'welcome');
  mp.ws.send(pack({ op: 'sub', subject: 'mix.>', id: '1' }));
  assert.equal((await mp.next((f) => f.id === '1')).op, 'ok');
  js.send({ subject: 'mix.a', body: b64('from json') });
  const m = await mp.next((f) => f.subject === 'mix.a');
  assert.ok(m.body instanceof Uint8Array);
  assert.equal(Buffer.from(m.body as Uint8Array).toString(), 'from json');

  await js.call({ op: 'sub', subject: 'back', id: '2' });
  mp.ws.send(pack({ subject: 'back', body: Buffer.from([0, 1, 2, 255]) }));
  const back = await js.next((f) => f.subject === 'back');
  assert.deepEqual([...Buffer.from(String(back.body), 'base64')], [0, 1, 2, 255]);

  mp.ws.send(pack({ subject: 'back', body: 'not bin' }));
  assert.equal((await mp.next((f) => f.op === 'error')).code, 'bad_request');
  mp.ws.send(Buffer.from([0x82, 0xa1])); // truncated map
  assert.equal((await mp.next((f) => f.op === 'error')).code, 'bad_msgpack');
  mp.close();
  js.close();
});

test('a burst of fan-out frames (framed once, written corked per tick) arrives whole and in order for JSON and MessagePack subscribers', async () => {
  const json = await TestClient.connect(gw);
  const mp = await TestClient.connect(gw, 'wsbridge.v1.msgpack');
  const publisher = await TestClient.connect(gw);
  await json.call({ op: 'sub', subject: 'burst.*', id: 's' });
  mp.ws.send(pack({ op: 'sub', subject: 'burst.*', id: 's' }));
  await mp.next((f) => f.op === 'ok' && f.id === 's');
  // One socket write of 300 publishes: the gateway routes them all in one tick.
  const frames = Array.from({ length: 300 }, (_, i) => JSON.stringify({ subject: `burst.${i % 3}`, text: `m${i}-${'z'.repeat(i * 7)}` }));
  (publisher.ws as unknown as { _socket: { write(b: Buffer): void } })._socket.write(Buffer.concat(frames.map((f) => maskedTextFrame(f))));
  for (const c of [json, mp]) {
    for (let i = 0; i < 300; i++) {
      const m = await c.next((f) => typeof f.subject === 'string' && f.subject.startsWith('burst.'));
      assert.equal(m.subject, `burst.${i % 3}`);
      const body = c === mp ? Buffer.from(m.body as Uint8Array).toString() : unb64(m.body);
      assert.equal(body, `m${i}-${'z'.repeat(i * 7)}`);
    }
  }
  for (const c of [json, mp, publisher]) c.close();
});

test('fan-out frames batched per tick keep their order with the session\'s other frames, and sessions with different frames get their own', async () => {
  const both = await TestClient.connect(gw); // subscribes, publishes and pings: its batch meets its pongs
  const same = await TestClient.connect(gw); // the same frames as `both` (a joined batch shared with it)
  const one = await TestClient.connect(gw); // only order.1: different frames, its own batch
  const zero = await TestClient.connect(gw); // only order.0: the same first frame as `both`, then others
  await both.call({ op: 'sub', subject: 'order.*', id: 's' });
  await same.call({ op: 'sub', subject: 'order.*', id: 's' });
  await one.call({ op: 'sub', subject: 'order.1', id: 's' });
  await zero.call({ op: 'sub', subject: 'order.0', id: 's' });
  const seen = new Map<TestClient, string[]>([[both, []], [same, []], [one, []], [zero, []]]);
  for (const [c, list] of seen) {
    c.ws.on('message', (d: Buffer) => {
      const f = JSON.parse(d.toString()) as { subject?: string; body?: string; op?: string; id?: string };
      if (f.subject?.startsWith('order.')) list.push(`${f.subject}:${unb64(f.body)}`);
      else if (f.op === 'pong') list.push(`pong:${f.id}`);
    });
  }
  // One socket write: the gateway handles all 120 frames in one tick.
  const frames: string[] = [];
  for (let i = 0; i < 40; i++) {
    frames.push(JSON.stringify({ subject: `order.${i % 2}`, text: `m${i}` }));
    frames.push(JSON.stringify({ subject: `order.${i % 2}`, text: `n${i}-${'y'.repeat(i * 40)}` }));
    frames.push(JSON.stringify({ op: 'ping', id: `p${i}` }));
  }
  (both.ws as unknown as { _socket: { write(b: Buffer): void } })._socket.write(Buffer.concat(frames.map((f) => maskedTextFrame(f))));
  const expectBoth: string[] = [];
  const expectSame: string[] = [];
  const expectOne: string[] = [];
  const expectZero: string[] = [];
  for (let i = 0; i < 40; i++) {
    const msgs = [`order.${i % 2}:m${i}`, `order.${i % 2}:n${i}-${'y'.repeat(i * 40)}`];
    expectBoth.push(...msgs, `pong:p${i}`);
    expectSame.push(...msgs);
    (i % 2 === 1 ? expectOne : expectZero).push(...msgs);
  }
  await both.next((f) => f.op === 'pong' && f.id === 'p39');
  await same.next((f) => f.subject === 'order.1' && unb64(f.body).startsWith('n39-'));
  await one.next((f) => f.subject === 'order.1' && unb64(f.body).startsWith('n39-'));
  await zero.next((f) => f.subject === 'order.0' && unb64(f.body).startsWith('n38-'));
  assert.deepEqual(seen.get(both), expectBoth);
  assert.deepEqual(seen.get(same), expectSame);
  assert.deepEqual(seen.get(one), expectOne);
  assert.deepEqual(seen.get(zero), expectZero);
  for (const c of [both, same, one, zero]) c.close();
});

test('messages delivered in the tick a session is closed reach it before the close frame', async () => {
  const c = await TestClient.connect(gw);
  await c.call({ op: 'sub', subject: 'last.words', id: 's' });
  const got: string[] = [];
  c.ws.on('message', (d: Buffer) => {
    const f = JSON.parse(d.toString()) as { subject?: string; body?: string };
    if (f.subject === 'last.words') got.push(unb64(f.body));
  });
  // Five publishes it is subscribed to, then a binary frame that is not UTF-8 (closed with 1007),
  // all in one write: the gateway batches the five and closes in the same tick.
  const pubs = [1, 2, 3, 4, 5].map((i) => maskedTextFrame(JSON.stringify({ subject: 'last.words', text: `w${i}` })));
  const bad = Buffer.from([0x82, 0x82, 1, 2, 3, 4, 0xff ^ 1, 0xfe ^ 2]); // masked binary frame: ff fe
  (c.ws as unknown as { _socket: { write(b: Buffer): void } })._socket.write(Buffer.concat([...pubs, bad]));
  assert.equal((await c.closed).code, 1007);
  assert.deepEqual(got, ['w1', 'w2', 'w3', 'w4', 'w5']);
});

/** Sends frames in one socket write, so that the gateway handles them all in one tick. */
function inOneWrite(c: TestClient, frames: object[]): void {
  (c.ws as unknown as { _socket: { write(b: Buffer): void } })._socket.write(Buffer.concat(frames.map((f) => maskedTextFrame(JSON.stringify(f)))));
}

/** What a client receives from now on, in order: messages as subject:text, other frames as op:id. */
function record(c: TestClient): string[] {
  const seen: string[] = [];
  c.ws.on('message', (d: Buffer) => {
    const f = JSON.parse(d.toString()) as { subject?: string; body?: string; op?: string; id?: string };
    seen.push(f.op === undefined ? `${f.subject}:${unb64(f.body)}` : `${f.op}:${f.id ?? ''}`);
  });
  return seen;
}

test('a burst held for one subject\'s subscribers keeps its order with messages of other subjects, subscription changes and answers', async () => {
  const c = await TestClient.connect(gw);
  const other = await TestClient.connect(gw); // held.c has a member before c subscribes to it
  await other.call({ op: 'sub', subject: 'held.c', id: 'c' });
  await c.call({ op: 'sub', subject: 'held.a', id: 'a' });
  await c.call({ op: 'sub', subject: 'held.b', id: 'b' });
  const seen = record(c);
  inOneWrite(c, [
    { subject: 'held.a', text: '1' }, { subject: 'held.b', text: '2' }, { subject: 'held.a', text: '3' }, { subject: 'held.a', text: '4' },
    { op: 'ping', id: 'p' }, { subject: 'held.a', text: '5' }, { subject: 'held.b', text: '6' },
    // Published before the unsubscribe: delivered. After it: not.
    { subject: 'held.a', text: '7' }, { op: 'unsub', subject: 'held.a', id: 'u' }, { subject: 'held.a', text: '8' },
    // Published before the subscription: not delivered. After it: delivered.
    { subject: 'held.c', text: '9' }, { op: 'sub', subject: 'held.c', id: 'c' }, { subject: 'held.c', text: '10' },
    { op: 'ping', id: 'end' },
  ]);
  await c.next((f) => f.op === 'pong' && f.id === 'end');
  assert.deepEqual(seen, ['held.a:1', 'held.b:2', 'held.a:3', 'held.a:4', 'pong:p', 'held.a:5', 'held.b:6', 'held.a:7', 'ok:u', 'ok:c', 'held.c:10', 'pong:end']);
  for (const text of ['9', '10']) assert.equal(unb64((await other.next((f) => f.subject === 'held.c')).body), text);
  c.close();
  other.close();
});

test('messages fanned out in one burst each grant their answer', async () => {
  const asker = await TestClient.connect(gw);
  const answerer = await TestClient.connect(gw);
  await answerer.call({ op: 'sub', subject: 'burst.ask', id: 's' });
  inOneWrite(asker, [1, 2, 3].map((i) => ({ subject: 'burst.ask', text: `q${i}` })));
  const asks = [];
  for (let i = 0; i < 3; i++) asks.push(await answerer.next((f) => f.subject === 'burst.ask'));
  assert.ok(asks.every((m) => m.reply_to === asker.welcome.reply_to));
  // REPLY_GRANT_MAX_REPLIES is 1: three messages, three answers, not four.
  for (let i = 1; i <= 3; i++) assert.deepEqual(await answerer.call({ subject: String(asker.welcome.reply_to), text: `a${i}`, id: `r${i}` }), { op: 'ok', id: `r${i}` });
  for (let i = 1; i <= 3; i++) assert.equal(unb64((await asker.next((f) => f.subject === asker.welcome.reply_to)).body), `a${i}`);
  const fourth = await answerer.call({ subject: String(asker.welcome.reply_to), text: 'a4', id: 'r4' });
  assert.equal(fourth.op, 'error');
  assert.equal(fourth.code, 'invalid_subject');
  asker.close();
  answerer.close();
});

/** A client text frame (masked, as RFC 6455 requires of clients), to batch several in one write. */
function maskedTextFrame(text: string): Buffer {
  const payload = Buffer.from(text);
  const len = payload.length;
  const header = len < 126 ? Buffer.from([0x81, 0x80 | len]) : len < 65536 ? Buffer.from([0x81, 0x80 | 126, len >> 8, len & 255]) : assert.fail('too long');
  const mask = Buffer.from([1, 2, 3, 4]);
  const masked = Buffer.from(payload.map((b, i) => b ^ mask[i % 4]!));
  return Buffer.concat([header, mask, masked]);
}
