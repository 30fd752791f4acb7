// The consumer imports a component gets: errors travel as jco expects (a thrown { payload }), and
// with an acknowledging bus, publish waits for the ack and reports a refusal.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { consumerImports } from '../src/components/host-imports.ts';
import { ok, err } from '../src/gateway/messaging.ts';

const guard = () => ({ retired: false, resources: new Set<{ destroy(): void }>() });
const msg = { subject: 'a', body: new Uint8Array([1]), replyTo: undefined };

test('publish: ok returns, err throws its payload; a retired instance is refused', () => {
  const calls: string[] = [];
  const host = { publish: (m: { subject: string }) => (calls.push(m.subject), m.subject === 'bad' ? err('invalid subject: x') : ok(undefined)), request: async () => err('unused') };
  const g = guard();
  const c = (consumerImports(host, g)['wasmcloud:messaging/consumer@0.2.0'] as { publish(m: unknown): unknown });
  assert.equal(c.publish(msg), undefined);
  assert.throws(() => c.publish({ ...msg, subject: 'bad' }), (e: any) => e.payload === 'invalid subject: x');
  g.retired = true;
  assert.throws(() => c.publish(msg), (e: any) => e.payload === 'instance retired');
  assert.deepEqual(calls, ['a', 'bad']);
});

test('publish with an acknowledging bus resolves after the ack, or rejects with the refusal', async () => {
  let release: (r: ReturnType<typeof ok> | ReturnType<typeof err>) => void = () => {};
  const host = {
    publish: () => ok(undefined),
    publishAcked: () => new Promise<any>((r) => (release = r)),
    request: async () => err('unused'),
  };
  const c = (consumerImports(host, guard())['wasmcloud:messaging/consumer'] as { publish(m: unknown): Promise<void> });
  let settled = false;
  const p = c.publish(msg).then(() => (settled = true));
  await new Promise((r) => setImmediate(r));
  assert.equal(settled, false, 'waits for the ack');
  release(ok(undefined));
  await p;
  const refused = c.publish(msg);
  release(err('bus_unavailable: NATS is unreachable'));
  await assert.rejects(refused, (e: any) => e.payload === 'bus_unavailable: NATS is unreachable');
});
