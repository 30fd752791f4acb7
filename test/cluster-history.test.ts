// Stream positions and epochs: a sub to a history subject answers with the stream's position, a
// resume from it gets exactly what was missed (even with no message seen before), an unknown
// epoch or a position the stream never reached says history_lost, and the SDK resumes from the
// position it was given, fails over between gateway URLs, and retries a resume or an acked
// subscription that failed instead of skipping the gap.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnCli, TestClient, unb64, bounded } from './helpers.ts';
import { startNatsWithConfig, freePort } from './nats-helpers.ts';
import type { Message, RequestError } from '../src/sdk/client.ts';

const natsPort = await freePort();
const confDir = mkdtempSync(join(tmpdir(), 'wsbridge-history-conf-'));
const conf = join(confDir, 'nats.conf');
// One user; the test can take away (and give back) its right to create JetStream consumers by
// rewriting this file and sending the server SIGHUP: replays and new durables then fail while
// the live consumers made at start keep delivering.
const storeDir = mkdtempSync(join(tmpdir(), 'wsbridge-history-js-'));
function permissions(denyConsumers: boolean): void {
  const deny = denyConsumers ? ', deny: ["$JS.API.CONSUMER.CREATE.>", "$JS.API.CONSUMER.DURABLE.CREATE.>"]' : '';
  writeFileSync(conf, `listen: "127.0.0.1:${natsPort}"\njetstream { store_dir: "${storeDir}" }\nauthorization { users = [ { user: gw, password: pw, permissions: { publish: { allow: [">"]${deny} } } } ] }\n`);
}
permissions(false);
const nats = await startNatsWithConfig(natsPort, conf);
after(() => nats.stop());
async function reload(denyConsumers: boolean): Promise<void> {
  permissions(denyConsumers);
  await nats.reload();
}

const ENV = { HISTORY_SUBJECTS: 'pos.>,feed.>,gap.>,jobs.>', NATS_USER: 'gw', NATS_PASSWORD: 'pw', PRESENCE_TTL_SEC: '3' };
async function node() {
  const n = await spawnCli(['serve', '--listen', '127.0.0.1:0', '--nats', nats.url], ENV);
  after(async () => {
    if (n.proc.exitCode === null && n.proc.signalCode === null) {
      n.proc.kill('SIGKILL');
      await n.exit;
    }
  });
  return { ...n, url: n.match![1]! };
}
const c = await node();
const d = await node();

async function publish(url: string, subject: string, texts: string[]): Promise<number[]> {
  const w = await TestClient.connect(url);
  try {
    for (const t of texts) {
      const r = await w.call({ subject, text: t, id: t });
      assert.equal(r.op, 'ok', JSON.stringify(r));
    }
    return [];
  } finally {
    w.close();
  }
}

test('a sub with history answers its position; resuming from it gets exactly what was missed, even with no message seen', async () => {
  const r = await TestClient.connect(c.url);
  const ok = await r.call({ op: 'sub', subject: 'pos.>', id: 's' });
  assert.equal(ok.op, 'ok');
  assert.equal(typeof ok.seq, 'number');
  assert.match(String(ok.epoch), /^[A-Za-z0-9_-]{1,64}$/);
  r.close();
  await r.closed;
  await publish(d.url, 'pos.a', ['p1', 'p2', 'p3']);
  const back = await TestClient.connect(d.url);
  back.send({ op: 'sub', subject: 'pos.>', since: ok.seq, epoch: ok.epoch, id: 'r' });
  const done = await back.next((f) => f.op === 'ok' && f.id === 'r');
  assert.deepEqual(back.frames.filter((f) => f.subject === 'pos.a').map((f) => unb64(f.body)), ['p1', 'p2', 'p3']);
  assert.equal(back.frames.filter((f) => f.op === 'history_lost').length, 0);
  assert.equal(done.epoch, ok.epoch);
  assert.ok((done.seq as number) >= (ok.seq as number) + 3);

  // An epoch this stream does not have: history_lost (reason epoch) first, then all that is stored.
  const other = await TestClient.connect(c.url);
  other.send({ op: 'sub', subject: 'pos.>', since: 2, epoch: 'not-this-stream', id: 'e' });
  const lost = await other.next((f) => f.op === 'history_lost');
  assert.deepEqual([lost.reason, lost.epoch, lost.id, lost.since], ['epoch', ok.epoch, 'e', 2]);
  await other.next((f) => f.op === 'ok' && f.id === 'e');
  assert.deepEqual(other.frames.filter((f) => f.subject === 'pos.a').map((f) => unb64(f.body)), ['p1', 'p2', 'p3']);
  // A position this stream never reached (no epoch given): the stream is another one.
  other.send({ op: 'sub', subject: 'pos.>', since: 1_000_000, id: 'f' });
  assert.equal((await other.next((f) => f.op === 'history_lost' && f.id === 'f')).reason, 'epoch');
  await other.next((f) => f.op === 'ok' && f.id === 'f');
  // epoch belongs with since.
  assert.equal((await other.call({ op: 'sub', subject: 'pos.>', epoch: ok.epoch, id: 'g' })).code, 'bad_request');
  other.close();
  back.close();
});

test('SDK: resumes from the position of its sub before any message, failing over to another gateway URL', async () => {
  const { connect } = await import('../src/sdk/client.ts');
  const x = await node();
  const y = await node();
  const sdk = connect([x.url, y.url], { reconnect: { baseMs: 50, maxMs: 200 } });
  await sdk.ready();
  const got: string[] = [];
  let notify: () => void = () => {};
  const sub = sdk.subscribe('feed.>', (m: Message) => { got.push(m.text()); notify(); });
  await sub.ready;
  // The gateway it is on goes away before any message; five are published on the other one.
  const [gone, stays] = sdk.url === x.url ? [x, y] : [y, x];
  gone.proc.kill('SIGKILL');
  await gone.exit;
  await publish(stays.url, 'feed.x', ['one', 'two', 'three', 'four', 'five']);
  while (got.length < 5) await bounded(new Promise<void>((r) => (notify = r)), 'the five messages after failing over');
  assert.equal(sdk.url, stays.url);
  assert.deepEqual(got, ['one', 'two', 'three', 'four', 'five']);
  sdk.close();
});

test('SDK: a resume that fails is told with its id, takes no live messages, and is retried until nothing is skipped; an acked sub recovers without a reconnect', async () => {
  const { connect } = await import('../src/sdk/client.ts');
  const frames: Array<Record<string, unknown>> = [];
  // The socket the SDK opened last, so the test can drop it as a network failure would, and a
  // switch that makes its dials fail (a closed port) while it is "offline".
  let socket: WebSocket | undefined;
  let offline = false;
  const Tracked = class extends WebSocket {
    constructor(url: string | URL, protocols?: string | string[]) {
      super(offline ? 'ws://127.0.0.1:1/ws' : url, protocols);
      socket = this;
    }
  };
  const sdk = connect(c.url, { WebSocket: Tracked, reconnect: { baseMs: 50, maxMs: 200 }, onFrame: (dir, f) => { frames.push({ dir, ...f }); } });
  await sdk.ready();
  const got: string[] = [];
  let notify: () => void = () => {};
  const errors: string[] = [];
  const sub = sdk.subscribe('gap.>', (m: Message) => { got.push(m.text()); notify(); });
  sub.onError((e: RequestError) => errors.push(e.code));
  await sub.ready;
  await publish(d.url, 'gap.x', ['m1']);
  while (got.length < 1) await bounded(new Promise<void>((r) => (notify = r)), 'm1');
  const waitFor = (what: string, cond: () => boolean) => bounded((async () => { while (!cond()) await new Promise((r) => setTimeout(r, 20)); })(), what);
  try {
    await reload(true);
    const before = frames.length;
    const session = sdk.session.session;
    offline = true;
    socket!.close();
    await waitFor('the SDK to notice', () => sdk.session.state === 'reconnecting');
    await publish(d.url, 'gap.x', ['m2', 'm3']);
    offline = false;
    await waitFor('the failed resume to be reported', () => errors.includes('bus_unavailable')).catch((e: Error) => { throw new Error(`${e.message}: ${JSON.stringify(frames.slice(before))}\n${c.output().slice(-3000)}`); });
    assert.notEqual(sdk.session.session, session, 'a new session');
    const failed = frames.slice(before).find((f) => f.op === 'error' && f.code === 'bus_unavailable');
    assert.ok(failed, 'an error frame for the resume');
    assert.equal(typeof failed.id, 'string', 'the error frame carries the sub\'s id');
    // While the resume keeps failing, live messages do not reach the subscription (they would move its position past the gap).
    await publish(d.url, 'gap.x', ['m4']);
    await new Promise((r) => setTimeout(r, 500)); // a window in which m4 could (wrongly) arrive; there is no event for "nothing came"
    assert.deepEqual(got, ['m1'], JSON.stringify(frames.slice(before)));
    assert.equal(sub.state, 'pending');
    // An acked subscription taken now fails the same way and stays pending.
    const jobs: string[] = [];
    const acked = sdk.subscribe('jobs.>', (m: Message) => { jobs.push(m.text()); }, { ack: { durable: 'retrying', ackWaitMs: 1000 } });
    const ackedErrors: string[] = [];
    acked.onError((e: RequestError) => ackedErrors.push(e.code));
    await waitFor('the acked sub to be refused for now', () => ackedErrors.includes('bus_unavailable'));
    assert.equal(acked.state, 'pending');
    await reload(false);
    while (got.length < 4) await bounded(new Promise<void>((r) => (notify = r)), 'the retried resume');
    assert.deepEqual(got, ['m1', 'm2', 'm3', 'm4']);
    await bounded(acked.ready, 'the acked sub after the retry');
    assert.equal(acked.state, 'active');
    await publish(d.url, 'jobs.x', ['j1']);
    await waitFor('j1 on the recovered acked sub', () => jobs.includes('j1'));
  } finally {
    await reload(false);
    sdk.close();
  }
});
