// Presence per subject on one node (the in-memory store): membership rules, join/leave events,
// the permission checks on both, limits, and the operator API. Across nodes (NATS KV, a killed
// node): test/presence-cluster.test.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SignJWT } from 'jose';
import { startGateway, TestClient, unb64 } from './helpers.ts';
import type { Frame } from './helpers.ts';
import { loadConfig, ConfigError } from '../src/config/load.ts';
import { LocalMemberStore, MAX_CONCURRENT_READS, SubjectPresence } from '../src/cluster/subject-presence.ts';
import type { MemberList } from '../src/cluster/subject-presence.ts';
import { MemoryBus } from '../src/bus/memory-bus.ts';
import { createLogger } from '../src/observability/logger.ts';

const SECRET = 'presence-test-secret-of-enough-length';
const ADMIN = 'presence-admin-token';
const jwt = (sub: string | undefined, claims: Record<string, unknown> = {}) => {
  const t = new SignJWT(claims).setProtectedHeader({ alg: 'HS256' }).setIssuedAt().setExpirationTime('10m');
  if (sub) t.setSubject(sub);
  return t.sign(new TextEncoder().encode(SECRET));
};
const as = async (url: string, sub: string | undefined, claims: Record<string, unknown> = {}) => TestClient.connect(url, undefined, { headers: { authorization: `Bearer ${await jwt(sub, claims)}` } });
/** Sends a frame with an id and waits for whatever answers it (ok, error, presence, …). */
const ask = (c: TestClient, frame: Frame) => {
  c.send(frame);
  return c.next((f) => f.id === frame.id && f.op !== undefined);
};
const presenceEvent = (f: Frame) => typeof f.subject === 'string' && f.subject.startsWith('_WSB.P.');
const body = (f: Frame) => JSON.parse(unb64(f.body)) as { event: string; subject: string; member: { session: string; user: string | null; info?: unknown } };

test('membership: exact subscriptions only, once per subject; join and leave events; who the members are', async (t) => {
  const gw = await startGateway({ PRESENCE_SUBJECTS: 'room.*', JWT_SECRET: SECRET, ADMIN_TOKEN: ADMIN, PRESENCE_MAX_MEMBERS: '3' });
  t.after(() => gw.shutdown());
  const url = gw.server!.url;
  const watcher = await as(url, 'watcher');
  t.after(() => watcher.close());
  assert.equal((await watcher.call({ op: 'sub', subject: '_WSB.P.room.*', id: 'w' })).op, 'ok');
  const everything = await as(url, 'nosy');
  t.after(() => everything.close());
  assert.equal((await everything.call({ op: 'sub', subject: '>', id: 'all' })).op, 'ok');

  const ann = await as(url, 'ann', { info: { name: 'Ann' } });
  const big = await as(url, 'big', { info: { blob: 'x'.repeat(2000) } });
  const anon = await as(url, undefined);
  t.after(() => [ann, big, anon].forEach((c) => c.close()));
  assert.equal((await ann.call({ op: 'sub', subject: 'room.a', id: '1' })).op, 'ok');
  let ev = body(await watcher.next(presenceEvent));
  assert.deepEqual(ev, { event: 'join', subject: 'room.a', member: { session: ann.welcome.session, user: 'ann', info: { name: 'Ann' } } });
  // Subscribing again, or with a wildcard, or to an untracked subject: no new membership.
  assert.equal((await ann.call({ op: 'sub', subject: 'room.a', id: '2' })).op, 'ok');
  assert.equal((await ann.call({ op: 'sub', subject: 'room.*', id: '3' })).op, 'ok');
  assert.equal((await ann.call({ op: 'sub', subject: 'hall.a', id: '4' })).op, 'ok');
  // A queue subscription is a membership; an info claim over 1 KiB is left out; no sub, no user.
  assert.equal((await big.call({ op: 'sub', subject: 'room.a', queue: 'q', id: '5' })).op, 'ok');
  ev = body(await watcher.next(presenceEvent));
  assert.deepEqual(ev.member, { session: big.welcome.session, user: 'big' });
  assert.equal((await anon.call({ op: 'sub', subject: 'room.a', id: '6' })).op, 'ok');
  ev = body(await watcher.next(presenceEvent));
  assert.deepEqual(ev.member, { session: anon.welcome.session, user: null });
  assert.equal(watcher.frames.filter(presenceEvent).length, 0, 'exactly three joins');

  const p = await ask(ann, { op: 'presence', subject: 'room.a', id: 'p' });
  assert.equal(p.op, 'presence');
  assert.deepEqual((p.members as Array<{ user: string | null }>).map((m) => m.user).sort(), ['ann', 'big', null].sort());
  assert.equal(p.truncated, false);
  // PRESENCE_MAX_MEMBERS (3): a fourth member makes the answer say truncated.
  const dan = await as(url, 'dan');
  t.after(() => dan.close());
  assert.equal((await dan.call({ op: 'sub', subject: 'room.a', id: '7' })).op, 'ok');
  await watcher.next(presenceEvent);
  const p2 = await ask(dan, { op: 'presence', subject: 'room.a', id: 'p2' });
  assert.equal((p2.members as unknown[]).length, 3);
  assert.equal(p2.truncated, true);

  // Leaves: an unsub and a closed session; re-subscribing joins again.
  assert.equal((await ann.call({ op: 'unsub', subject: 'room.a', id: 'u' })).op, 'ok');
  ev = body(await watcher.next(presenceEvent));
  assert.deepEqual([ev.event, ev.member.user], ['leave', 'ann']);
  assert.equal((await ann.call({ op: 'unsub', subject: 'room.*', id: 'u2' })).op, 'ok');
  assert.equal((await ann.call({ op: 'sub', subject: 'room.a', id: '8' })).op, 'ok');
  ev = body(await watcher.next(presenceEvent));
  assert.deepEqual([ev.event, ev.member.user], ['join', 'ann']);
  big.close();
  ev = body(await watcher.next(presenceEvent));
  assert.deepEqual([ev.event, ev.member.user], ['leave', 'big']);

  // The operator API: the members with their node; bad subjects and untracked ones.
  const api = (path: string) => fetch(`http://127.0.0.1:${gw.server!.address.port}${path}`, { headers: { authorization: `Bearer ${ADMIN}` } });
  const viaApi = (await (await api('/api/presence/room.a')).json()) as { subject: string; members: Array<{ user: string; node: string }> };
  assert.equal(viaApi.subject, 'room.a');
  assert.ok(viaApi.members.every((m) => m.node === gw.bus.nodeId));
  assert.equal((await api('/api/presence/room.*')).status, 400);
  assert.equal((await api('/api/presence/_WSB.S.x')).status, 400);
  const untracked = await api('/api/presence/hall.a');
  assert.equal(untracked.status, 404);
  assert.equal(((await untracked.json()) as { error: { code: string } }).error.code, 'presence_unavailable');
  assert.equal((await fetch(`http://127.0.0.1:${gw.server!.address.port}/api/presence/room.a`)).status, 401);

  // A > subscription sees none of it: presence events are reserved subjects.
  assert.equal(everything.frames.filter(presenceEvent).length, 0);
});

test('permissions: presence and its events only for subjects the session may subscribe to; nobody publishes events', async (t) => {
  const gw = await startGateway({ PRESENCE_SUBJECTS: 'room.*,chat.*', JWT_SECRET: SECRET });
  t.after(() => gw.shutdown());
  const url = gw.server!.url;
  const limited = await as(url, 'limited', { subs: ['room.lobby', 'chat.*'], pub: ['room.lobby'] });
  const member = await as(url, 'member');
  t.after(() => [limited, member].forEach((c) => c.close()));
  assert.equal((await member.call({ op: 'sub', subject: 'room.secret', id: 's' })).op, 'ok');

  const code = async (frame: Frame) => {
    const r = await ask(limited, frame);
    return r.op === 'error' ? r.code : r.op;
  };
  assert.equal(await code({ op: 'presence', subject: 'room.lobby', id: '1' }), 'presence');
  assert.equal(await code({ op: 'presence', subject: 'chat.x', id: '2' }), 'presence');
  assert.equal(await code({ op: 'presence', subject: 'room.secret', id: '3' }), 'permission_denied');
  assert.equal(await code({ op: 'presence', subject: 'room.*', id: '4' }), 'invalid_subject');
  assert.equal(await code({ op: 'presence', subject: '_WSB.S.x.y', id: '5' }), 'invalid_subject');
  assert.equal(await code({ op: 'sub', subject: '_WSB.P.room.lobby', id: '6' }), 'ok');
  assert.equal(await code({ op: 'sub', subject: '_WSB.P.chat.*', id: '7' }), 'ok');
  assert.equal(await code({ op: 'sub', subject: '_WSB.P.room.*', id: '8' }), 'permission_denied');
  assert.equal(await code({ op: 'sub', subject: '_WSB.P.>', id: '9' }), 'permission_denied');
  assert.equal(await code({ op: 'sub', subject: '_WSB.P.room.secret', id: '10' }), 'permission_denied');
  assert.equal(await code({ op: 'sub', subject: '_WSB.P._WSB.S.>', id: '11' }), 'invalid_subject');
  assert.equal(await code({ op: 'sub', subject: '_WSB.P._INBOX.>', id: '12' }), 'invalid_subject');
  // The event subject itself is reserved: no presence of it.
  assert.equal(await code({ op: 'presence', subject: '_WSB.P.room.lobby', id: '12a' }), 'invalid_subject');
  // Events come only for kept subjects: a subscription none of whose subjects is kept is refused.
  const memberCode = async (frame: Frame) => {
    const r = await ask(member, frame);
    return r.op === 'error' ? r.code : r.op;
  };
  assert.equal(await memberCode({ op: 'sub', subject: '_WSB.P.hall.x', id: 'm1' }), 'presence_unavailable');
  assert.equal(await memberCode({ op: 'sub', subject: '_WSB.P.hall.*', id: 'm2' }), 'presence_unavailable');
  assert.equal(await memberCode({ op: 'sub', subject: '_WSB.P.room', id: 'm3' }), 'presence_unavailable');
  assert.equal(await memberCode({ op: 'sub', subject: '_WSB.P.room.a.b', id: 'm4' }), 'presence_unavailable');
  assert.equal(await memberCode({ op: 'sub', subject: '_WSB.P.*.lobby', id: 'm5' }), 'ok');
  assert.equal(await memberCode({ op: 'sub', subject: '_WSB.P.>', id: 'm6' }), 'ok');
  assert.equal(await memberCode({ op: 'unsub', subject: '_WSB.P.*.lobby', id: 'm7' }), 'ok');
  assert.equal(await memberCode({ op: 'unsub', subject: '_WSB.P.>', id: 'm8' }), 'ok');
  // Nobody forges an event: publishing or requesting there is refused like any reserved subject.
  assert.equal(await code({ subject: '_WSB.P.room.lobby', text: JSON.stringify({ event: 'join' }), id: '13' }), 'invalid_subject');
  assert.equal(await code({ op: 'req', subject: '_WSB.P.room.lobby', id: '14' }), 'invalid_subject');
  // A presence op needs an id, like req.
  limited.send({ op: 'presence', subject: 'room.lobby' });
  const bad = await limited.next((f) => f.op === 'error' && f.code === 'bad_request');
  assert.match(String(bad.message), /presence needs an id/);

  // Events of the secret room never reach it; events of the lobby do.
  assert.equal((await member.call({ op: 'unsub', subject: 'room.secret', id: 'u' })).op, 'ok');
  assert.equal((await member.call({ op: 'sub', subject: 'room.lobby', id: 'l' })).op, 'ok');
  const ev = body(await limited.next(presenceEvent));
  assert.deepEqual([ev.event, ev.subject, ev.member.user], ['join', 'room.lobby', 'member']);
  assert.equal(limited.frames.filter(presenceEvent).length, 0, 'nothing from room.secret');

  // An in-band refresh that drops the permission ends the event subscription, said with its subject.
  const ended = limited.next((f) => f.op === 'error' && f.subject === '_WSB.P.room.lobby');
  assert.equal((await limited.call({ op: 'auth', token: await jwt('limited', { subs: ['chat.*'] }), id: 'r' })).op, 'ok');
  assert.equal((await ended).code, 'permission_denied');
  assert.equal((await ask(limited, { op: 'presence', subject: 'room.lobby', id: 'after' })).code, 'permission_denied');
});

test('presence off (no PRESENCE_SUBJECTS): clear errors; bad settings exit 2 naming the setting', async (t) => {
  const gw = await startGateway();
  t.after(() => gw.shutdown());
  const c = await TestClient.connect(gw);
  t.after(() => c.close());
  assert.equal((await ask(c, { op: 'presence', subject: 'room.a', id: '1' })).code, 'presence_unavailable');
  assert.equal((await c.call({ op: 'sub', subject: '_WSB.P.room.a', id: '2' })).code, 'presence_unavailable');
  for (const bad of ['_WSB.>', 'a*', '$KV.x']) {
    assert.throws(() => loadConfig({ flags: { PRESENCE_SUBJECTS: bad }, env: {} }), (e: unknown) => e instanceof ConfigError && /PRESENCE_SUBJECTS/.test(e.message));
  }
});

test('SDK: presence(), onJoin and onLeave, over WebSocket and the SSE fallback alike', async (t) => {
  const { connect, RequestError } = await import('../src/sdk/client.ts');
  const gw = await startGateway({ PRESENCE_SUBJECTS: 'room.*', JWT_SECRET: SECRET });
  t.after(() => gw.shutdown());
  const url = gw.server!.url;
  const watcher = connect(url, { token: await jwt('watcher', { subs: ['room.lobby'] }) });
  const zoe = connect(url, { token: await jwt('zoe', { info: { name: 'Zoë' } }), transport: 'sse' });
  t.after(() => [watcher, zoe].forEach((c) => c.close()));
  const joined: string[] = [];
  const left: string[] = [];
  const onJoin = watcher.onJoin('room.lobby', (m, subject) => void joined.push(`${m.user}@${subject}`));
  const onLeave = watcher.onLeave('room.lobby', (m) => void left.push(String(m.user)));
  await Promise.all([onJoin.ready, onLeave.ready]);
  // Refused like a subscription: no permission for the pattern.
  await assert.rejects(watcher.onJoin('room.*', () => {}).ready, (e: unknown) => e instanceof RequestError && e.code === 'permission_denied');

  const sub = zoe.subscribe('room.lobby', () => {});
  await sub.ready;
  await until(() => joined.length === 1, 'the join');
  assert.deepEqual(joined, ['zoe@room.lobby']);
  const p = await watcher.presence('room.lobby');
  assert.deepEqual(p, { members: [{ session: zoe.session.session!, user: 'zoe', info: { name: 'Zoë' } }], truncated: false });
  await assert.rejects(watcher.presence('room.other'), (e: unknown) => e instanceof RequestError && e.code === 'permission_denied');
  await assert.rejects(watcher.presence('hall.x'), (e: unknown) => e instanceof RequestError && e.code === 'permission_denied');
  await assert.rejects(zoe.presence('hall.x'), (e: unknown) => e instanceof RequestError && e.code === 'presence_unavailable');

  // The SSE session's stream drops: it leaves.
  zoe.close();
  await until(() => left.length === 1, 'the leave');
  assert.deepEqual(left, ['zoe']);
  assert.deepEqual(await watcher.presence('room.lobby'), { members: [], truncated: false });
  // Stopping both listeners ends the event subscription.
  onJoin();
  onLeave();
  await until(() => watcher.subscriptions.length === 0, 'the presence subscription gone');
});

async function until(cond: () => boolean, what: string, ms = 10_000): Promise<void> {
  const started = Date.now();
  while (!cond()) {
    if (Date.now() - started > ms) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 10)); // waiting for frames to arrive, with a bound
  }
}

test('presence reads are bounded per node: queries for one subject share a read that starts after them; at most MAX_CONCURRENT_READS run', async () => {
  // A store whose reads wait until released, counting how many run at once.
  class SlowStore extends LocalMemberStore {
    calls: string[] = [];
    running = 0;
    most = 0;
    #gates: Array<() => void> = [];
    override async list(subject: string, limit: number): Promise<MemberList> {
      this.calls.push(subject);
      this.most = Math.max(this.most, ++this.running);
      await new Promise<void>((r) => this.#gates.push(r));
      this.running--;
      return super.list(subject, limit);
    }
    release(): number {
      const n = this.#gates.length;
      this.#gates.splice(0).forEach((r) => r());
      return n;
    }
  }
  const bus = new MemoryBus();
  const store = new SlowStore();
  const presence = new SubjectPresence(bus, store, { subjects: ['room.*'], maxMembers: 10 }, createLogger('silent'));
  const settle = () => new Promise((r) => setImmediate(r));
  const anne = { id: 'anne', identity: undefined };
  const ben = { id: 'ben', identity: undefined };
  presence.subscribed(anne, 'room.a');
  await settle();

  // 50 queries while the first read runs: one more read, after it, for all of them.
  const first = presence.members('room.a');
  await settle();
  presence.subscribed(ben, 'room.a'); // joins after the first read started
  await settle();
  const later = Array.from({ length: 50 }, () => presence.members('room.a'));
  await settle();
  assert.deepEqual(store.calls, ['room.a'], 'the later queries wait for the running read');
  assert.equal(store.release(), 1);
  assert.deepEqual((await first).members.map((m) => m.session), ['anne', 'ben']);
  await settle();
  assert.deepEqual(store.calls, ['room.a', 'room.a'], 'one read for the 50 queries');
  assert.equal(store.release(), 1);
  for (const r of await Promise.all(later)) assert.deepEqual(r.members.map((m) => m.session).sort(), ['anne', 'ben']);

  // Queries for 40 subjects: at most MAX_CONCURRENT_READS reads at once, every query answered.
  const many = Array.from({ length: 40 }, (_, i) => presence.members(`room.r${i}`));
  let answered = false;
  void Promise.all(many).then(() => (answered = true));
  for (let turn = 0; !answered; turn++) {
    assert.ok(turn < 1000, 'every query answered');
    await settle();
    store.release();
  }
  assert.equal(store.calls.length, 2 + 40);
  assert.equal(store.most, MAX_CONCURRENT_READS);
  await presence.close(1000);

  // A store read that never ends gives up its turn after 5 seconds: stuck reads do not block the node.
  const stuck = new (class extends LocalMemberStore {
    calls = 0;
    override list(): Promise<MemberList> {
      this.calls++;
      return new Promise(() => {});
    }
  })();
  const p2 = new SubjectPresence(bus, stuck, { subjects: ['room.*'], maxMembers: 10 }, createLogger('silent'));
  const outcomes = Array.from({ length: MAX_CONCURRENT_READS + 1 }, (_, i) => p2.members(`room.s${i}`).then(() => 'answered', (e: Error) => e.message));
  await settle();
  assert.equal(stuck.calls, MAX_CONCURRENT_READS);
  for (const o of await Promise.all(outcomes)) assert.match(o, /within 5000 ms/);
  for (let turn = 0; stuck.calls < MAX_CONCURRENT_READS + 1; turn++) {
    assert.ok(turn < 500, 'the last read got a turn');
    await new Promise((r) => setTimeout(r, 10));
  }
  await p2.close(100);
});
