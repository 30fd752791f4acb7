// The guest kit's messaging helpers (wsbridge/guest), in a component built from source and run in
// an instance pool: text, JSON and bytes bodies, answers by return value and by reply(), publish,
// request with its answer and its typed errors, and every kind of thrown value, an Error object
// first, coming back as handle-message's err(string) with the instance kept (no trap); also when
// a timer, a microtask or a WebSocket listener throws while the handler's promise is pending.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { WebSocketServer } from 'ws';
import { buildComponent, ROOT } from '../scripts/build-components.ts';
import { loadComponent } from '../src/components/loader.ts';
import { InstancePool } from '../src/components/pool.ts';
import { ok, err } from '../src/gateway/messaging.ts';
import type { BrokerMessage, Result } from '../src/gateway/messaging.ts';
import { once } from './helpers.ts';

const wasm = (await buildComponent(join(ROOT, 'test/fixtures/components/kit-messaging'), { outDir: join(ROOT, 'build/test-components') })).path;
const loaded = await loadComponent(wasm, join(ROOT, 'build/cache'));

const published: BrokerMessage[] = [];
let publishWaiter: (() => void) | undefined;
const pool = new InstancePool(loaded, {
  publish: (m) => {
    published.push(m);
    publishWaiter?.();
  },
  // A stand-in for the gateway: svc.upper answers, svc.silent never does, svc.nobody has no one.
  request: async (subject, body, timeoutMs): Promise<Result<BrokerMessage, string>> => {
    if (subject === 'svc.upper') return ok({ subject: '_INBOX.x', body: Buffer.from(JSON.stringify(Buffer.from(body).toString().toUpperCase())), replyTo: null });
    if (subject === 'svc.silent') return new Promise((resolve) => setTimeout(() => resolve(err(`timeout: no reply on ${subject} within ${timeoutMs} ms`)), timeoutMs));
    if (subject === 'svc.nobody') return err(`no_responders: no subscribers on ${subject}`);
    return err(`invalid_subject: ${JSON.stringify(subject)} is not a subject`);
  },
  outbound: { open: 0, opened: 0, bytesIn: 0, bytesOut: 0 },
  grants: { env: {}, preopens: {} },
  // The listener steps leave their sockets open: room for all of them.
  policy: { allow: [], maxConnections: 8, receiveQueue: 10 },
  defaults: { timeoutMs: 5000, maxMessageBytes: 1 << 20 },
  onWorkerError: () => {},
}, { size: 1, timeoutMs: 20_000, maxQueue: 100 });
await pool.warm();
after(() => pool.close());

/** Calls the component; returns its result and what it published to the reply-to meanwhile. */
async function call(step: string, body: string | Uint8Array = '', replyTo: string | null = '_INBOX.reply'): Promise<{ result: Result<void, string>; replies: BrokerMessage[] }> {
  const before = published.length;
  const result = await pool.call({ subject: `kit.${step}`, body: typeof body === 'string' ? Buffer.from(body) : body, replyTo });
  return { result, replies: published.slice(before).filter((m) => m.subject === replyTo) };
}
const text = (m: BrokerMessage | undefined) => Buffer.from(m!.body).toString();

test('a handler answers with what it returns: text, JSON, bytes; nothing for undefined', async () => {
  let r = await call('text', 'héllo');
  assert.deepEqual(r.result, ok(undefined));
  assert.equal(text(r.replies[0]), 'HÉLLO');
  r = await call('json', '{"a":[1,2]}');
  assert.deepEqual(JSON.parse(text(r.replies[0])), { got: { a: [1, 2] } });
  r = await call('bytes', new Uint8Array([1, 2, 255]));
  assert.deepEqual([...r.replies[0]!.body], [255, 2, 1]);
  r = await call('empty');
  assert.deepEqual([r.result, r.replies.length], [ok(undefined), 0]);
  r = await call('explicit-reply', 'x');
  assert.deepEqual(r.replies.map(text), ['explicit x']);
  r = await call('later', 'async');
  assert.deepEqual(JSON.parse(text(r.replies[0])), { later: 'async' });
});

test('publish: strings as text, objects as JSON, typed arrays as their bytes', async () => {
  const before = published.length;
  const r = await call('publish', 'p');
  assert.deepEqual(r.result, ok(undefined));
  const out = published.slice(before).filter((m) => m.subject === 'kit.out');
  assert.deepEqual(out.map((m) => [...m.body]), [[...Buffer.from('{"published":"p"}')], [...Buffer.from('as text')], [0x41, 0x42]]);
  assert.deepEqual(out.map((m) => m.replyTo), [null, null, null]);
});

test('request resolves with the answer as a Message; failures are MessagingErrors with the gateway code', async () => {
  let r = await call('request', 'shout');
  assert.deepEqual(JSON.parse(text(r.replies[0])), { subject: '_INBOX.x', text: '"SHOUT"', json: 'SHOUT' });
  r = await call('request-errors');
  assert.deepEqual(r.result, ok(undefined));
  assert.deepEqual(JSON.parse(text(r.replies[0])), [[true, 'MessagingError', 'timeout'], [true, 'MessagingError', 'no_responders'], [true, 'MessagingError', 'invalid_subject']]);
});

test('an Error object thrown by a handler returns an error result; the instance is kept', async () => {
  const r = await call('throw-error');
  assert.deepEqual(r.result, err('Error: boom'));
  assert.equal(pool.stats.traps, 0);
  assert.equal(pool.stats.instancesCreated, 1);
});

test('whatever is thrown or rejected becomes err(string), never a trap', async () => {
  const cases: Array<[string, string | RegExp]> = [
    ['throw-type-error', /^TypeError: .*null/],
    ['throw-custom-error', 'QuotaError: over quota'],
    ['throw-string', 'plain string'],
    ['throw-object', '{"code":42,"why":"object"}'],
    ['throw-null', 'null was thrown'],
    ['throw-undefined', 'undefined was thrown'],
    ['throw-number', '7'],
    ['throw-symbol', 'Symbol(sym)'],
    ['throw-bigint', '10'],
    ['throw-revoked-proxy', 'a value that cannot be shown as text was thrown'],
    ['throw-bad-getter', 'a value that cannot be shown as text was thrown'],
    ['throw-cyclic', '[object Object]'],
    ['reject-error', 'RangeError: async boom'],
    ['reject-later', 'Error: late boom'],
    ['thenable-throws', 'Error: then boom'],
    ['bad-json', /^SyntaxError: the body of a message on kit\.bad-json is not JSON/],
    ['bad-subject', 'TypeError: publish: subject must be a non-empty string, got number'],
    ['bad-body', /^TypeError: .*BigInt/],
    ['bad-timeout', /^RangeError: request: options.timeoutMs must be an integer/],
    ['nope', 'Error: unknown step kit.nope'],
  ];
  for (const [step, expected] of cases) {
    const { result } = await call(step, '{not json');
    assert.equal(result.tag, 'err', step);
    if (typeof expected === 'string') assert.equal(result.tag === 'err' && result.val, expected, step);
    else assert.match(result.tag === 'err' ? result.val : '', expected, step);
  }
  const long = await call('throw-long');
  assert.equal(long.result.tag === 'err' && long.result.val, `${'x'.repeat(4096)}…`);
  const noReplyTo = await call('no-reply-to', '', null);
  assert.deepEqual(noReplyTo.result, err('TypeError: reply: the message on kit.no-reply-to has no reply-to'));
  // One instance served every call above, and the next one.
  const count = await call('count');
  assert.equal(pool.stats.traps, 0);
  assert.equal(pool.stats.instancesCreated, 1);
  assert.equal(JSON.parse(text(count.replies[0])).calls, pool.stats.calls);
});

test('an exception thrown by a timer, a microtask or a WebSocket listener fails the call in progress; the instance is kept', async () => {
  // A server that greets every connection, so the component's listener runs.
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  await once(wss, 'listening');
  wss.on('connection', (ws) => ws.send('hello'));
  const url = `ws://127.0.0.1:${(wss.address() as AddressInfo).port}/`;
  try {
    const before = { traps: pool.stats.traps, instances: pool.stats.instancesCreated };
    const cases: Array<[string, string]> = [
      ['timer-throws', 'Error: timer boom'],
      ['interval-throws', 'interval boom 3'],
      ['microtask-throws', 'TypeError: microtask boom'],
      ['listener-throws', 'RangeError: listener boom'],
      ['onmessage-throws', '{"thrown":"by onmessage"}'],
    ];
    for (const [step, expected] of cases) {
      const r = await call(step, url);
      assert.deepEqual(r.result, err(expected), step);
      assert.equal(r.replies.length, 0, step);
    }
    // The function's promise resolves after the call failed: that answers nothing.
    const late = await call('thrown-after-resolving');
    assert.deepEqual([late.result, late.replies.length], [err('Error: thrown after resolving'), 0]);
    const next = await call('later', 'next');
    assert.deepEqual(published.slice(-1).map(text), ['{"later":"next"}'], 'nothing but the next answer');
    assert.ok(!published.some((m) => text(m).includes('already failed')), 'no answer for the failed message');
    assert.deepEqual(next.result, ok(undefined));
    // A rejection nothing awaits is invisible: the call answers with what the handler returned.
    const unawaited = await call('unawaited-rejection');
    assert.deepEqual([unawaited.result, unawaited.replies.map(text)], [ok(undefined), ['answered anyway']]);
    assert.deepEqual({ traps: pool.stats.traps, instances: pool.stats.instancesCreated }, before, 'one instance throughout');
  } finally {
    for (const c of wss.clients) c.terminate();
    wss.close();
  }
});

test('QuickJS builds: the kit works without TextEncoder; a handler returning a promise fails loudly (no event loop to settle it)', async () => {
  const qjs = await loadComponent((await buildComponent(join(ROOT, 'test/fixtures/components/kit-messaging'), { engine: 'quickjs', outDir: join(ROOT, 'build/test-components') })).path, join(ROOT, 'build/cache'));
  const out: BrokerMessage[] = [];
  const p = new InstancePool(qjs, {
    publish: (m) => out.push(m),
    request: async () => err('unused'),
    outbound: { open: 0, opened: 0, bytesIn: 0, bytesOut: 0 },
    grants: { env: {}, preopens: {} },
    policy: { allow: [], maxConnections: 1, receiveQueue: 10 },
    defaults: { timeoutMs: 5000, maxMessageBytes: 1 << 20 },
    onWorkerError: () => {},
  }, { size: 1, timeoutMs: 20_000, maxQueue: 10 });
  await p.warm();
  try {
    const run = (step: string, body = '') => p.call({ subject: `kit.${step}`, body: Buffer.from(body), replyTo: '_INBOX.q' });
    assert.deepEqual(await run('text', 'héllo ✓'), ok(undefined));
    assert.equal(Buffer.from(out.at(-1)!.body).toString(), 'HÉLLO ✓');
    assert.deepEqual(await p.call({ subject: 'kit.text', body: new Uint8Array([0xff, 0x41]), replyTo: '_INBOX.q' }), ok(undefined));
    assert.equal(Buffer.from(out.at(-1)!.body).toString(), '\ufffdA');
    assert.deepEqual(await run('throw-error'), err('Error: boom'));
    for (const step of ['later', 'reject-error', 'request']) {
      const r = await run(step);
      assert.match(r.tag === 'err' ? r.val : '', /^Error: the handler returned a promise, but this component was built with QuickJS, which runs no event loop/, step);
    }
    assert.equal(p.stats.traps, 0);
  } finally {
    await p.close();
  }
});
