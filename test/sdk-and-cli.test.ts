// The client SDK against a real server (pub/sub, request and its errors, reconnect that
// re-subscribes, MessagePack), and each CLI tool against a real server.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { pack, unpack } from 'msgpackr';
import { connect, RequestError } from '../src/sdk/client.ts';
import type { Message } from '../src/sdk/client.ts';
import { startGateway, spawnCli, TestClient } from './helpers.ts';
import type { Gateway } from '../src/gateway/gateway.ts';

const gw = await startGateway({ ADMIN_TOKEN: 'cli-token' });
const url = gw.server!.url;
after(() => gw.shutdown());

function nextMessage(): { handler: (m: Message) => void; next(): Promise<Message> } {
  const queue: Message[] = [];
  const waiting: Array<(m: Message) => void> = [];
  return {
    handler: (m) => { const w = waiting.shift(); if (w) w(m); else queue.push(m); },
    next: () => (queue.length ? Promise.resolve(queue.shift()!) : new Promise((r) => waiting.push(r))),
  };
}

test('SDK: subscribe with wildcards, publish, unsubscribe; session info', async () => {
  const a = connect(url);
  const b = connect(url);
  await Promise.all([a.ready(), b.ready()]);
  assert.equal(a.session.state, 'open');
  assert.match(a.session.session!, /^[A-Za-z0-9_-]{22}$/);
  const inbox = nextMessage();
  const off = b.subscribe('sdk.*', inbox.handler);
  await b.publishAck('sdk.sync', 'x'); // the sub is in place once a later op is acknowledged
  a.publish('sdk.hello', 'hi from a');
  let m = await inbox.next();
  if (m.subject === 'sdk.sync') m = await inbox.next();
  assert.equal(m.subject, 'sdk.hello');
  assert.equal(m.text(), 'hi from a');
  assert.equal(m.replyTo, a.session.replyTo);
  off();
  a.close();
  b.close();
});

test('SDK: request resolves with the reply; timeout and no_responders reject with their codes', async () => {
  const svc = connect(url);
  const cli = connect(url);
  await Promise.all([svc.ready(), cli.ready()]);
  svc.subscribe('sdk.svc', (m) => svc.publish(m.replyTo!, `answer to ${m.text()}`));
  svc.subscribe('sdk.silent', () => {});
  await svc.publishAck('sync', '');
  assert.equal((await cli.request('sdk.svc', 'q1')).text(), 'answer to q1');
  await assert.rejects(cli.request('sdk.silent', 'q', { timeoutMs: 100 }), (e: unknown) => e instanceof RequestError && e.code === 'timeout');
  await assert.rejects(cli.request('sdk.nobody', 'q'), (e: unknown) => e instanceof RequestError && e.code === 'no_responders');
  svc.close();
  cli.close();
});

test('SDK: reconnects after the server restarts and re-subscribes; publishes made while down go out', async () => {
  const first = await startGateway();
  const port = first.server!.address.port;
  const c = connect(first.server!.url, { reconnect: { baseMs: 20, maxMs: 100 } });
  await c.ready();
  const states: string[] = [];
  c.onSessionChange((s) => states.push(s.state));
  const inbox = nextMessage();
  c.subscribe('again.>', inbox.handler);
  const oldSession = c.session.session;
  await first.shutdown();
  const second = await startGateway({ LISTEN: `127.0.0.1:${port}` });
  await c.ready();
  assert.notEqual(c.session.session, oldSession);
  assert.deepEqual(states.slice(0, 1), ['reconnecting']);
  assert.equal(states.at(-1), 'open');
  // The subscription was sent again: a publish from another client reaches it.
  const other = await TestClient.connect(second);
  await c.publishAck('sync', '');
  other.send({ subject: 'again.x', text: 'after restart' });
  assert.equal((await inbox.next()).text(), 'after restart');
  other.close();
  c.close();
  await second.shutdown();
});

test('SDK: MessagePack protocol with an injected codec', async () => {
  const c = connect(url, { protocol: 'msgpack', msgpack: { encode: (v) => pack(v), decode: (b) => unpack(b) } });
  await c.ready();
  const inbox = nextMessage();
  c.subscribe('mp.>', inbox.handler);
  await c.publishAck('mp.sync', 'x');
  c.publish('mp.bin', new Uint8Array([0, 255, 7]));
  let m = await inbox.next();
  if (m.subject === 'mp.sync') m = await inbox.next();
  assert.deepEqual([...m.body], [0, 255, 7]);
  c.close();
});

async function cli(args: string[], env: Record<string, string> = {}) {
  const { exit, output } = await spawnCli(args, env, null);
  return { code: (await exit).code, out: output() };
}

test('CLI: sub prints what pub sends; req prints the reply or the error code; sessions lists', async () => {
  const sub = await spawnCli(['sub', 'cli.>', '--url', url, '--count', '2'], {}, /subscribed to/);
  // The sub tool said it subscribed; a ping round trip from another client orders after it.
  assert.equal((await cli(['pub', 'cli.one', 'first', '--url', url])).code, 0);
  assert.equal((await cli(['pub', 'cli.two', 'second', '--url', url])).code, 0);
  assert.equal((await sub.exit).code, 0);
  assert.match(sub.output(), /cli\.one: first\ncli\.two: second\n/);
  assert.doesNotMatch(sub.output(), /\x1b\[/, 'no colors when stdout is not a TTY');

  const responder = connect(url);
  await responder.ready();
  responder.subscribe('cli.svc', (m) => responder.publish(m.replyTo!, m.text().toUpperCase()));
  await responder.publishAck('sync', '');
  const ok = await cli(['req', 'cli.svc', 'shout', '--url', url]);
  assert.deepEqual([ok.code, ok.out], [0, 'SHOUT\n']);
  const none = await cli(['req', 'cli.nobody', 'x', '--url', url]);
  assert.equal(none.code, 1);
  assert.match(none.out, /no_responders/);

  const list = await cli(['sessions', '--url', `http://127.0.0.1:${gw.server!.address.port}`, '--admin-token', 'cli-token']);
  assert.equal(list.code, 0);
  assert.ok(list.out.includes(responder.session.session!), 'lists the responder session');
  const denied = await cli(['sessions', '--url', `http://127.0.0.1:${gw.server!.address.port}`, '--admin-token', 'wrong']);
  assert.equal(denied.code, 1);
  assert.match(denied.out, /401 unauthorized/);
  responder.close();
});

test('CLI: --help for each tool; usage errors exit 2; an unreachable server exits 1', async () => {
  for (const t of ['pub', 'sub', 'req', 'sessions']) {
    const h = await cli([t, '--help']);
    assert.equal(h.code, 0);
    assert.match(h.out, new RegExp(`Usage: wsbridge ${t}`));
  }
  const main = await cli(['--help']);
  for (const t of ['pub <subject>', 'sub <pattern>', 'req <subject>', 'sessions']) assert.ok(main.out.includes(t), t);
  assert.equal((await cli(['req'])).code, 2);
  assert.equal((await cli(['sub', 'x', '--count', 'many'])).code, 2);
  const down = await cli(['req', 'x', '--url', 'ws://127.0.0.1:1/ws']);
  assert.equal(down.code, 1);
  assert.match(down.out, /cannot connect/);
});

export type { Gateway };
