// DurableDelivery.resume against a bus whose live side misbehaves as a stalled node's did (issue
// 23: after a replay of 820…959 came the old backlog 204…1099 again): per subscription, no live
// message at or below the last sequence already sent goes out, and order holds.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DurableDelivery } from '../src/sessions/durable-delivery.ts';
import type { Bus, BusHandler, BusMessage, ReplaySink, StreamPosition } from '../src/bus/bus.ts';
import type { Session } from '../src/sessions/session.ts';

function fakeSession() {
  const delivered: number[] = [];
  const frames: Array<Record<string, unknown>> = [];
  const subscriptions = new Map<string, () => void>();
  const s = {
    id: 's1', principal: 'p', closed: false, subscriptions, hasSubscriptions: true,
    deliver: (m: BusMessage) => { delivered.push(m.seq!); return true; },
    sendFrame: (f: Record<string, unknown>) => { frames.push(f); return true; },
  };
  return { session: s as unknown as Session, delivered, frames };
}

test('resume: the live side never sends a sequence at or below what the subscription already got', async () => {
  let live: BusHandler | undefined;
  let finishReplay: () => void = () => {};
  const position: StreamPosition = { seq: 959, epoch: 'e1' };
  const bus = {
    nodeId: 'n',
    publish: () => undefined,
    close: async () => {},
    hasHistory: () => true,
    subscribe: (_p: string, h: BusHandler) => { live = h; return { subject: 'x', queue: undefined, unsubscribe: () => { live = undefined; } }; },
    replay: async (_p: string, since: number, _e: string | undefined, sink: ReplaySink) => {
      // Live messages arrive while the replay runs: some the replay also sends, some older.
      for (const seq of [950, 960, 205]) live!({ subject: 'a.b', body: new Uint8Array(), replyTo: null, seq });
      for (let seq = since + 1; seq <= 959; seq++) sink.deliver({ subject: 'a.b', body: new Uint8Array(), replyTo: null, seq });
      await new Promise<void>((r) => (finishReplay = r));
      return { lost: false, firstSeq: 1, lastSeq: 959, position };
    },
  } as unknown as Bus;
  const d = new DurableDelivery(bus, { error: () => assert.fail('no error expected'), changed: () => {}, failed: () => {} });
  const { session, delivered, frames } = fakeSession();
  d.resume(session, 'a.>', undefined, 819, 'e1', 'r');
  await new Promise((r) => setImmediate(r));
  finishReplay();
  await new Promise((r) => setImmediate(r));
  // The stalled node's old backlog comes live after the replay, then new ones.
  for (const seq of [204, 500, 959, 961, 960, 962]) live!({ subject: 'a.b', body: new Uint8Array(), replyTo: null, seq });
  const expected = [...Array.from({ length: 959 - 819 }, (_, i) => 820 + i), 960, 961, 962];
  assert.deepEqual(delivered, expected);
  assert.deepEqual(frames.find((f) => f.op === 'ok'), { op: 'ok', id: 'r', seq: 960, epoch: 'e1' });
});
