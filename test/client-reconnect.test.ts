// Client-mode connection attempts against local servers that misbehave: CONNECT_TIMEOUT_SEC is a
// deadline (a server trickling its 101 is cut off), a remote that accepts then closes (or sends a
// frame too large) counts as a failure until a connection stays open RECONNECT_STABLE_SEC,
// RECONNECT_MAX_ATTEMPTS=N gives up after exactly N failures, 401/403/1008 follow
// PERMANENT_FAILURE_POLICY, and Retry-After is honoured.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import http from 'node:http';
import type net from 'node:net';
import { once } from './helpers.ts';
import { remoteServer, clientGateway, nextEvent, tcpServer } from './remote-helpers.ts';
import { backoffDelay, parseRetryAfter } from '../src/client/backoff.ts';

const FAST = { RECONNECT_BASE_MS: '20', RECONNECT_MAX_MS: '40', KEEPALIVE_INTERVAL_SEC: '0' };

/** Answers every upgrade with a correct 101, written one byte every `everyMs`. */
function trickle(everyMs: number) {
  return tcpServer((s) => {
    let head = '';
    s.on('data', (d) => {
      head += d.toString('latin1');
      const m = /sec-websocket-key: *(\S+)/i.exec(head);
      if (!head.includes('\r\n\r\n') || !m) return;
      const accept = createHash('sha1').update(`${m[1]}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64');
      const answer = Buffer.from(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`);
      let i = 0;
      const t = setInterval(() => {
        if (s.destroyed || i >= answer.length) return clearInterval(t);
        s.write(answer.subarray(i, ++i));
      }, everyMs);
      s.on('close', () => clearInterval(t));
    });
  });
}

test('CONNECT_TIMEOUT_SEC is a deadline: a 101 trickled one byte per 100 ms is cut off after 1 s', async (t) => {
  const server = await trickle(100); // the whole answer would take ~13 s
  t.after(() => server.close());
  const started = Date.now();
  const gw = await clientGateway({ URI: `ws://127.0.0.1:${server.port}/`, CONNECT_TIMEOUT_SEC: '1', RECONNECT_MAX_ATTEMPTS: '1', ...FAST });
  t.after(() => gw.shutdown());
  const failed = nextEvent(gw.links[0]!, 'failed');
  const [err] = await nextEvent<[Error]>(gw.links[0]!, 'error');
  const took = Date.now() - started;
  assert.match(err.message, /connect timed out after 1 s/);
  assert.ok(took >= 900 && took < 6000, `timed out after ${took} ms`);
  await failed;
});

test('CONNECT_TIMEOUT_SEC covers TLS: wss:// to a server that never answers the ClientHello', async (t) => {
  const server = await tcpServer(() => {});
  t.after(() => server.close());
  const started = Date.now();
  const gw = await clientGateway({ URI: `wss://127.0.0.1:${server.port}/`, CONNECT_TIMEOUT_SEC: '1', RECONNECT_MAX_ATTEMPTS: '1', ...FAST });
  t.after(() => gw.shutdown());
  const failed = nextEvent(gw.links[0]!, 'failed');
  const [err] = await nextEvent<[Error]>(gw.links[0]!, 'error');
  assert.match(err.message, /connect timed out/);
  assert.ok(Date.now() - started < 6000);
  await failed;
  assert.equal(server.sockets.length, 1);
});

test('a remote that accepts then closes is a failing remote: RECONNECT_MAX_ATTEMPTS=3 gives up after exactly 3 connections', async (t) => {
  const remote = await remoteServer();
  t.after(() => remote.close());
  remote.wss.on('connection', (ws) => ws.close(1000, 'bye'));
  const gw = await clientGateway({ URI: remote.url, RECONNECT_MAX_ATTEMPTS: '3', ...FAST });
  t.after(() => gw.shutdown());
  const link = gw.links[0]!;
  const delays: number[] = [];
  link.on('reconnecting', (d: number) => delays.push(d));
  await nextEvent(link, 'failed');
  assert.equal(remote.conns.length, 3);
  assert.equal(link.stats.connects, 3);
  assert.equal(link.stats.failures, 3);
  assert.equal(delays.length, 2);
  assert.equal(link.state, 'failed');
});

test('without a limit the failures keep counting (no reset on open), so the backoff grows', async (t) => {
  const remote = await remoteServer();
  t.after(() => remote.close());
  remote.wss.on('connection', (ws) => ws.close(1000, 'bye'));
  const gw = await clientGateway({ URI: remote.url, RECONNECT_BASE_MS: '10', RECONNECT_MAX_MS: '100000', KEEPALIVE_INTERVAL_SEC: '0' });
  t.after(() => gw.shutdown());
  const link = gw.links[0]!;
  const seen: number[] = [];
  await new Promise<void>((resolve) => link.on('reconnecting', (_d: number, failures: number) => {
    seen.push(failures);
    if (seen.length === 5) resolve();
  }));
  assert.deepEqual(seen, [1, 2, 3, 4, 5]);
});

test('a frame over MAX_MESSAGE_BYTES (close 1009) right after the open is a failure too', async (t) => {
  const remote = await remoteServer();
  t.after(() => remote.close());
  const codes: number[] = [];
  remote.wss.on('connection', (ws) => {
    ws.on('close', (code) => codes.push(code));
    ws.send('x'.repeat(2000));
  });
  const gw = await clientGateway({ URI: remote.url, MAX_MESSAGE_BYTES: '1024', RECONNECT_MAX_ATTEMPTS: '2', ...FAST });
  t.after(() => gw.shutdown());
  const link = gw.links[0]!;
  const errors: string[] = [];
  link.on('error', (e: Error) => errors.push(e.message));
  await nextEvent(link, 'failed');
  assert.equal(remote.conns.length, 2);
  assert.deepEqual(errors, ['Max payload size exceeded', 'Max payload size exceeded']);
  while (codes.length < 2) await new Promise((r) => setTimeout(r, 20));
  assert.deepEqual(codes, [1009, 1009], 'the link closed each with 1009');
});

test('RECONNECT_MAX_ATTEMPTS=N with a refused port: exactly N attempts', async (t) => {
  const server = await tcpServer((s) => s.destroy());
  t.after(() => server.close());
  const gw = await clientGateway({ URI: `ws://127.0.0.1:${server.port}/`, RECONNECT_MAX_ATTEMPTS: '4', ...FAST });
  t.after(() => gw.shutdown());
  let errors = 0;
  gw.links[0]!.on('error', () => errors++);
  await nextEvent(gw.links[0]!, 'failed');
  assert.equal(server.sockets.length, 4);
  assert.equal(errors, 4);
});

test('a connection that stays open RECONNECT_STABLE_SEC resets the failures', async (t) => {
  const remote = await remoteServer();
  t.after(() => remote.close());
  const gw = await clientGateway({ URI: remote.url, RECONNECT_STABLE_SEC: '1', RECONNECT_MAX_ATTEMPTS: '2', ...FAST });
  t.after(() => gw.shutdown());
  const link = gw.links[0]!;
  // First connection: closed at once → failure 1.
  const first = await remote.nextConn();
  first.ws.close(1000);
  const [, failures] = await nextEvent<[number, number]>(link, 'reconnecting');
  assert.equal(failures, 1);
  // Second: stays open past 1 s, then closes → not a failure; the link reconnects.
  const second = await remote.nextConn();
  await new Promise<void>((resolve) => {
    const check = setInterval(() => {
      if (link.stats.failures === 0) {
        clearInterval(check);
        resolve();
      }
    }, 50);
  });
  second.ws.close(1000);
  const [, after] = await nextEvent<[number, number]>(link, 'reconnecting');
  assert.equal(after, 0, 'a stable connection that closes is no failure');
  await remote.nextConn();
  assert.equal(link.state === 'failed', false);
});

for (const status of [401, 403]) {
  test(`HTTP ${status} at the handshake: PERMANENT_FAILURE_POLICY=give_up gives up after that one attempt`, async (t) => {
    const remote = await remoteServer(0, { verifyClient: (_i, cb) => cb(false, status) });
    t.after(() => remote.close());
    const gw = await clientGateway({ URI: remote.url, PERMANENT_FAILURE_POLICY: 'give_up', ...FAST });
    t.after(() => gw.shutdown());
    const link = gw.links[0]!;
    const failed = nextEvent<[string]>(link, 'failed');
    const [err] = await nextEvent<[Error]>(link, 'error');
    assert.match(err.message, new RegExp(`HTTP ${status}`));
    const [why] = await failed;
    assert.match(why, /PERMANENT_FAILURE_POLICY=give_up/);
  });
}

test('HTTP 401 with PERMANENT_FAILURE_POLICY=retry (default) waits RECONNECT_MAX_MS, not the short backoff', async (t) => {
  const remote = await remoteServer(0, { verifyClient: (_i, cb) => cb(false, 401) });
  t.after(() => remote.close());
  const gw = await clientGateway({ URI: remote.url, RECONNECT_BASE_MS: '1', RECONNECT_MAX_MS: '1500', KEEPALIVE_INTERVAL_SEC: '0' });
  t.after(() => gw.shutdown());
  const [delay] = await nextEvent<[number]>(gw.links[0]!, 'reconnecting');
  assert.equal(delay, 1500);
});

test('close 1008 from the server is a permanent refusal', async (t) => {
  const remote = await remoteServer();
  t.after(() => remote.close());
  remote.wss.on('connection', (ws) => ws.close(1008, 'not you'));
  const gw = await clientGateway({ URI: remote.url, PERMANENT_FAILURE_POLICY: 'give_up', ...FAST });
  t.after(() => gw.shutdown());
  await nextEvent(gw.links[0]!, 'failed');
  assert.equal(remote.conns.length, 1);
});

for (const [form, header] of [['delay-seconds', '2'], ['HTTP-date', () => new Date(Date.now() + 3000).toUTCString()]] as const) {
  test(`Retry-After (${form}) on a 503 is honoured`, async (t) => {
    const server = http.createServer();
    server.on('upgrade', (_req, socket: net.Socket) => {
      socket.end(`HTTP/1.1 503 Service Unavailable\r\nRetry-After: ${typeof header === 'string' ? header : header()}\r\nContent-Length: 0\r\n\r\n`);
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    t.after(() => server.close());
    const port = (server.address() as net.AddressInfo).port;
    const gw = await clientGateway({ URI: `ws://127.0.0.1:${port}/`, ...FAST });
    t.after(() => gw.shutdown());
    const [err] = await nextEvent<[Error]>(gw.links[0]!, 'error');
    assert.match(err.message, /HTTP 503/);
    const [delay] = await nextEvent<[number]>(gw.links[0]!, 'reconnecting');
    assert.ok(delay >= 1500, `waited ${delay} ms`);
  });
}

test('full jitter: delays are drawn from [0, d]; Retry-After parsing is capped', () => {
  assert.equal(backoffDelay(0, 100, 1000, () => 0), 0);
  assert.equal(backoffDelay(0, 100, 1000, () => 1), 100);
  assert.equal(backoffDelay(3, 100, 1000, () => 0.5), 400);
  assert.equal(backoffDelay(10, 100, 1000, () => 1), 1000);
  assert.equal(parseRetryAfter('5'), 5000);
  assert.equal(parseRetryAfter('999999999'), 3_600_000);
  assert.equal(parseRetryAfter('soon'), undefined);
});
