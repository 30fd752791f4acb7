// Presence per subject across three wsbridge processes on one nats-server: members with their
// JWT sub and info claim, join and leave events delivered to watchers on every node, leaves of
// disconnected sessions at once, and the members of a node killed with SIGKILL leaving (each
// announced exactly once) within the documented bound.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { SignJWT } from 'jose';
import { spawnCli, TestClient, unb64 } from './helpers.ts';
import type { Frame } from './helpers.ts';
import { startNats } from './nats-helpers.ts';

const nats = await startNats();
after(() => nats.stop());

const SECRET = 'presence-cluster-secret-of-enough-length';
const TOKEN = 'presence-admin';
const TTL_SEC = 2;
const jwt = (sub: string, claims: Record<string, unknown> = {}) => new SignJWT(claims).setProtectedHeader({ alg: 'HS256' }).setSubject(sub).setIssuedAt().setExpirationTime('10m').sign(new TextEncoder().encode(SECRET));

async function node() {
  const n = await spawnCli(['serve', '--listen', '127.0.0.1:0', '--nats', nats.url, '--admin-token', TOKEN], { PRESENCE_TTL_SEC: String(TTL_SEC), PRESENCE_SUBJECTS: 'room.*', JWT_SECRET: SECRET, PING_INTERVAL_SEC: '0' });
  const url = n.match![1]!;
  after(async () => {
    if (n.proc.exitCode === null && n.proc.signalCode === null) {
      n.proc.kill('SIGTERM');
      await n.exit;
    }
  });
  return { ...n, url, http: url.replace('ws://', 'http://').replace(/\/ws$/, '') };
}

async function client(url: string, sub: string, claims: Record<string, unknown> = {}): Promise<TestClient> {
  return TestClient.connect(url, undefined, { headers: { authorization: `Bearer ${await jwt(sub, claims)}` } });
}

interface PresenceEvent { event: string; subject: string; member: { session: string; user: string | null; info?: unknown } }

/** Collects the presence events a session receives. */
function events(c: TestClient): PresenceEvent[] {
  const seen: PresenceEvent[] = [];
  c.ws.on('message', (data: Buffer) => {
    const f = JSON.parse(data.toString()) as Frame;
    if (typeof f.subject === 'string' && f.subject.startsWith('_WSB.P.') && f.op === undefined) seen.push(JSON.parse(unb64(f.body)) as PresenceEvent);
  });
  return seen;
}

async function waitFor(what: string, cond: () => boolean, ms = 15_000): Promise<number> {
  const started = Date.now();
  while (!cond()) {
    if (Date.now() - started > ms) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 20)); // watching events arrive, with a bound
  }
  return Date.now() - started;
}

async function presence(c: TestClient, subject: string): Promise<Frame> {
  const id = `p${Math.random()}`;
  c.send({ op: 'presence', subject, id });
  return c.next((f) => f.id === id, 10_000);
}

test('three nodes: members, join/leave events, disconnects, and a SIGKILLed node', async (t) => {
  const [a, b, c] = await Promise.all([node(), node(), node()]);
  // Watchers on two nodes: one for the room's events, one for every room's.
  const watchA = await client(a.url, 'watcher-a', { subs: ['room.*'] });
  const watchB = await client(b.url, 'watcher-b', { subs: ['room.*'] });
  t.after(() => [watchA, watchB].forEach((w) => w.close()));
  const seenA = events(watchA);
  const seenB = events(watchB);
  assert.equal((await watchA.call({ op: 'sub', subject: '_WSB.P.room.lobby', id: 'w' })).op, 'ok');
  assert.equal((await watchB.call({ op: 'sub', subject: '_WSB.P.room.*', id: 'w' })).op, 'ok');

  const alice = await client(a.url, 'alice', { info: { name: 'Alice', colour: 'teal' } });
  const bob = await client(b.url, 'bob');
  const carol = await client(c.url, 'carol', { info: { name: 'Carol' } });
  const dave = await client(c.url, 'dave');
  t.after(() => [alice, bob, carol, dave].forEach((x) => x.close()));
  for (const x of [alice, bob, carol, dave]) assert.equal((await x.call({ op: 'sub', subject: 'room.lobby', id: 'j' })).op, 'ok');
  // A wildcard subscription is no membership; another room is another subject.
  assert.equal((await bob.call({ op: 'sub', subject: 'room.*', id: 'wild' })).op, 'ok');
  assert.equal((await dave.call({ op: 'sub', subject: 'room.kitchen', id: 'k' })).op, 'ok');

  const joinsOf = (seen: PresenceEvent[], subject = 'room.lobby') => seen.filter((e) => e.event === 'join' && e.subject === subject).map((e) => e.member.user).sort();
  await waitFor('four joins seen on node A', () => joinsOf(seenA).length === 4);
  await waitFor('four joins and the kitchen seen on node B', () => joinsOf(seenB).length === 4 && joinsOf(seenB, 'room.kitchen').length === 1);
  assert.deepEqual(joinsOf(seenA), ['alice', 'bob', 'carol', 'dave']);
  assert.deepEqual(joinsOf(seenA, 'room.kitchen'), [], 'A watches the lobby only');
  const aliceJoin = seenA.find((e) => e.member.user === 'alice')!;
  assert.deepEqual(aliceJoin.member, { session: alice.welcome.session, user: 'alice', info: { name: 'Alice', colour: 'teal' } });

  // Any node answers with every node's members.
  for (const asker of [alice, bob, carol]) {
    const p = await presence(asker, 'room.lobby');
    assert.equal(p.op, 'presence');
    assert.equal(p.truncated, false);
    const members = p.members as Array<{ session: string; user: string; info?: unknown }>;
    assert.deepEqual(members.map((m) => m.user).sort(), ['alice', 'bob', 'carol', 'dave']);
    assert.deepEqual(members.find((m) => m.user === 'carol')!.info, { name: 'Carol' });
    assert.equal(members.find((m) => m.user === 'bob')!.session, bob.welcome.session);
  }
  // The operator API names each member's node.
  const viaApi = (await (await fetch(`${b.http}/api/presence/room.lobby`, { headers: { authorization: `Bearer ${TOKEN}` } })).json()) as { members: Array<{ user: string; node: string }> };
  assert.equal(new Set(viaApi.members.map((m) => m.node)).size, 3, 'members on three nodes');

  // Leaves: an unsub, and a session that disconnects; both announced at once, everywhere.
  const leavesOf = (seen: PresenceEvent[], subject = 'room.lobby') => seen.filter((e) => e.event === 'leave' && e.subject === subject).map((e) => e.member.user).sort();
  assert.equal((await alice.call({ op: 'unsub', subject: 'room.lobby', id: 'u' })).op, 'ok');
  bob.close();
  await waitFor('two leaves on A', () => leavesOf(seenA).length === 2, 5000);
  await waitFor('two leaves on B', () => leavesOf(seenB).length === 2, 5000);
  assert.deepEqual(leavesOf(seenA), ['alice', 'bob']);
  assert.deepEqual(((await presence(carol, 'room.lobby')).members as Array<{ user: string }>).map((m) => m.user).sort(), ['carol', 'dave']);

  // Node C dies without a word: its members leave within PRESENCE_TTL_SEC × 4/3 (plus JetStream's
  // expiry and a reap), announced once each, by whichever live node reaped them.
  c.proc.kill('SIGKILL');
  await c.exit;
  const took = await waitFor('the killed node\'s members leaving', () => leavesOf(seenA).length === 4 && leavesOf(seenB, 'room.kitchen').length === 1, 15_000);
  assert.ok(took <= TTL_SEC * 1000 * 4 / 3 + 2000, `left ${took} ms after the kill`);
  assert.deepEqual(leavesOf(seenA), ['alice', 'bob', 'carol', 'dave']);
  assert.deepEqual(((await presence(alice, 'room.lobby')).members as unknown[]), []);
  // A new member joins and is seen by both watchers: still one leave each for carol and dave (the
  // reapers delete with compare-and-set, and only the one whose delete succeeded announces).
  const erin = await client(a.url, 'erin');
  t.after(() => erin.close());
  assert.equal((await erin.call({ op: 'sub', subject: 'room.lobby', id: 'j' })).op, 'ok');
  await waitFor('erin seen on A and B', () => joinsOf(seenA).includes('erin') && joinsOf(seenB).includes('erin'));
  assert.deepEqual(leavesOf(seenA), ['alice', 'bob', 'carol', 'dave'], 'each leave announced once');
  assert.deepEqual(leavesOf(seenB), ['alice', 'bob', 'carol', 'dave']);
  assert.deepEqual(((await presence(erin, 'room.lobby')).members as Array<{ user: string }>).map((m) => m.user), ['erin']);
});

test('an acknowledged subscription is no membership: replacing a member\'s plain subscription with one is its leave', async (t) => {
  const { startGateway } = await import('./helpers.ts');
  const gw = await startGateway({ NATS_URL: nats.url, PRESENCE_SUBJECTS: 'room.*', HISTORY_SUBJECTS: 'room.>', JWT_SECRET: SECRET, PRESENCE_TTL_SEC: String(TTL_SEC) });
  t.after(() => gw.shutdown());
  const watcher = await client(gw.server!.url, 'watcher');
  const member = await client(gw.server!.url, 'member');
  t.after(() => [watcher, member].forEach((c) => c.close()));
  const seen = events(watcher);
  assert.equal((await watcher.call({ op: 'sub', subject: '_WSB.P.room.a', id: 'w' })).op, 'ok');
  assert.equal((await member.call({ op: 'sub', subject: 'room.a', id: 'plain' })).op, 'ok');
  await waitFor('the join', () => seen.some((e) => e.event === 'join'));
  assert.deepEqual(((await presence(watcher, 'room.a')).members as Array<{ user: string }>).map((m) => m.user), ['member']);
  assert.equal((await member.call({ op: 'sub', subject: 'room.a', ack: true, durable: 'd1', id: 'acked' })).op, 'ok');
  await waitFor('the leave', () => seen.some((e) => e.event === 'leave'));
  assert.deepEqual((await presence(watcher, 'room.a')).members, []);
  // Back to a plain subscription: a member again.
  assert.equal((await member.call({ op: 'sub', subject: 'room.a', id: 'plain2' })).op, 'ok');
  await waitFor('the second join', () => seen.filter((e) => e.event === 'join').length === 2);
  assert.deepEqual(((await presence(watcher, 'room.a')).members as Array<{ user: string }>).map((m) => m.user), ['member']);
});
