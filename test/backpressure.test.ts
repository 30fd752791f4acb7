// Slow consumers: a client that stops reading is closed with 1013 (policy close) or has messages
// dropped (policy drop); the bytes the gateway holds for it stay bounded, answers to its own ops
// included; fast sessions keep their traffic; a low bound does not close healthy readers.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type net from 'node:net';
import { startGateway, withGateway, TestClient } from './helpers.ts';
import type { Gateway } from '../src/gateway/gateway.ts';
import { FLUSH_BYTES, WRITE_OVERHEAD_BYTES } from '../src/sessions/preframed.ts';

const BOUND = 65536;
const socketOf = (c: TestClient) => (c.ws as unknown as { _socket: net.Socket })._socket;
/** What the gateway's own accounting says it holds for a session (undefined once it is gone). */
const queued = (gw: Gateway, id: unknown) => gw.listSessions().find((s) => s.id === id)?.queued_bytes;
const tick = () => new Promise((r) => setImmediate(r));

async function flood(policy: 'close' | 'drop') {
  const gw = await startGateway({ MAX_BUFFERED_BYTES: String(BOUND), SLOW_CONSUMER_POLICY: policy });
  const slow = await TestClient.connect(gw);
  const fast = await TestClient.connect(gw);
  await slow.call({ op: 'sub', subject: 'firehose', id: '1' });
  await fast.call({ op: 'sub', subject: 'firehose', id: '1' });
  // Stop reading on the slow client: the kernel buffers fill, then the server's ws buffer grows.
  socketOf(slow).pause();
  const body = Buffer.alloc(16 * 1024, 1);
  // Publish until the policy has acted (bounded loop, each step yields so sockets make progress).
  for (let i = 0; i < 2000 && gw.hub.stats.slowConsumerCloses + gw.hub.stats.slowConsumerDrops === 0; i++) {
    gw.publish({ subject: 'firehose', body });
    if (i % 20 === 0) await tick();
  }
  return { gw, slow, fast };
}

test('policy close: slow consumer closed with 1013, fast session unaffected', async () => {
  const { gw, slow, fast } = await flood('close');
  assert.equal(gw.hub.stats.slowConsumerCloses, 1);
  socketOf(slow).resume();
  assert.equal((await slow.closed).code, 1013);
  fast.send({ subject: 'firehose', text: 'still here' });
  await fast.next((f) => f.subject === 'firehose' && Buffer.from(String(f.body), 'base64').toString() === 'still here', 10_000);
  fast.close();
  await gw.shutdown();
});

test('policy drop: messages to the slow consumer are dropped and counted; once it drained, it is served again', async () => {
  const { gw, slow, fast } = await flood('drop');
  assert.equal(gw.hub.stats.slowConsumerDrops, 1);
  const info = gw.listSessions().find((s) => s.id === slow.welcome.session)!;
  assert.ok(info.counters.dropped >= 1);
  socketOf(slow).resume();
  // Wait (bounded) until the gateway holds nothing more for it: it read what was queued.
  for (let i = 0; i < 2000 && (queued(gw, slow.welcome.session) ?? 0) > 0; i++) await new Promise((r) => setTimeout(r, 10));
  assert.equal(queued(gw, slow.welcome.session), 0);
  assert.equal((await slow.call({ op: 'ping', id: 'alive' })).op, 'pong');
  slow.close();
  fast.close();
  await gw.shutdown();
});

// The memory test: a client that never reads and keeps asking (pings: answers the gateway must
// not drop) while messages for it keep coming. Whatever the policy, what the gateway holds for
// it never exceeds the bound plus one tick's batch plus one frame, and the session ends with 1013.
for (const policy of ['close', 'drop'] as const) {
  test(`a client that never reads (policy ${policy}): the bytes held for it stay bounded, answers included`, async () => {
    await withGateway({ MAX_BUFFERED_BYTES: String(BOUND), SLOW_CONSUMER_POLICY: policy, PING_INTERVAL_SEC: '0' }, async (gw) => {
      const deaf = await TestClient.connect(gw);
      await deaf.call({ op: 'sub', subject: 'feed', id: 's' });
      socketOf(deaf).pause();
      const id = deaf.welcome.session;
      const body = Buffer.alloc(1024, 2);
      const ping = JSON.stringify({ op: 'ping', id: 'p'.repeat(200) });
      // The bound, plus one tick's batch (its bytes and the per-write overhead of its frames, two
      // writes each), plus one frame.
      const pong = ping.length;
      const limit = BOUND + FLUSH_BYTES + Math.ceil(FLUSH_BYTES / pong) * 2 * WRITE_OVERHEAD_BYTES + 4096;
      let most = 0;
      let sent = 0;
      for (let i = 0; i < 20_000 && gw.hub.stats.slowConsumerCloses === 0; i++) {
        for (let j = 0; j < 50; j++) deaf.ws.send(ping);
        gw.publish({ subject: 'feed', body });
        sent += 50 * ping.length;
        await tick();
        most = Math.max(most, queued(gw, id) ?? 0);
      }
      assert.equal(gw.hub.stats.slowConsumerCloses, 1, `closed as a slow consumer (after ${sent} bytes of pings)`);
      assert.ok(most <= limit, `held at most ${most} bytes (limit ${limit})`);
      assert.ok(most > BOUND / 2, `the bound was really reached (${most})`);
      assert.ok(gw.hub.totals.dropped >= 1, 'counted as dropped');
      for (let i = 0; i < 1000 && gw.hub.sessions.has(String(id)); i++) await new Promise((r) => setTimeout(r, 10));
      socketOf(deaf).resume();
      assert.equal((await deaf.closed).code, 1013);
    });
  });
}

test('tiny answers count with their bookkeeping, not only their bytes', async () => {
  await withGateway({ MAX_BUFFERED_BYTES: String(BOUND), SLOW_CONSUMER_POLICY: 'drop', PING_INTERVAL_SEC: '0' }, async (gw) => {
    const deaf = await TestClient.connect(gw);
    socketOf(deaf).pause();
    const session = gw.hub.sessions.get(String(deaf.welcome.session))!;
    const ping = JSON.stringify({ op: 'ping' }); // answered by a 13-byte pong
    let ratio = 0;
    for (let i = 0; i < 20_000 && gw.hub.stats.slowConsumerCloses === 0; i++) {
      for (let j = 0; j < 200; j++) deaf.ws.send(ping);
      await tick();
      const payload = session.socket.bufferedAmount;
      const counted = queued(gw, deaf.welcome.session) ?? 0;
      if (payload > 0 && counted > BOUND / 2) ratio = Math.max(ratio, counted / payload);
    }
    assert.equal(gw.hub.stats.slowConsumerCloses, 1);
    // Two writes of 256 counted bytes each per 13-byte pong: far more than the payload.
    assert.ok(ratio > 10, `counted / payload bytes = ${ratio.toFixed(1)}`);
  });
});

test('a low MAX_BUFFERED_BYTES does not close a healthy reader: batched bytes are not buffered bytes', async () => {
  await withGateway({ MAX_BUFFERED_BYTES: '4096' }, async (gw) => {
    const reader = await TestClient.connect(gw);
    await reader.call({ op: 'sub', subject: 'burst', id: 's' });
    // 200 messages of 1 KiB routed in one tick: far more than 4096 bytes corked at once.
    for (let i = 0; i < 200; i++) gw.publish({ subject: 'burst', body: Buffer.alloc(1024, i) });
    for (let i = 0; i < 200; i++) await reader.next((f) => f.subject === 'burst');
    assert.equal(gw.hub.stats.slowConsumerCloses, 0);
    assert.equal((await reader.call({ op: 'ping', id: 'ok' })).op, 'pong');
    reader.close();
  });
});
