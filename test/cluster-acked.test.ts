// Acknowledged delivery when a session goes: its unacknowledged messages are given back at once
// (not after ack_wait) to the next consumer of the durable, each exactly once and marked
// `redelivered`; messages it never saw come unmarked.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnCli, TestClient, unb64 } from './helpers.ts';
import type { Frame } from './helpers.ts';
import { startNats } from './nats-helpers.ts';

const nats = await startNats();
after(() => nats.stop());

const SECRET = 'cluster-acked-redelivery-secret-32b';
const ENV = { HISTORY_SUBJECTS: 'work.>', JWT_SECRET: SECRET, PRESENCE_TTL_SEC: '3' };
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
const { SignJWT } = await import('jose');
const token = await new SignJWT({ sub: 'worker' }).setProtectedHeader({ alg: 'HS256' }).setExpirationTime('10m').sign(new TextEncoder().encode(SECRET));
const a = await node();
const b = await node();

test('a closing session gives its unacked messages back at once; each comes once, marked redelivered', async () => {
  const writer = await TestClient.connect(`${a.url}?token=${token}`);
  const ACK_WAIT = 30_000; // far longer than the test may wait: redelivery must not wait for it
  for (let round = 1; round <= 5; round++) {
    const durable = `round-${round}`;
    const first = await TestClient.connect(`${a.url}?token=${token}`);
    assert.equal((await first.call({ op: 'sub', subject: 'work.>', ack: true, durable, ack_wait_ms: ACK_WAIT, id: 's' })).op, 'ok');
    const texts = [1, 2, 3, 4].map((n) => `r${round}-m${n}`);
    for (const t of texts) assert.equal((await writer.call({ subject: 'work.item', text: t, id: t })).op, 'ok');
    // The first session sees all four, acks the first, and goes.
    const seen: Frame[] = [];
    for (let i = 0; i < 4; i++) seen.push(await first.next((f) => f.subject === 'work.item'));
    assert.deepEqual(seen.map((f) => unb64(f.body)), texts);
    assert.ok(seen.every((f) => f.redelivered === undefined));
    await first.call({ op: 'ack', seq: seen[0]!.seq, id: 'a' });
    first.close();
    await first.closed;
    const t0 = Date.now();
    const next = await TestClient.connect(`${b.url}?token=${token}`);
    assert.equal((await next.call({ op: 'sub', subject: 'work.>', ack: true, durable, ack_wait_ms: ACK_WAIT, id: 's' })).op, 'ok');
    const got = new Map<string, Frame[]>();
    while (got.size < 3) {
      const f = await next.next((x) => x.subject === 'work.item', 10_000).catch((e: Error) => { throw new Error(`round ${round}: ${e.message}; got ${JSON.stringify([...got.keys()])} after ${Date.now() - t0} ms`); });
      const k = unb64(f.body);
      got.set(k, [...(got.get(k) ?? []), f]);
      await next.call({ op: 'ack', seq: f.seq, id: `a${f.seq}` });
    }
    assert.ok(Date.now() - t0 < 10_000, `round ${round}: back in ${Date.now() - t0} ms, not after ack_wait (${ACK_WAIT} ms)`);
    // One more, never delivered to anyone: it comes unmarked. Then a marker: nothing came twice before it.
    const fresh = `r${round}-fresh`;
    await writer.call({ subject: 'work.item', text: fresh, id: fresh });
    await writer.call({ subject: 'work.item', text: `r${round}-marker`, id: `r${round}-marker` });
    for (;;) {
      const f = await next.next((x) => x.subject === 'work.item', 10_000);
      const k = unb64(f.body);
      got.set(k, [...(got.get(k) ?? []), f]);
      await next.call({ op: 'ack', seq: f.seq, id: `a${f.seq}` });
      if (k === `r${round}-marker`) break;
    }
    assert.deepEqual([...got.keys()].sort(), [...texts.slice(1), fresh, `r${round}-marker`].sort(), `round ${round}: the acked one does not come back`);
    for (const [k, frames] of got) {
      assert.equal(frames.length, 1, `round ${round}: ${k} came ${frames.length} times`);
      if (texts.includes(k)) assert.ok((frames[0]!.redelivered as number) >= 1, `round ${round}: ${k} is marked redelivered`);
      else assert.equal(frames[0]!.redelivered, undefined, `round ${round}: ${k} was never delivered before, so it is not marked`);
    }
    next.close();
  }
  writer.close();
  // Counted: given back on the node the sessions left, delivered again on the other.
  const metric = async (url: string, name: string) => Number(new RegExp(`^${name} (\\d+)`, 'm').exec(await (await fetch(url.replace('ws://', 'http://').replace(/\/ws$/, '/metrics'))).text())?.[1] ?? 'NaN');
  assert.ok((await metric(a.url, 'wsbridge_history_given_back_total')) >= 15, 'three per round given back');
  assert.ok((await metric(b.url, 'wsbridge_history_redeliveries_total')) >= 15, 'three per round redelivered');
});
