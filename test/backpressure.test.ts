// Slow consumers: a client that stops reading is closed with 1013 (policy close) or has messages
// dropped (policy drop); memory stays bounded and fast sessions keep their traffic.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type net from 'node:net';
import { startGateway, TestClient } from './helpers.ts';

async function flood(policy: 'close' | 'drop') {
  const gw = await startGateway({ MAX_BUFFERED_BYTES: '65536', SLOW_CONSUMER_POLICY: policy });
  const slow = await TestClient.connect(gw);
  const fast = await TestClient.connect(gw);
  await slow.call({ op: 'sub', subject: 'firehose', id: '1' });
  await fast.call({ op: 'sub', subject: 'firehose', id: '1' });
  // Stop reading on the slow client: the kernel buffers fill, then the server's ws buffer grows.
  (slow.ws as unknown as { _socket: net.Socket })._socket.pause();
  const body = Buffer.alloc(16 * 1024, 1);
  let received = 0;
  fast.ws.on('message', () => received++);
  // Publish until the policy has acted (bounded loop, each step yields so sockets make progress).
  for (let i = 0; i < 2000 && gw.hub.stats.slowConsumerCloses + gw.hub.stats.slowConsumerDrops === 0; i++) {
    gw.publish({ subject: 'firehose', body });
    if (i % 20 === 0) await new Promise((r) => setImmediate(r));
  }
  return { gw, slow, fast, received: () => received };
}

test('policy close: slow consumer closed with 1013, fast session unaffected', async () => {
  const { gw, slow, fast } = await flood('close');
  assert.equal(gw.hub.stats.slowConsumerCloses, 1);
  (slow.ws as unknown as { _socket: net.Socket })._socket.resume();
  assert.equal((await slow.closed).code, 1013);
  fast.send({ subject: 'firehose', text: 'still here' });
  await fast.next((f) => f.subject === 'firehose' && Buffer.from(String(f.body), 'base64').toString() === 'still here', 10_000);
  fast.close();
  await gw.shutdown();
});

test('policy drop: messages to the slow consumer are dropped and counted, session stays open', async () => {
  const { gw, slow, fast } = await flood('drop');
  assert.equal(gw.hub.stats.slowConsumerDrops, 1);
  const info = gw.listSessions().find((s) => s.id === slow.welcome.session)!;
  assert.ok(info.counters.dropped >= 1);
  (slow.ws as unknown as { _socket: net.Socket })._socket.resume();
  slow.send({ op: 'ping', id: 'alive' });
  assert.equal((await slow.next((f) => f.op === 'pong', 20_000)).id, 'alive');
  slow.close();
  fast.close();
  await gw.shutdown();
});
