// The client SDK's error paths against real gateways on loopback: refused subscriptions (state,
// promise, never re-sent, `_WSB.>` does not swallow direct messages), ready() on an unreachable
// server and close codes, the outbox (what rejected is never sent; bounded; inspectable), handler
// failures that must not crash the process, and token refresh in-band before a JWT expires.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { pathToFileURL } from 'node:url';
import { SignJWT } from 'jose';
import { connect, RequestError, ConnectionClosedError } from '../src/sdk/client.ts';
import type { Client, ConnectErrorInfo, SessionInfo } from '../src/sdk/client.ts';
import { startGateway, withGateway, TestClient, ROOT } from './helpers.ts';

/** Resolves with the first value `register` reports that satisfies `pred`, or rejects after `ms`. */
function waitFor<T>(register: (cb: (v: T) => void) => void, pred: (v: T) => boolean, ms = 5000, what = 'event'): Promise<T> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`no ${what} within ${ms} ms`)), ms);
    register((v) => {
      if (pred(v)) {
        clearTimeout(t);
        resolve(v);
      }
    });
  });
}

const sessionState = (c: Client, pred: (s: SessionInfo) => boolean, what: string) => waitFor<SessionInfo>((cb) => c.onSessionChange(cb), pred, 5000, what);

test('a refused subscription rejects with the server code, is forgotten, and is not re-sent on reconnect', () => withGateway({}, async (gw) => {
  const out: Array<Record<string, unknown>> = [];
  const c = connect(gw.server!.url, { reconnect: { baseMs: 10, maxMs: 50 }, onFrame: (dir, f) => dir === 'out' && out.push(f) });
  try {
    await c.ready();
    const bad = c.subscribe('bad*', () => {});
    assert.equal(bad.state, 'pending');
    await assert.rejects(bad.ready, (e: unknown) => e instanceof RequestError && e.code === 'invalid_subject');
    assert.equal(bad.state, 'refused');
    assert.equal(bad.error?.code, 'invalid_subject');
    const good = c.subscribe('fine.>', () => {});
    await good.ready;
    assert.equal(good.state, 'active');
    assert.deepEqual(c.subscriptions, [{ pattern: 'fine.>', state: 'active' }]);

    // The server drops the session; the SDK reconnects and re-sends only what was accepted.
    const first = c.session.session!;
    out.length = 0;
    gw.closeSession(first, 1012, 'restart');
    await sessionState(c, (s) => s.state === 'open' && s.session !== first, 'a new session');
    await c.publishAck('sync', '');
    const subs = out.filter((f) => f.op === 'sub').map((f) => f.subject);
    assert.deepEqual(subs, ['fine.>']);
    assert.equal(good.state, 'active');
  } finally {
    c.close();
  }
}));

test('a refused _WSB.> does not swallow messages to the reply subject: onDirect gets them', () => withGateway({}, async (gw) => {
  const c = connect(gw.server!.url);
  const other = await TestClient.connect(gw);
  try {
    await c.ready();
    const reserved = c.subscribe('_WSB.>', () => assert.fail('a refused subscription got a message'));
    await assert.rejects(reserved.ready, (e: unknown) => (e as RequestError).code === 'invalid_subject');
    // `>` is accepted but never sees the gateway's own subjects either.
    const everything = c.subscribe('>', (m) => assert.ok(!m.subject.startsWith('_WSB.'), `> got ${m.subject}`));
    await everything.ready;
    const direct = waitFor<string>((cb) => c.onDirect((m) => cb(m.text())), () => true, 5000, 'direct message');
    // The other session is handed c's reply subject by receiving c's message, then answers it.
    assert.equal((await other.call({ op: 'sub', subject: 'ask.c', id: 's' })).op, 'ok');
    c.publish('ask.c', 'question');
    const q = await other.next((f) => f.subject === 'ask.c');
    assert.equal(q.reply_to, c.session.replyTo);
    other.send({ subject: q.reply_to, text: 'for you' });
    assert.equal(await direct, 'for you');
  } finally {
    c.close();
    other.close();
  }
}));

test('ready() rejects on an unreachable server with reconnect false; the close code is reported', async () => {
  const errors: ConnectErrorInfo[] = [];
  const c = connect('ws://127.0.0.1:1/ws', { reconnect: false });
  c.onConnectError((e) => errors.push(e));
  await assert.rejects(c.ready(), (e: unknown) => e instanceof ConnectionClosedError && e.closeCode === 1006 && /cannot connect to ws:\/\/127\.0\.0\.1:1\/ws/.test(e.message));
  assert.equal(c.session.state, 'closed');
  assert.equal(c.session.closeCode, 1006);
  // WebSocket failed, then (transport 'auto') the SSE fallback at once; that one ends it.
  assert.deepEqual(errors.map((e) => [e.transport, e.code, e.willRetry, e.retryInMs]), [['websocket', 1006, true, 0], ['sse', 1006, false, null]]);
  // Later calls reject at once, and nothing waits.
  await assert.rejects(c.ready(), ConnectionClosedError);
  await assert.rejects(c.request('x', ''), (e: unknown) => (e as RequestError).code === 'closed');
});

test('while reconnecting: ready({timeoutMs}) rejects with timeout, onConnectError counts attempts, close() rejects ready()', async () => {
  const c = connect('ws://127.0.0.1:1/ws', { reconnect: { baseMs: 10, maxMs: 40 } });
  const third = waitFor<ConnectErrorInfo>((cb) => c.onConnectError(cb), (e) => e.attempt >= 3, 5000, 'a third failed attempt');
  await assert.rejects(c.ready({ timeoutMs: 100 }), (e: unknown) => (e as RequestError).code === 'timeout');
  const e = await third;
  assert.equal(e.willRetry, true);
  assert.equal(e.code, 1006);
  assert.ok(e.retryInMs !== null && e.retryInMs <= 40);
  assert.equal(c.session.state, 'reconnecting');
  const pending = c.ready();
  c.close();
  await assert.rejects(pending, ConnectionClosedError);
  assert.equal(c.session.state, 'closed');
});

test('what rejected is never sent: a request that timed out in the outbox is dropped; the outbox is bounded and inspectable', async () => {
  const first = await startGateway();
  const port = first.server!.address.port;
  const url = first.server!.url;
  const c = connect(url, { reconnect: { baseMs: 20, maxMs: 50 }, outboxMax: 3 });
  let second: Awaited<ReturnType<typeof startGateway>> | undefined;
  try {
    await c.ready();
    const down = sessionState(c, (s) => s.state === 'reconnecting', 'reconnecting');
    await first.shutdown();
    await down;

    const timedOut = c.request('retry.me', 'once', { timeoutMs: 50 }); // local deadline 1050 ms
    const acked = c.publishAck('retry.ack', 'once', { timeoutMs: 100 });
    c.publish('kept.publish', 'queued');
    assert.deepEqual(c.outbox.map((f) => f.subject), ['retry.me', 'retry.ack', 'kept.publish']);
    assert.throws(() => c.publish('one.too.many', 'x'), (e: unknown) => (e as RequestError).code === 'outbox_full');
    await assert.rejects(c.request('also.too.many', 'x'), (e: unknown) => (e as RequestError).code === 'outbox_full');
    await assert.rejects(acked, (e: unknown) => (e as RequestError).code === 'timeout');
    await assert.rejects(timedOut, (e: unknown) => (e as RequestError).code === 'timeout');
    assert.deepEqual(c.outbox.map((f) => f.subject), ['kept.publish'], 'rejected calls left the outbox');

    // Back up: only the publish that never rejected goes out.
    second = await startGateway({ LISTEN: `127.0.0.1:${port}` });
    const watcher = await TestClient.connect(second);
    await watcher.call({ op: 'sub', subject: '>', id: 'w' });
    await c.ready({ timeoutMs: 5000 });
    await c.publishAck('sync.done', '');
    const seen: string[] = [];
    for (;;) {
      const f = await watcher.next((x) => typeof x.subject === 'string');
      seen.push(String(f.subject));
      if (f.subject === 'sync.done') break;
    }
    assert.deepEqual(seen, ['kept.publish', 'sync.done']);
    watcher.close();

    // discardOutbox() rejects what waited, and says how many.
    const down2 = sessionState(c, (s) => s.state === 'reconnecting', 'reconnecting again');
    await second.shutdown();
    second = undefined;
    await down2;
    const waiting = c.request('never.sent', '', { timeoutMs: 10_000 });
    assert.equal(c.discardOutbox(), 1);
    await assert.rejects(waiting, (e: unknown) => (e as RequestError).code === 'discarded');
    assert.equal(c.outbox.length, 0);
  } finally {
    c.close();
    await second?.shutdown();
  }
});

test('a request in flight when the connection drops rejects with disconnected; queued ones wait for the next session', () => withGateway({}, async (gw) => {
  const c = connect(gw.server!.url, { reconnect: { baseMs: 10, maxMs: 20 } });
  const svc = connect(gw.server!.url);
  try {
    await Promise.all([c.ready(), svc.ready()]);
    await svc.subscribe('slow.svc', () => {}).ready; // never answers
    const inFlight = c.request('slow.svc', '', { timeoutMs: 5000 });
    await c.publishAck('sync', '');
    gw.closeSession(c.session.session!, 1012, 'restart');
    await assert.rejects(inFlight, (e: unknown) => (e as RequestError).code === 'disconnected');
  } finally {
    c.close();
    svc.close();
  }
}));

test('a throwing or rejecting handler is reported, and the process keeps running', () => withGateway({}, async (gw) => {
  const failures: string[] = [];
  const c = connect(gw.server!.url, { onHandlerError: (err, m) => failures.push(`${m.subject}: ${(err as Error).message}`) });
  try {
    await c.ready();
    await c.subscribe('boom.async', async () => { throw new Error('async boom'); }).ready;
    await c.subscribe('boom.sync', () => { throw new Error('sync boom'); }).ready;
    const ok = waitFor<string>((cb) => c.subscribe('boom.after', (m) => cb(m.text())), () => true, 5000, 'a later message');
    c.publish('boom.async', '1');
    c.publish('boom.sync', '2');
    c.publish('boom.after', 'still alive');
    assert.equal(await ok, 'still alive');
    await c.publishAck('sync', '');
    assert.deepEqual(failures.sort(), ['boom.async: async boom', 'boom.sync: sync boom']);
  } finally {
    c.close();
  }

  // Without onHandlerError, in a separate Node process: it logs and keeps running (exit 0).
  const sdk = pathToFileURL(`${ROOT}src/sdk/client.ts`).href;
  const script = `import { connect } from ${JSON.stringify(sdk)};
    const c = connect(${JSON.stringify(gw.server!.url)});
    await c.ready();
    await c.subscribe('crash.me', async () => { throw new Error('handler rejected'); }).ready;
    c.publish('crash.me', 'x');
    await c.publishAck('sync', '');
    await new Promise((r) => setImmediate(r));
    c.close();
    console.log('survived');`;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (d: Buffer) => (output += d));
  child.stderr.on('data', (d: Buffer) => (output += d));
  const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
  const code = await new Promise<number | null>((resolve) => child.on("exit", (c) => resolve(c)));
  clearTimeout(timer);
  assert.equal(code, 0, output);
  assert.match(output, /handler for crash\.me failed/);
  assert.match(output, /survived/);
}));

test('token refresh: a token function keeps a JWT session alive past exp, in-band; a fixed token ends with 1008 and the reason', () => withGateway({ JWT_SECRET: 'a-shared-secret-of-enough-length-for-hs256' }, async (gw) => {
  const key = new TextEncoder().encode('a-shared-secret-of-enough-length-for-hs256');
  const expIn = (s: number) => new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).setSubject('u').setExpirationTime(Math.floor(Date.now() / 1000) + s).sign(key);
  let issued = 0;
  let refreshed = 0;
  let onRefresh: () => void = () => {};
  const c = connect(gw.server!.url, {
    token: async () => (issued++, expIn(2)),
    refreshBeforeMs: 1000,
    onFrame: (dir, f) => {
      if (dir === 'in' && f.op === 'ok' && String(f.id).startsWith('c')) {
        refreshed++;
        onRefresh();
      }
    },
  });
  const errors: ConnectErrorInfo[] = [];
  c.onConnectError((e) => errors.push(e));
  try {
    await c.ready();
    const session = c.session.session;
    const firstExp = Date.now() + 2000;
    // Wait for the in-band refreshes (each answered ok) until the first token has expired.
    await waitFor<null>((cb) => (onRefresh = () => cb(null)), () => refreshed >= 2 && Date.now() > firstExp + 500, 10_000, 'refreshes past the first exp');
    assert.equal(c.session.session, session, 'the same session, past the first token\'s exp');
    assert.equal(c.session.state, 'open');
    assert.deepEqual(errors, []);
    assert.ok(issued >= 4);
  } finally {
    c.close();
  }

  // A fixed token cannot be refreshed: the server closes at exp, and the client says why.
  const fixed = connect(gw.server!.url, { token: await expIn(1) });
  try {
    await fixed.ready();
    const closed = await sessionState(fixed, (s) => s.state === 'closed', 'closed at exp');
    assert.equal(closed.closeCode, 1008);
    assert.equal(closed.closeReason, 'credential expired');
    await assert.rejects(fixed.ready(), (e: unknown) => e instanceof ConnectionClosedError && e.closeCode === 1008);
  } finally {
    fixed.close();
  }

  // auth(token) refreshes by hand; a bad token is refused with unauthorized and the session stays.
  const manual = connect(gw.server!.url, { token: await expIn(60) });
  try {
    await manual.ready();
    await manual.auth(await expIn(120));
    await assert.rejects(manual.auth('not-a-jwt'), (e: unknown) => (e as RequestError).code === 'unauthorized');
    assert.equal(manual.session.state, 'open');
  } finally {
    manual.close();
  }
}));

test('a hostile server (non-object frames, bad base64) and a throwing listener do not take the client down', async () => {
  const { WebSocketServer } = await import('ws');
  const wss = new WebSocketServer({ port: 0, host: '127.0.0.1' });
  await new Promise((r) => wss.once('listening', r));
  wss.on('connection', (ws) => {
    ws.send(JSON.stringify({ op: 'welcome', session: 's', reply_to: '_WSB.S.s', protocol: 'wsbridge.v1' }));
    ws.on('message', (d) => {
      const f = JSON.parse(d.toString()) as { op?: string; id?: string };
      if (f.op !== 'sub') return;
      ws.send(JSON.stringify({ op: 'ok', id: f.id }));
      for (const junk of ['42', 'null', '"text"', '[1,2]', '{"subject":"x.a","body":"%%% not base64 %%%"}', '{"op":"res","id":{"no":"string"}}']) ws.send(junk);
      ws.send(JSON.stringify({ subject: 'x.b', body: Buffer.from('still fine').toString('base64') }));
    });
  });
  const c = connect(`ws://127.0.0.1:${(wss.address() as { port: number }).port}/ws`, { reconnect: false });
  c.onSessionChange(() => { throw new Error('a careless listener'); });
  try {
    await c.ready();
    const got = waitFor<string>((cb) => c.subscribe('x.*', (m) => cb(`${m.subject}: ${m.text()}`)), (v) => v.startsWith('x.b'), 5000, 'the good message after the junk');
    assert.equal(await got, 'x.b: still fine');
    assert.equal(c.session.state, 'open');
  } finally {
    c.close();
    wss.close();
  }
});
