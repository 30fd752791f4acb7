// Several wsbridge nodes (separate processes) on one real nats-server behave as one gateway:
// pub/sub, reply-to, request/reply and broadcast across nodes, cluster presence (and a node
// killed with SIGKILL leaving it), NATS restarts, and local traffic during a NATS outage.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnCli, TestClient, unb64, bounded } from './helpers.ts';
import { startNats } from './nats-helpers.ts';

const nats = await startNats();
after(() => nats.stop());

const TOKEN = 'cluster-admin';
async function node(extra: Record<string, string> = {}) {
  const n = await spawnCli(['serve', '--listen', '127.0.0.1:0', '--nats', nats.url, '--admin-token', TOKEN], { PRESENCE_TTL_SEC: '2', ...extra });
  const url = n.match![1]!;
  const http = url.replace('ws://', 'http://').replace(/\/ws$/, '');
  after(async () => {
    if (n.proc.exitCode === null && n.proc.signalCode === null) {
      n.proc.kill('SIGTERM');
      await n.exit;
    }
  });
  return { ...n, url, http };
}
const api = (base: string, path: string, init: RequestInit = {}) => fetch(base + path, { ...init, headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' } });

const a = await node();
const b = await node();

async function until<T>(what: string, f: () => Promise<T | undefined>, tries = 200): Promise<T> {
  for (let i = 0; i < tries; i++) {
    const v = await f();
    if (v !== undefined) return v;
    await new Promise((r) => setTimeout(r, 50)); // polling an external state (presence, NATS) with a bound
  }
  throw new Error(`timed out waiting for ${what}`);
}

test('pub/sub and reply-to across nodes', async () => {
  const onA = await TestClient.connect(a.url);
  const onB = await TestClient.connect(b.url);
  await onB.call({ op: 'sub', subject: 'x.*', id: '1' });
  // The subscription reaches NATS asynchronously: publish until B sees one (bounded).
  await until('cross-node subscription', async () => {
    onA.send({ subject: 'x.ping', text: 'from a' });
    return onB.next((f) => f.subject === 'x.ping', 100).catch(() => undefined);
  });
  // Publishes made before B's interest reached NATS drew NATS status replies (503) to A's
  // reply subject; none of them may reach A as a message.
  await onA.call({ op: 'ping', id: 'sync' });
  assert.equal(onA.frames.filter((f) => f.subject === onA.welcome.reply_to).length, 0, 'no NATS status message delivered');
  // B answers on A's reply subject: only A's session gets it.
  onB.send({ subject: onA.welcome.reply_to, text: 'to a only' });
  const reply = await onA.next((f) => f.subject === onA.welcome.reply_to);
  assert.equal(unb64(reply.body), 'to a only');
  onA.close();
  onB.close();
});

test('request/reply across nodes, and no_responders / timeout', async () => {
  const svc = await TestClient.connect(b.url);
  await svc.call({ op: 'sub', subject: 'svc.clock', id: '1' });
  svc.ws.on('message', (d) => {
    const f = JSON.parse(d.toString()) as { subject?: string; reply_to?: string };
    if (f.subject === 'svc.clock') svc.send({ subject: f.reply_to, text: 'tick' });
  });
  const client = await TestClient.connect(a.url);
  const res = await until('cross-node responder', async () => {
    const r = await client.call({ op: 'req', id: `r${Math.random()}`, subject: 'svc.clock', text: 'now?', timeout_ms: 500 });
    return r.op === 'res' ? r : undefined;
  });
  assert.equal(unb64(res.body), 'tick');
  const none = await client.call({ op: 'req', id: 'n', subject: 'svc.nobody', text: 'x' });
  assert.equal(none.code, 'no_responders');
  await svc.call({ op: 'sub', subject: 'svc.silent', id: '2' });
  const slow = await until('silent subscription', async () => {
    const r = await client.call({ op: 'req', id: `t${Math.random()}`, subject: 'svc.silent', text: 'x', timeout_ms: 200 });
    return r.code === 'timeout' ? r : undefined;
  });
  assert.equal(slow.code, 'timeout');
  svc.close();
  client.close();
});

test('broadcast and send-to-session from one node reach sessions on the other; presence lists both nodes', async () => {
  const onA = await TestClient.connect(a.url);
  const onB = await TestClient.connect(b.url);
  const sessions = await until('presence of both sessions', async () => {
    const list = ((await (await api(a.http, '/api/sessions')).json()) as { sessions: Array<{ id: string; node: string }> }).sessions;
    return list.some((s) => s.id === onB.welcome.session) && list.some((s) => s.id === onA.welcome.session) ? list : undefined;
  });
  assert.notEqual(sessions.find((s) => s.id === onA.welcome.session)!.node, sessions.find((s) => s.id === onB.welcome.session)!.node);

  assert.equal((await api(a.http, '/api/broadcast', { method: 'POST', body: JSON.stringify({ subject: 'all', text: 'everyone' }) })).status, 202);
  await onA.next((f) => f.subject === 'all');
  await onB.next((f) => f.subject === 'all');

  const sent = await api(a.http, `/api/sessions/${onB.welcome.session}/messages`, { method: 'POST', body: JSON.stringify({ subject: 'direct', text: 'hi b' }) });
  assert.equal(sent.status, 202);
  assert.equal(unb64((await onB.next((f) => f.subject === 'direct')).body), 'hi b');

  const del = await api(a.http, `/api/sessions/${onB.welcome.session}`, { method: 'DELETE' });
  assert.equal(del.status, 204);
  assert.equal((await onB.closed).code, 1000);
  onA.close();
});

test('a node killed with SIGKILL leaves presence within the TTL; the survivor keeps working', async () => {
  const c = await node();
  const onC = await TestClient.connect(c.url);
  await until('presence of the new node', async () => {
    const list = ((await (await api(a.http, '/api/sessions')).json()) as { sessions: Array<{ id: string }> }).sessions;
    return list.some((s) => s.id === onC.welcome.session) ? true : undefined;
  });
  c.proc.kill('SIGKILL');
  await c.exit;
  const started = Date.now();
  await until('the killed node to leave presence', async () => {
    const list = ((await (await api(a.http, '/api/sessions')).json()) as { sessions: Array<{ id: string }> }).sessions;
    return list.some((s) => s.id === onC.welcome.session) ? undefined : true;
  });
  assert.ok(Date.now() - started < 2000 + 2000, 'gone within PRESENCE_TTL_SEC plus a heartbeat');
  const x = await TestClient.connect(a.url);
  assert.equal((await x.call({ op: 'ping', id: 'p' })).op, 'pong');
  x.close();
});

test('NATS outage: /readyz says not ready, local traffic flows, remote requests fail fast; recovery after restart', async () => {
  const local1 = await TestClient.connect(a.url);
  const local2 = await TestClient.connect(a.url);
  await local2.call({ op: 'sub', subject: 'local.only', id: '1' });
  assert.equal((await fetch(`${a.http}/readyz`)).status, 200);
  await nats.stop();
  await until('readyz to report the outage', async () => ((await fetch(`${a.http}/readyz`)).status === 503 ? true : undefined));
  local1.send({ subject: 'local.only', text: 'still here' });
  assert.equal(unb64((await local2.next((f) => f.subject === 'local.only')).body), 'still here');
  const remote = await local1.call({ op: 'req', id: 'r', subject: 'svc.elsewhere', text: 'x', timeout_ms: 300 });
  assert.equal(remote.op, 'error');
  // A publish that asks for an ack is told NATS did not take it (it reached this node only).
  const acked = await local1.call({ subject: 'local.only', text: 'with ack', id: 'pa' });
  assert.deepEqual([acked.op, acked.code], ['error', 'bus_unavailable']);
  await nats.restart();
  await until('readyz after NATS came back', async () => ((await fetch(`${a.http}/readyz`)).status === 200 ? true : undefined));
  // Cross-node traffic works again.
  const onB = await TestClient.connect(b.url);
  await onB.call({ op: 'sub', subject: 'after.restart', id: '1' });
  await until('cross-node delivery after the restart', async () => {
    local1.send({ subject: 'after.restart', text: 'back' });
    return onB.next((f) => f.subject === 'after.restart', 100).catch(() => undefined);
  });
  for (const c of [local1, local2, onB]) c.close();
});

test('a plain NATS client (standing in for a wasmCloud messaging provider) answers a browser request and publishes to sessions', async () => {
  const { connect } = await import('@nats-io/transport-node');
  const nc = await connect({ servers: nats.url });
  // The "component": answers svc.greet on the message's reply subject, as the provider does.
  nc.subscribe('svc.greet', { callback: (_e, m) => { m.respond(new TextEncoder().encode(`Hello, ${new TextDecoder().decode(m.data)}`)); } });
  await nc.flush();
  const browser = await TestClient.connect(a.url);
  const res = await browser.call({ op: 'req', id: '1', subject: 'svc.greet', text: 'Ada', timeout_ms: 2000 });
  assert.equal(res.op, 'res');
  assert.equal(unb64(res.body), 'Hello, Ada');
  // And a plain NATS publish reaches a subscribed session, subject unchanged.
  await browser.call({ op: 'sub', subject: 'chat.*', id: 's' });
  await until('the session subscription on NATS', async () => {
    nc.publish('chat.lobby', new TextEncoder().encode('from the lattice'));
    return browser.next((f) => f.subject === 'chat.lobby', 100).catch(() => undefined);
  });
  // A browser publish reaches the plain NATS subscriber with its reply subject.
  const got = bounded(new Promise<{ subject: string; reply: string | undefined }>((resolve) => nc.subscribe('lattice.in', { max: 1, callback: (_e, m) => resolve({ subject: m.subject, reply: m.reply }) })), 'the browser publish on NATS');
  await nc.flush();
  browser.send({ subject: 'lattice.in', text: 'to the component' });
  const m = await got;
  assert.equal(m.subject, 'lattice.in');
  assert.equal(m.reply, browser.welcome.reply_to);
  browser.close();
  await nc.close();
});

test('history: messages carry seq; a client resuming on another node gets exactly what it missed, or history_lost', async () => {
  const env = { HISTORY_SUBJECTS: 'news.>', HISTORY_MAX_MSGS: '5' };
  const c = await node(env);
  const d = await node(env);
  const reader = await TestClient.connect(c.url);
  assert.equal((await reader.call({ op: 'sub', subject: 'news.>', id: '1' })).op, 'ok');
  const writer = await TestClient.connect(d.url);
  // The writer publishes with acks; the reader on the other node sees each with its sequence.
  const seqs: number[] = [];
  for (const n of [1, 2]) {
    assert.equal((await writer.call({ subject: 'news.tech', text: `n${n}`, id: `w${n}` })).op, 'ok');
    const m = await reader.next((f) => f.subject === 'news.tech');
    assert.equal(unb64(m.body), `n${n}`);
    assert.equal(typeof m.seq, 'number');
    seqs.push(m.seq as number);
  }
  assert.ok(seqs[1]! > seqs[0]!);
  const lastSeen = seqs[1]!;
  reader.close();
  await reader.closed;
  // While the reader is away: three more.
  for (const n of [3, 4, 5]) assert.equal((await writer.call({ subject: 'news.tech', text: `n${n}`, id: `w${n}` })).op, 'ok');
  // It comes back on the other node and resumes.
  const back = await TestClient.connect(d.url);
  back.send({ op: 'sub', subject: 'news.>', since: lastSeen, id: 'resume' });
  await back.next((f) => f.op === 'ok' && f.id === 'resume');
  const missed = back.frames.filter((f) => f.subject === 'news.tech');
  assert.deepEqual(missed.map((f) => unb64(f.body)), ['n3', 'n4', 'n5']);
  assert.ok(missed.every((f) => (f.seq as number) > lastSeen));
  assert.equal(back.frames.filter((f) => f.op === 'history_lost').length, 0);
  // Live messages keep coming after the replay.
  await writer.call({ subject: 'news.tech', text: 'n6', id: 'w6' });
  assert.equal(unb64((await back.next((f) => f.subject === 'news.tech' && unb64(f.body) === 'n6')).body), 'n6');
  back.close();

  // Past the window (5 messages): resuming from the first sequence says history_lost first.
  for (const n of [7, 8, 9, 10, 11, 12]) await writer.call({ subject: 'news.tech', text: `n${n}`, id: `w${n}` });
  const late = await TestClient.connect(c.url);
  late.send({ op: 'sub', subject: 'news.>', since: seqs[0]!, id: 'late' });
  const lostFrame = await late.next((f) => f.op === 'history_lost');
  assert.equal(lostFrame.subject, 'news.>');
  assert.equal(lostFrame.since, seqs[0]);
  await late.next((f) => f.op === 'ok' && f.id === 'late');
  const kept = late.frames.filter((f) => f.subject === 'news.tech').map((f) => unb64(f.body));
  assert.deepEqual(kept, ['n8', 'n9', 'n10', 'n11', 'n12']);
  // A subject without history refuses since.
  assert.equal((await late.call({ op: 'sub', subject: 'chat.>', since: 1, id: 'x' })).code, 'history_unavailable');
  late.close();
  writer.close();
});

test('SDK: after a reconnect a subscription resumes from the last sequence it saw', async () => {
  const { connect } = await import('../src/sdk/client.ts');
  const env = { HISTORY_SUBJECTS: 'feed.>' };
  const first = await node(env);
  const port = new URL(first.url).port;
  const writerNode = await node(env);
  const sdk = connect(first.url, { reconnect: { baseMs: 50, maxMs: 200 } });
  await sdk.ready();
  const got: string[] = [];
  let notify: () => void = () => {};
  sdk.subscribe('feed.>', (m) => { got.push(`${m.text()}@${m.seq}`); notify(); });
  await sdk.publishAck('feed.x', 'one');
  while (got.length < 1) await bounded(new Promise<void>((r) => (notify = r)), 'the first feed message');
  // Its node goes away; messages are published elsewhere meanwhile; the node comes back.
  first.proc.kill('SIGTERM');
  await first.exit;
  const w = await TestClient.connect(writerNode.url);
  for (const t of ['two', 'three']) await w.call({ subject: 'feed.x', text: t, id: t });
  const again = await spawnCli(['serve', '--listen', `127.0.0.1:${port}`, '--nats', nats.url], { ...env, PRESENCE_TTL_SEC: '2' });
  after(() => { again.proc.kill('SIGTERM'); });
  while (got.length < 3) await bounded(new Promise<void>((r) => (notify = r)), 'the missed feed messages after the node came back');
  assert.deepEqual(got.map((g) => g.split('@')[0]), ['one', 'two', 'three']);
  const seqs = got.map((g) => Number(g.split('@')[1]));
  assert.ok(seqs[0]! < seqs[1]! && seqs[1]! < seqs[2]!);
  sdk.close();
  w.close();
});

test('acknowledged delivery: unacked messages come again after ack_wait and, marked, on resume at another node', async () => {
  // Durables belong to a principal (the JWT sub): the resumed session is the same principal.
  const secret = 'cluster-acked-secret-of-enough-length';
  const env = { HISTORY_SUBJECTS: 'orders.>', JWT_SECRET: secret };
  const { SignJWT } = await import('jose');
  const token = await new SignJWT({ sub: 'shop-reader' }).setProtectedHeader({ alg: 'HS256' }).setExpirationTime('10m').sign(new TextEncoder().encode(secret));
  const c = await node(env);
  const d = await node(env);
  const writer = await TestClient.connect(`${d.url}?token=${token}`);
  const reader = await TestClient.connect(`${c.url}?token=${token}`);
  assert.equal((await reader.call({ op: 'sub', subject: 'orders.>', ack: true, durable: 'shop-1', ack_wait_ms: 400, id: 's' })).op, 'ok');
  for (const n of ['o1', 'o2']) assert.equal((await writer.call({ subject: 'orders.new', text: n, id: n })).op, 'ok');
  const o1 = await reader.next((f) => f.subject === 'orders.new' && unb64(f.body) === 'o1');
  const o2 = await reader.next((f) => f.subject === 'orders.new' && unb64(f.body) === 'o2');
  assert.equal(o1.redelivered, undefined);
  assert.equal((await reader.call({ op: 'ack', seq: o1.seq, id: 'a1' })).op, 'ok');
  // o2 was not acked: it comes again after ack_wait, marked, with the same seq; o1 does not.
  const again = await reader.next((f) => f.subject === 'orders.new' && f.redelivered !== undefined, 5000);
  assert.equal(unb64(again.body), 'o2');
  assert.equal(again.seq, o2.seq);
  assert.equal(again.redelivered, 1);
  assert.equal((await reader.call({ op: 'ack', seq: o2.seq, id: 'a2' })).op, 'ok');
  assert.equal((await reader.call({ op: 'ack', seq: 999999, id: 'bad' })).code, 'unknown_seq');

  // Mid-stream: two more arrive, the reader drops without acking, resumes on the other node.
  for (const n of ['o3', 'o4']) await writer.call({ subject: 'orders.new', text: n, id: n });
  await reader.next((f) => unb64(f.body) === 'o3');
  await reader.next((f) => unb64(f.body) === 'o4');
  reader.close();
  await reader.closed;
  const resumed = await TestClient.connect(`${d.url}?token=${token}`);
  assert.equal((await resumed.call({ op: 'sub', subject: 'orders.>', ack: true, durable: 'shop-1', ack_wait_ms: 400, id: 's2' })).op, 'ok');
  // At least once: the unacked tail arrives (a message may come twice; seq tells), each marked
  // as a redelivery, and nothing that was acked comes back.
  const tail = new Map<number, Record<string, unknown>>();
  const seen: string[] = [];
  while (tail.size < 2) {
    const f = await resumed.next((x) => x.subject === 'orders.new', 5000);
    seen.push(unb64(f.body));
    if (!tail.has(f.seq as number)) {
      tail.set(f.seq as number, f);
      await resumed.call({ op: 'ack', seq: f.seq, id: `ack${f.seq}` });
    }
  }
  assert.deepEqual([...tail.values()].map((f) => unb64(f.body)).sort(), ['o3', 'o4']);
  assert.ok([...tail.values()].every((f) => (f.redelivered as number) >= 1), 'marked as redeliveries');
  await writer.call({ subject: 'orders.new', text: 'marker', id: 'm' });
  for (;;) {
    const f = await resumed.next((x) => x.subject === 'orders.new', 5000);
    seen.push(unb64(f.body));
    if (unb64(f.body) === 'marker') break;
  }
  assert.ok(!seen.includes('o1') && !seen.includes('o2'), `acked messages never come back: ${seen.join(',')}`);
  resumed.close();
  writer.close();
});

test('SDK: acked subscriptions ack after the handler resolves; a rejecting handler gets the message again', async () => {
  const { connect } = await import('../src/sdk/client.ts');
  const n = await node({ HISTORY_SUBJECTS: 'jobs.>' });
  const sdk = connect(n.url);
  await sdk.ready();
  const attempts: Array<{ text: string; redelivered: number | undefined }> = [];
  let done: () => void = () => {};
  const finished = bounded(new Promise<void>((r) => (done = r)), 'photo-1 acked on its second try');
  let delivered: () => void = () => {};
  const sub = sdk.subscribe('jobs.>', async (m) => {
    attempts.push({ text: m.text(), redelivered: m.redelivered });
    delivered();
    if (m.text() !== 'photo-1') return;
    if (attempts.filter((a) => a.text === 'photo-1').length === 1) throw new Error('first try fails');
    done();
  }, { ack: { durable: 'sdk-worker', ackWaitMs: 300 } });
  await sub.ready; // the durable exists: it starts with what is published from now on
  await sdk.publishAck('jobs.resize', 'photo-1');
  await finished;
  assert.deepEqual(attempts.filter((a) => a.text === 'photo-1').map((a) => a.redelivered ?? 0).slice(0, 2), [0, 1]);
  // Acked on the second try: a publish acknowledged after it is the only new delivery.
  const before = attempts.length;
  await sdk.publishAck('jobs.resize', 'photo-2');
  while (!attempts.some((a) => a.text === 'photo-2')) await bounded(new Promise<void>((r) => (delivered = r)), 'photo-2 delivered');
  assert.ok(attempts.slice(before).every((a) => a.text === 'photo-2'), 'photo-1 was not delivered again');
  sdk.close();
});
