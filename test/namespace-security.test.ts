// The subject namespace is a security boundary: hostile clients over real sockets try to reach
// what they were not given (other sessions' reply subjects, request inboxes, reserved NATS and
// gateway subjects, other principals' durables, other tenants), with JSON and MessagePack frames,
// with a restricted JWT, and through a client-mode remote. Every attempt is refused with its
// documented error while a well-behaved session's traffic keeps flowing. The same assertions run
// against the in-memory bus and against two nodes on a real nats-server.
import { test, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { pack } from 'msgpackr';
import { SignJWT } from 'jose';
import { WebSocketServer } from 'ws';
import { connect as natsConnect } from '@nats-io/transport-node';
import { startGateway, TestClient, b64, unb64, once } from './helpers.ts';
import type { Frame } from './helpers.ts';
import { startNats } from './nats-helpers.ts';
import type { Gateway } from '../src/gateway/gateway.ts';
import { subjectError } from '../src/protocol/subject.ts';
import { ok } from '../src/gateway/messaging.ts';

const SECRET = 'namespace-suite-secret-of-enough-length!';
const jwt = (claims: Record<string, unknown>) => new SignJWT(claims).setProtectedHeader({ alg: 'HS256' }).setExpirationTime('10m').sign(new TextEncoder().encode(SECRET));

const nats = await startNats();
after(() => nats.stop());

/** Waits `ms` for frames matching `pred` and returns them (asserting absence needs a window). */
async function framesWithin(c: TestClient, ms: number, pred: (f: Frame) => boolean): Promise<Frame[]> {
  try {
    return [await c.next(pred, ms)];
  } catch {
    return [];
  }
}

for (const bus of ['memory', 'nats'] as const) {
  describe(`${bus} bus`, () => {
    const gws: Gateway[] = [];
    let gw: Gateway; // where the hostile clients connect
    let other: Gateway; // with NATS: a second node; in memory: the same one
    const start = async (extra: Record<string, string> = {}) => {
      const g = await startGateway({ JWT_SECRET: SECRET, ADMIN_TOKEN: 'admin-secret', REPLY_GRANT_TTL_MS: '400', ...(bus === 'nats' ? { NATS_URL: nats.url } : {}), ...extra });
      gws.push(g);
      return g;
    };
    after(async () => {
      for (const g of gws) await g.shutdown();
    });
    const client = async (g: Gateway, claims: Record<string, unknown> = {}, protocols?: string) => TestClient.connect(`${g.server!.url}?token=${await jwt(claims)}`, protocols);

    test('setup', async () => {
      gw = await start();
      other = bus === 'nats' ? await start() : gw;
    });

    /** A publish on node `other` reaches a subscriber on `gw`: the bystanders' traffic flows. */
    async function trafficFlows(tag: string): Promise<void> {
      const sub = await client(gw);
      const pub = await client(other);
      try {
        assert.equal((await sub.call({ op: 'sub', subject: 'good.>', id: 's' })).op, 'ok');
        if (bus === 'nats') await new Promise((r) => setTimeout(r, 50)); // NATS interest propagation
        pub.send({ subject: 'good.news', text: tag });
        const got = await sub.next((f) => f.subject === 'good.news');
        assert.equal(unb64(got.body), tag);
      } finally {
        sub.close();
        pub.close();
      }
    }

    test('welcome: the reply subject carries 128 random bits and not the session id', async () => {
      const c = await client(gw);
      const reply = String(c.welcome.reply_to);
      assert.match(reply, /^_WSB\.S\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{22}$/);
      assert.ok(!reply.includes(String(c.welcome.session)), 'the session id must not be in the reply subject');
      c.close();
    });

    test("another session's reply subject (and its targeted form) cannot be published to, even with a chat-only JWT", async () => {
      const victim = await client(other);
      const attacker = await client(gw, { pub: ['chat.>'], subs: ['chat.>'] });
      const open = await client(gw);
      const reply = String(victim.welcome.reply_to);
      for (const c of [attacker, open]) {
        for (const subject of [reply, `${reply}.chat.x`, `_WSB.S.${victim.welcome.session}`, `_WSB.S.${victim.welcome.session}.chat.x`]) {
          const r = await c.call({ subject, text: 'forged', id: 'f' });
          assert.equal(r.code, 'invalid_subject', `${subject}: ${JSON.stringify(r)}`);
        }
        // MessagePack frames follow the same rule.
      }
      const mp = await client(gw, {}, 'wsbridge.v1.msgpack');
      mp.ws.send(pack({ subject: reply, body: Buffer.from('forged'), id: 'm' }));
      assert.equal((await mp.next((f) => f.id === 'm')).code, 'invalid_subject');
      assert.deepEqual(await framesWithin(victim, 200, (f) => f.op === undefined), []);
      for (const c of [victim, attacker, open, mp]) c.close();
      await trafficFlows('after reply forgery');
    });

    test('request inboxes: another session cannot answer a request first; the requester gets the genuine answer', async () => {
      // A responder that answers after a delay, leaving a window for a forger.
      const responder = await client(other);
      assert.equal((await responder.call({ op: 'sub', subject: 'svc.slow', id: 's' })).op, 'ok');
      const attacker = await client(gw);
      const victim = await client(gw);
      if (bus === 'nats') await new Promise((r) => setTimeout(r, 50));
      // The attacker learns what an inbox looks like from a request of its own.
      attacker.send({ op: 'req', id: 'mine', subject: 'svc.slow', text: 'x', timeout_ms: 2000 });
      const mine = await responder.next((f) => f.subject === 'svc.slow');
      responder.send({ subject: mine.reply_to, text: 'yours' });
      const res = await attacker.next((f) => f.id === 'mine');
      assert.equal(res.op, 'res');
      const inbox = String(res.subject);
      assert.match(inbox, /^_WSB\.R\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{22}$/);
      // The victim's request is in flight; the attacker tries the inbox it saw, its node prefix
      // with guessed tokens, and wildcards over the inbox space.
      victim.send({ op: 'req', id: 'v', subject: 'svc.slow', text: 'q', timeout_ms: 3000 });
      const theirs = await responder.next((f) => f.subject === 'svc.slow');
      const nodePrefix = inbox.slice(0, inbox.lastIndexOf('.') + 1);
      for (const subject of [inbox, `${nodePrefix}0`, `${nodePrefix}1`, `${nodePrefix}AAAAAAAAAAAAAAAAAAAAAA`, String(theirs.reply_to)]) {
        assert.equal((await attacker.call({ subject, text: 'forged', id: 'f' })).code, 'invalid_subject', subject);
      }
      for (const pattern of ['_WSB.R.>', `${nodePrefix}*`, '_WSB.>', '_INBOX.>']) {
        assert.equal((await attacker.call({ op: 'sub', subject: pattern, id: 'p' })).code, 'invalid_subject', pattern);
      }
      responder.send({ subject: theirs.reply_to, text: 'genuine' });
      const got = await victim.next((f) => f.id === 'v');
      assert.equal(got.op, 'res');
      assert.equal(unb64(got.body), 'genuine');
      // The responder's grant was for one answer: a second is refused.
      assert.equal((await responder.call({ subject: theirs.reply_to, text: 'again', id: 'again' })).code, 'invalid_subject');
      for (const c of [responder, attacker, victim]) c.close();
    });

    test('reserved subjects ($JS, $KV, $SYS, _INBOX, _WSB) cannot be published, subscribed or requested, even by a pub:[">"] token', async () => {
      const c = await client(gw, { pub: ['>'], subs: ['>'] });
      for (const subject of ['$JS.API.STREAM.LIST', '$JS.API.STREAM.DELETE.WSBRIDGE_HISTORY', '$KV.wsbridge_presence.x', '$SYS.REQ.SERVER.PING', '$O.x', '_INBOX.abc', '_WSB.B.chat', '_WSB.RAW.other.x', '_WSB.N.x.close', '_WSB.T.x.y.z', '_WSB', '_INBOX']) {
        assert.equal((await c.call({ subject, text: 'x', id: 'p' })).code, 'invalid_subject', `pub ${subject}`);
        assert.equal((await c.call({ op: 'req', subject, text: 'x', id: 'r' })).code, 'invalid_subject', `req ${subject}`);
      }
      for (const pattern of ['$JS.>', '$KV.>', '$KV.wsbridge_presence.>', '$SYS.>', '_INBOX.>', '_WSB.>', '_WSB.S.*', '$>'.replace('>', '*')]) {
        assert.equal((await c.call({ op: 'sub', subject: pattern, id: 's' })).code, 'invalid_subject', `sub ${pattern}`);
      }
      // With history/acked options too.
      assert.equal((await c.call({ op: 'sub', subject: '$JS.>', since: 1, id: 's1' })).code, 'invalid_subject');
      assert.equal((await c.call({ op: 'sub', subject: '_INBOX.>', ack: true, durable: 'd', id: 's2' })).code, 'invalid_subject');
      // reply_to naming someone else's reply subject, or a reserved subject, is refused too.
      const victim = await client(gw);
      assert.equal((await c.call({ subject: 'chat.x', reply_to: victim.welcome.reply_to, text: 'x', id: 'rt1' })).code, 'invalid_subject');
      assert.equal((await c.call({ subject: 'chat.x', reply_to: '$JS.API.STREAM.DELETE.X', text: 'x', id: 'rt2' })).code, 'invalid_subject');
      assert.equal((await c.call({ subject: 'chat.x', reply_to: c.welcome.reply_to, text: 'x', id: 'rt3' })).op, 'ok');
      c.close();
      victim.close();
      await trafficFlows('after reserved attempts');
    });

    test('a ">" subscriber never sees reserved traffic: replies, inboxes, broadcasts in flight, NATS API and KV traffic', async () => {
      const spy = await client(gw);
      assert.equal((await spy.call({ op: 'sub', subject: '>', id: 's' })).op, 'ok');
      assert.equal((await spy.call({ op: 'sub', subject: '*.*.*', id: 's2' })).op, 'ok');
      const a = await client(gw);
      const b = await client(other);
      assert.equal((await b.call({ op: 'sub', subject: 'ping.x', id: 's' })).op, 'ok');
      if (bus === 'nats') await new Promise((r) => setTimeout(r, 50));
      a.send({ op: 'req', id: 'q', subject: 'ping.x', text: 'q', timeout_ms: 2000 });
      const q = await b.next((f) => f.subject === 'ping.x');
      b.send({ subject: q.reply_to, text: 'answer' });
      assert.equal((await a.next((f) => f.id === 'q')).op, 'res');
      // A reply to a's reply subject (b was handed it by a's publish).
      a.send({ subject: 'ping.x', text: 'hello' });
      const hello = await b.next((f) => f.subject === 'ping.x' && unb64(f.body) === 'hello');
      b.send({ subject: hello.reply_to, text: 'direct' });
      await a.next((f) => f.subject === hello.reply_to && unb64(f.body) === 'direct');
      if (bus === 'nats') {
        // Other NATS clients' traffic in reserved space (JetStream API, KV, inboxes).
        const nc = await natsConnect({ servers: nats.url });
        nc.publish('$KV.wsbridge_presence.planted', 'x');
        nc.publish('_INBOX.somebody.1', 'x');
        await nc.request('$JS.API.INFO', '', { timeout: 1000 }).catch(() => undefined);
        await nc.flush();
        await nc.close();
      }
      const seen = await framesWithin(spy, 300, (f) => f.op === undefined && typeof f.subject === 'string' && /^(_|\$)/.test(String(f.subject)));
      assert.deepEqual(seen, []);
      // The spy did see the user subjects.
      assert.ok(spy.frames.some((f) => f.subject === 'ping.x'));
      for (const c of [spy, a, b]) c.close();
    });

    test('reply subjects are capabilities: one answer, within REPLY_GRANT_TTL_MS, only by who received the message', async () => {
      const asker = await client(gw);
      const answerer = await client(other);
      const bystander = await client(other);
      assert.equal((await answerer.call({ op: 'sub', subject: 'ask.me', id: 's' })).op, 'ok');
      if (bus === 'nats') await new Promise((r) => setTimeout(r, 50));
      asker.send({ subject: 'ask.me', text: 'q1' });
      const q1 = await answerer.next((f) => f.subject === 'ask.me');
      assert.equal(q1.reply_to, asker.welcome.reply_to);
      // The bystander never received it: refused.
      assert.equal((await bystander.call({ subject: q1.reply_to, text: 'x', id: 'b' })).code, 'invalid_subject');
      assert.equal((await answerer.call({ subject: q1.reply_to, text: 'a1', id: 'a1' })).op, 'ok');
      await asker.next((f) => f.subject === asker.welcome.reply_to && unb64(f.body) === 'a1');
      assert.equal((await answerer.call({ subject: q1.reply_to, text: 'a2', id: 'a2' })).code, 'invalid_subject');
      // Past the TTL (400 ms here) the grant is gone. Waiting is the behaviour under test.
      asker.send({ subject: 'ask.me', text: 'q2' });
      const q2 = await answerer.next((f) => f.subject === 'ask.me' && unb64(f.body) === 'q2');
      await new Promise((r) => setTimeout(r, 600));
      assert.equal((await answerer.call({ subject: q2.reply_to, text: 'late', id: 'late' })).code, 'invalid_subject');
      for (const c of [asker, answerer, bystander]) c.close();
    });

    test('reply_to on a user subject the sender may not publish to is refused (no deputy publishes for it)', async () => {
      const c = await client(gw, { pub: ['chat.>'] });
      assert.equal((await c.call({ subject: 'chat.x', reply_to: 'admin.cmd', text: 'x', id: 'r' })).code, 'permission_denied');
      assert.equal((await c.call({ subject: 'chat.x', reply_to: 'chat.replies', text: 'x', id: 'r2' })).op, 'ok');
      c.close();
    });

    test('subjects with Unicode whitespace, control or invisible characters are refused in both codecs', async () => {
      const json = await client(gw);
      const mp = await client(gw, {}, 'wsbridge.v1.msgpack');
      for (const ch of ['\u0085', '\u00a0', '\u2028', '\u2029', '\u200b', '\u3000', '\u202e', '\ufeff', '\u0000', '\t']) {
        const subject = `chat${ch}x`;
        assert.notEqual(subjectError(subject, false), null, JSON.stringify(subject));
        assert.equal((await json.call({ subject, text: 'x', id: 'j' })).code, 'invalid_subject', JSON.stringify(subject));
        mp.ws.send(pack({ op: 'sub', subject, id: 'm' }));
        assert.equal((await mp.next((f) => f.id === 'm')).code, 'invalid_subject', JSON.stringify(subject));
      }
      // Letters outside ASCII stay valid.
      assert.equal((await json.call({ subject: 'chat.café.日本', text: 'x', id: 'ok' })).op, 'ok');
      json.close();
      mp.close();
    });

    test('an in-band refresh to a token with narrower subs ends the subscriptions it no longer allows', async () => {
      const c = await client(gw, { sub: 'refresh-user', subs: ['a.>', 'b.>'] });
      assert.equal((await c.call({ op: 'sub', subject: 'a.x', id: '1' })).op, 'ok');
      assert.equal((await c.call({ op: 'sub', subject: 'b.x', id: '2' })).op, 'ok');
      assert.equal((await c.call({ op: 'auth', token: await jwt({ sub: 'refresh-user', subs: ['a.>'] }), id: 'r' })).op, 'ok');
      const ended = c.frames.find((f) => f.op === 'error' && f.subject === 'b.x') ?? (await c.next((f) => f.op === 'error' && f.subject === 'b.x'));
      assert.equal(ended.code, 'permission_denied');
      const pub = await client(gw);
      pub.send({ subject: 'b.x', text: 'no' });
      pub.send({ subject: 'a.x', text: 'yes' });
      const got = await c.next((f) => f.op === undefined);
      assert.equal(unb64(got.body), 'yes');
      // A refresh naming another principal is refused; the old identity stays.
      assert.equal((await c.call({ op: 'auth', token: await jwt({ sub: 'someone-else' }), id: 'r2' })).code, 'unauthorized');
      c.close();
      pub.close();
    });

    test('in-band refresh is no brute-force channel: the fifth bad token closes the session with 1008', async () => {
      const c = await client(gw, { sub: 'guesser' });
      for (let i = 0; i < 4; i++) assert.equal((await c.call({ op: 'auth', token: `guess-${i}`, id: `g${i}` })).code, 'unauthorized');
      c.send({ op: 'auth', token: 'guess-4', id: 'g4' });
      const closed = await c.closed;
      assert.equal(closed.code, 1008);
      assert.equal(closed.reason, 'authentication failed');
    });

    test('MAX_SUBSCRIPTIONS counts every kind of subscription', async () => {
      const g = await start({ MAX_SUBSCRIPTIONS: '2', ...(bus === 'nats' ? { HISTORY_SUBJECTS: 'hist.>' } : {}) });
      const c = await client(g, { sub: 'limit-user' });
      assert.equal((await c.call({ op: 'sub', subject: 'x.1', id: '1' })).op, 'ok');
      assert.equal((await c.call({ op: 'sub', subject: 'x.2', id: '2' })).op, 'ok');
      assert.equal((await c.call({ op: 'sub', subject: 'hist.a', since: 0, id: '3' })).code, 'limit_exceeded');
      assert.equal((await c.call({ op: 'sub', subject: 'hist.b', ack: true, durable: 'd', id: '4' })).code, 'limit_exceeded');
      // The same pattern again is no new subscription.
      assert.equal((await c.call({ op: 'sub', subject: 'x.1', id: '5' })).op, 'ok');
      c.close();
    });

    test('the operator API and components cannot reach reserved subjects either', async () => {
      const http = gw.server!.url.replace('ws://', 'http://').replace(/\/ws$/, '');
      const post = (path: string, body: unknown) => fetch(http + path, { method: 'POST', headers: { authorization: 'Bearer admin-secret' }, body: JSON.stringify(body) });
      for (const subject of ['$JS.API.STREAM.DELETE.WSBRIDGE_HISTORY', '$KV.wsbridge_presence.x', '_WSB.B.x']) {
        const r = await post('/api/publish', { subject, text: 'x' });
        assert.equal(r.status, 400, subject);
        assert.equal(((await r.json()) as { error: { code: string } }).error.code, 'invalid_subject');
        assert.equal((await post('/api/broadcast', { subject, text: 'x' })).status, 400);
      }
      // A component's consumer: reserved subjects refused; a reply subject only once handed over.
      const consumer = gw.linkTarget('probe');
      const r1 = consumer.publish({ subject: '$JS.API.STREAM.LIST', body: new Uint8Array(), replyTo: null });
      assert.equal(r1.tag, 'err');
      assert.match(String(r1.val), /^invalid_subject/);
      const s = await client(gw);
      const r2 = consumer.publish({ subject: String(s.welcome.reply_to), body: Buffer.from('x'), replyTo: null });
      assert.equal(r2.tag, 'err');
      const r3 = await consumer.request('$JS.API.INFO', new Uint8Array(), 500);
      assert.equal(r3.tag, 'err');
      // Handed over through its handler, the component may answer once.
      let handed: string | undefined;
      gw.linkSource('probe', { handleMessage: (m) => { handed = m.replyTo ?? undefined; return ok(undefined); } }, ['probe.in']);
      if (bus === 'nats') await new Promise((r) => setTimeout(r, 50));
      s.send({ subject: 'probe.in', text: 'hi' });
      for (let i = 0; i < 100 && handed === undefined; i++) await new Promise((r) => setTimeout(r, 10));
      assert.equal(handed, s.welcome.reply_to);
      assert.equal(consumer.publish({ subject: handed!, body: Buffer.from('answer'), replyTo: null }).tag, 'ok');
      await s.next((f) => f.subject === handed && unb64(f.body) === 'answer');
      assert.equal(consumer.publish({ subject: handed!, body: Buffer.from('twice'), replyTo: null }).tag, 'err');
      await gw.deleteLink('probe');
      s.close();
    });

    test('static tokens from the config file carry permissions and a principal', async () => {
      const { writeFileSync, mkdtempSync } = await import('node:fs');
      const { join } = await import('node:path');
      const { tmpdir } = await import('node:os');
      const dir = mkdtempSync(join(tmpdir(), 'wsb-tokens-'));
      const file = join(dir, 'c.json');
      writeFileSync(file, JSON.stringify({ tokens: [{ name: 'kiosk', token: 'kiosk-token-0123456789', pub: ['kiosk.>'], subs: ['news.*'] }, { name: 'ops', token: 'ops-token-0123456789ab' }] }));
      const { loadConfig } = await import('../src/config/load.ts');
      const { Gateway } = await import('../src/gateway/gateway.ts');
      const g = await Gateway.start(loadConfig({ file, flags: { LISTEN: '127.0.0.1:0', ...(bus === 'nats' ? { NATS_URL: nats.url } : {}) }, env: {} }));
      gws.push(g);
      const kiosk = await TestClient.connect(`${g.server!.url}?token=kiosk-token-0123456789`);
      assert.equal((await kiosk.call({ subject: 'kiosk.1', text: 'x', id: '1' })).op, 'ok');
      assert.equal((await kiosk.call({ subject: 'ops.1', text: 'x', id: '2' })).code, 'permission_denied');
      assert.equal((await kiosk.call({ op: 'sub', subject: 'news.>', id: '3' })).code, 'permission_denied');
      assert.equal((await kiosk.call({ op: 'sub', subject: 'news.a', id: '4' })).op, 'ok');
      const ops = await TestClient.connect(`${g.server!.url}?token=ops-token-0123456789ab`);
      assert.equal((await ops.call({ subject: 'ops.1', text: 'x', id: '1' })).op, 'ok');
      const bad = new TestClient(`${g.server!.url}?token=kiosk-token-0123456780`);
      const [, res] = await once(bad.ws, 'unexpected-response');
      assert.equal((res as import('node:http').IncomingMessage).statusCode, 401);
      bad.ws.terminate();
      kiosk.close();
      ops.close();
    });
  });
}

describe('nats only', () => {
  const gws: Gateway[] = [];
  after(async () => {
    for (const g of gws) await g.shutdown();
  });
  const start = async (extra: Record<string, string>) => {
    const g = await startGateway({ JWT_SECRET: SECRET, NATS_URL: nats.url, ...extra });
    gws.push(g);
    return g;
  };
  const client = async (g: Gateway, claims: Record<string, unknown> = {}) => TestClient.connect(`${g.server!.url}?token=${await jwt(claims)}`);

  test('durable names are scoped to the principal and pattern: nobody joins or rewrites another principal\'s durable', async () => {
    const g = await start({ HISTORY_SUBJECTS: 'ord.>' });
    const alice = await client(g, { sub: 'alice' });
    const mallory = await client(g, { sub: 'mallory' });
    const writer = await client(g);
    assert.equal((await alice.call({ op: 'sub', subject: 'ord.>', ack: true, durable: 'shop', id: 'a' })).op, 'ok');
    // Same durable name, another pattern, another principal: its own durable, alice's untouched.
    assert.equal((await mallory.call({ op: 'sub', subject: 'ord.none', ack: true, durable: 'shop', id: 'm' })).op, 'ok');
    assert.equal((await mallory.call({ op: 'sub', subject: 'ord.>', ack: true, durable: 'shop', id: 'm2' })).op, 'ok');
    for (const t of ['o1', 'o2', 'o3', 'o4']) assert.equal((await writer.call({ subject: 'ord.new', text: t, id: t })).op, 'ok');
    const got: string[] = [];
    while (got.length < 4) {
      const f = await alice.next((x) => x.subject === 'ord.new');
      got.push(unb64(f.body));
      await alice.call({ op: 'ack', seq: f.seq, id: `k${f.seq}` });
    }
    assert.deepEqual(got.sort(), ['o1', 'o2', 'o3', 'o4']);
    // Mallory's durables got the messages published after they were made, on their own.
    const m = await mallory.next((x) => x.subject === 'ord.new');
    assert.ok(['o1', 'o2', 'o3', 'o4'].includes(unb64(m.body)));
    // The JetStream consumer names carry no client-chosen text.
    const jsm = await (await import('@nats-io/jetstream')).jetstreamManager((g.bus as unknown as { nc: import('@nats-io/transport-node').NatsConnection }).nc);
    const names: string[] = [];
    for await (const ci of jsm.consumers.list((g.bus as unknown as { historyStream: string }).historyStream)) names.push(ci.name);
    assert.ok(names.length >= 3);
    for (const n of names) assert.ok(!n.includes('shop'), n);
    for (const c of [alice, mallory, writer]) c.close();
  });

  test('NATS_PREFIX is a wall: a tenant cannot publish into another tenant or outside its prefix; state is per tenant', async () => {
    const a = await start({ NATS_PREFIX: 'tenant-a.' });
    const b = await start({ NATS_PREFIX: 'tenant-b.' });
    const inB = await client(b);
    assert.equal((await inB.call({ op: 'sub', subject: 'x.>', id: 's' })).op, 'ok');
    const nc = await natsConnect({ servers: nats.url });
    const outside = nc.subscribe('tenant-b.>');
    const raw = nc.subscribe('plain.>');
    const attacker = await client(a);
    for (const subject of ['_WSB.RAW.tenant-b.x.y', '_WSB.RAW.plain.x', '_WSB.RAW.$JS.API.INFO']) {
      assert.equal((await attacker.call({ subject, text: 'x', id: 'p' })).code, 'invalid_subject', subject);
    }
    await nc.flush();
    assert.deepEqual(await framesWithin(inB, 200, (f) => f.op === undefined), []);
    outside.unsubscribe();
    raw.unsubscribe();
    assert.equal(outside.getProcessed(), 0);
    assert.equal(raw.getProcessed(), 0);
    // A plain NATS client's request from outside the prefix can still be answered (the reply
    // subject was handed to the responder).
    const responder = await client(a);
    assert.equal((await responder.call({ op: 'sub', subject: 'svc.q', id: 's' })).op, 'ok');
    await new Promise((r) => setTimeout(r, 50));
    const pending = nc.request('tenant-a.svc.q', 'q', { timeout: 2000 });
    const q = await responder.next((f) => f.subject === 'svc.q');
    assert.match(String(q.reply_to), /^_WSB\.RAW\._INBOX\./);
    assert.equal((await responder.call({ subject: q.reply_to, text: 'answer', id: 'r' })).op, 'ok');
    assert.equal(new TextDecoder().decode((await pending).data), 'answer');
    await nc.close();
    for (const c of [inB, attacker, responder]) c.close();
  });
});

test('client mode: reserved subjects from the remote arrive as raw frames; forwarded messages show no local reply subject', async () => {
  const wss = new WebSocketServer({ port: 0, host: '127.0.0.1' });
  await once(wss, 'listening');
  const port = (wss.address() as net.AddressInfo).port;
  const conn = new Promise<import('ws').WebSocket>((resolve) => wss.on('connection', (ws) => resolve(ws)));
  const gw = await startGateway({ JWT_SECRET: SECRET });
  try {
    const local = await TestClient.connect(`${gw.server!.url}?token=${await jwt({})}`);
    assert.equal((await local.call({ op: 'sub', subject: 'ws.in', id: 's' })).op, 'ok');
    assert.equal((await local.call({ op: 'sub', subject: 'chat.>', id: 's2' })).op, 'ok');
    gw.linkTarget('remote-user', { URI: `ws://127.0.0.1:${port}/`, FORWARD: 'chat.>', RAW_SUBJECT: 'ws.in', RECONNECT_MAX_ATTEMPTS: '1' });
    const remote = await conn;
    const received: string[] = [];
    remote.on('message', (d) => received.push(d.toString()));
    // The remote tries a broadcast, a targeted send and a NATS API subject.
    for (const subject of ['_WSB.B.chat.x', `${local.welcome.reply_to}`, '$JS.API.STREAM.LIST', '_INBOX.x']) {
      remote.send(JSON.stringify({ subject, text: 'evil' }));
      const raw = await local.next((f) => f.subject === 'ws.in');
      assert.equal(JSON.parse(unb64(raw.body)).subject, subject);
    }
    // Nothing else reached the local session: no broadcast, no direct message.
    assert.deepEqual(await framesWithin(local, 200, (f) => f.op === undefined && f.subject !== 'ws.in'), []);
    // A local publish forwarded to the remote carries no reply subject of the session.
    local.send({ subject: 'chat.hello', text: 'hi' });
    await local.next((f) => f.subject === 'chat.hello');
    for (let i = 0; i < 200 && received.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
    const out = JSON.parse(received[0]!);
    assert.equal(out.subject, 'chat.hello');
    assert.equal(out.reply_to, null);
    assert.equal(b64('hi'), out.body);
    local.close();
  } finally {
    await gw.shutdown();
    for (const c of wss.clients) c.terminate();
    await new Promise((r) => wss.close(r));
  }
});

test('client mode with FORWARD_REPLIES: the remote answers through an opaque alias, once', async () => {
  const wss = new WebSocketServer({ port: 0, host: '127.0.0.1' });
  await once(wss, 'listening');
  const port = (wss.address() as net.AddressInfo).port;
  const conn = new Promise<import('ws').WebSocket>((resolve) => wss.on('connection', (ws) => resolve(ws)));
  const gw = await startGateway({});
  try {
    const local = await TestClient.connect(gw.server!.url);
    gw.linkTarget('remote-user', { URI: `ws://127.0.0.1:${port}/`, FORWARD: 'ask.>', FORWARD_REPLIES: 'true', RECONNECT_MAX_ATTEMPTS: '1' });
    const remote = await conn;
    const frames: Array<Record<string, unknown>> = [];
    let wake: (() => void) | undefined;
    remote.on('message', (d) => { frames.push(JSON.parse(d.toString())); wake?.(); });
    local.send({ op: 'req', id: 'q', subject: 'ask.remote', text: 'what?', timeout_ms: 3000 });
    while (frames.length === 0) await new Promise<void>((r) => { wake = r; setTimeout(r, 100); });
    const f = frames[0]!;
    assert.match(String(f.reply_to), /^_WSB\.LR\.[A-Za-z0-9_-]{22}$/);
    assert.ok(!String(f.reply_to).includes(String(local.welcome.reply_to)));
    remote.send(JSON.stringify({ subject: f.reply_to, text: 'this' }));
    const res = await local.next((x) => x.id === 'q');
    assert.equal(res.op, 'res');
    assert.equal(unb64(res.body), 'this');
    local.close();
  } finally {
    await gw.shutdown();
    for (const c of wss.clients) c.terminate();
    await new Promise((r) => wss.close(r));
  }
});
