// The Server-Sent Events + HTTP POST fallback: the same v1 sessions as WebSocket, with the same
// credential, limits and subject policy, on the same port; and the SDK on it (chosen, and as the
// automatic fallback when WebSocket fails). Raw HTTP clients here, so each limit is seen from
// the wire; the browser end to end is in test/sse-browser.test.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { SignJWT } from 'jose';
import { startGateway, TestClient, bounded, b64, unb64 } from './helpers.ts';
import type { Frame } from './helpers.ts';
import type { Gateway } from '../src/gateway/gateway.ts';
import { connect } from '../src/sdk/client.ts';
import type { WebSocketLike } from '../src/sdk/client.ts';

const SECRET = 'a-test-secret-of-enough-length-for-hs256';
const jwt = (claims: Record<string, unknown> = {}) => new SignJWT(claims).setProtectedHeader({ alg: 'HS256' }).setSubject('user-1').setIssuedAt().setExpirationTime('10m').sign(new TextEncoder().encode(SECRET));

interface SseEvent { event: string; data: string }

/** A raw SSE client on node:http: it can stop reading its stream (a slow consumer) and post raw bodies. */
class SseClient {
  readonly events: SseEvent[] = [];
  readonly status: number;
  readonly headers: http.IncomingHttpHeaders;
  readonly res: http.IncomingMessage;
  body = '';
  sendToken = '';
  welcome: Frame | undefined;
  #waiters: Array<{ pred: (e: SseEvent) => boolean; resolve: (e: SseEvent) => void }> = [];
  #buf = '';
  readonly ended: Promise<void>;
  readonly base: string;
  readonly req: http.ClientRequest;

  private constructor(base: string, req: http.ClientRequest, res: http.IncomingMessage) {
    this.base = base;
    this.req = req;
    this.res = res;
    this.status = res.statusCode ?? 0;
    this.headers = res.headers;
    this.ended = new Promise((resolve) => res.on('close', () => resolve()));
    res.setEncoding('utf8');
    res.on('data', (chunk: string) => {
      if (this.status !== 200) {
        this.body += chunk;
        return;
      }
      this.#buf += chunk;
      let i: number;
      while ((i = this.#buf.indexOf('\n\n')) >= 0) {
        const block = this.#buf.slice(0, i);
        this.#buf = this.#buf.slice(i + 2);
        let event = 'message';
        const data: string[] = [];
        for (const line of block.split('\n')) {
          if (line.startsWith('event: ')) event = line.slice(7);
          else if (line.startsWith('data:')) data.push(line.slice(line[5] === ' ' ? 6 : 5));
        }
        this.#push({ event, data: data.join('\n') });
      }
    });
    res.on('error', () => {});
  }

  #push(e: SseEvent): void {
    if (e.event === 'open') this.sendToken = (JSON.parse(e.data) as { send_token: string }).send_token;
    const i = this.#waiters.findIndex((w) => w.pred(e));
    if (i >= 0) this.#waiters.splice(i, 1)[0]!.resolve(e);
    else this.events.push(e);
  }

  static async open(gw: Gateway | string, headers: Record<string, string> = {}, opts: { welcome?: boolean } = {}): Promise<SseClient> {
    const base = typeof gw === 'string' ? gw : `http://127.0.0.1:${gw.server!.address.port}`;
    const req = http.request(`${base}/sse`, { method: 'POST', headers, agent: false });
    req.on('error', () => {});
    req.end();
    const res = await bounded(new Promise<http.IncomingMessage>((resolve) => req.once('response', resolve)), 'the SSE open answer');
    const c = new SseClient(base, req, res);
    if (c.status === 200 && opts.welcome !== false) c.welcome = await c.frame((f) => f.op === 'welcome');
    else if (c.status !== 200) await c.ended;
    return c;
  }

  next(pred: (e: SseEvent) => boolean, timeoutMs = 10_000): Promise<SseEvent> {
    const i = this.events.findIndex(pred);
    if (i >= 0) return Promise.resolve(this.events.splice(i, 1)[0]!);
    return bounded(new Promise((resolve) => this.#waiters.push({ pred, resolve })), 'an SSE event', timeoutMs);
  }

  async frame(pred: (f: Frame) => boolean = () => true, timeoutMs = 10_000): Promise<Frame> {
    const e = await this.next((ev) => ev.event === 'message' && pred(JSON.parse(ev.data) as Frame), timeoutMs);
    return JSON.parse(e.data) as Frame;
  }

  async closeEvent(timeoutMs = 10_000): Promise<{ code: number; reason: string }> {
    return JSON.parse((await this.next((e) => e.event === 'close', timeoutMs)).data) as { code: number; reason: string };
  }

  /** POSTs a raw body to /sse/send; resolves with the status. */
  async post(body: string, token = this.sendToken): Promise<{ status: number; body: string }> {
    const res = await fetch(`${this.base}/sse/send`, { method: 'POST', headers: { authorization: `Bearer ${token}` }, body });
    return { status: res.status, body: await res.text() };
  }

  /** Sends frames (one per line) and waits for the POST's answer. */
  async send(...frames: unknown[]): Promise<number> {
    return (await this.post(frames.map((f) => (typeof f === 'string' ? f : JSON.stringify(f))).join('\n'))).status;
  }

  async call(frame: Frame): Promise<Frame> {
    const answer = this.frame((f) => f.id === frame.id && typeof f.op === 'string');
    assert.equal(await this.send(frame), 204);
    return answer;
  }

  destroy(): void {
    this.req.destroy();
    this.res.destroy();
  }
}

async function waitFor(cond: () => boolean, what: string, ms = 10_000): Promise<void> {
  const until = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > until) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

test('an SSE session speaks v1 with WebSocket sessions: welcome, sub, pub, req/res, errors, policy', async (t) => {
  const gw = await startGateway();
  t.after(() => gw.shutdown());
  const sse = await SseClient.open(gw);
  t.after(() => sse.destroy());
  assert.equal(sse.headers['content-type'], 'text/event-stream; charset=utf-8');
  assert.match(sse.sendToken, /^[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43}$/, 'a 128-bit stream id and a 256-bit secret');
  assert.match(String(sse.welcome!.session), /^[A-Za-z0-9_-]{22}$/);
  const info = gw.listSessions().find((s) => s.id === sse.welcome!.session)!;
  assert.equal(info.transport, 'sse');
  assert.equal(info.protocol, 'json');

  const ws = await TestClient.connect(gw);
  t.after(() => ws.close());
  assert.deepEqual(await ws.call({ op: 'sub', subject: 'room.a', id: 'w1' }), { op: 'ok', id: 'w1' });
  assert.deepEqual(await sse.call({ op: 'sub', subject: 'room.*', id: 's1' }), { op: 'ok', id: 's1' });
  // SSE → WebSocket, and WebSocket → SSE.
  assert.deepEqual(await sse.call({ subject: 'room.a', text: 'from sse', id: 'p1' }), { op: 'ok', id: 'p1' });
  assert.equal(unb64((await ws.next((f) => f.subject === 'room.a')).body), 'from sse');
  ws.send({ subject: 'room.a', body: b64('from ws') });
  const got = await sse.frame((f) => f.subject === 'room.a' && unb64(f.body) === 'from ws');
  assert.equal(got.reply_to, ws.welcome.reply_to);
  // A request answered by the WebSocket session through the reply subject it was handed.
  assert.deepEqual(await ws.call({ op: 'sub', subject: 'svc.time', id: 'w2' }), { op: 'ok', id: 'w2' });
  const answered = sse.frame((f) => f.op === 'res' && f.id === 'r1');
  assert.equal(await sse.send({ op: 'req', subject: 'svc.time', text: 'now?', id: 'r1', timeout_ms: 5000 }), 204);
  const q = await ws.next((f) => f.subject === 'svc.time');
  ws.send({ subject: q.reply_to, text: 'noon' });
  assert.equal(unb64((await answered).body), 'noon');
  // Several frames in one POST are handled in order; bad ones get the same error frames.
  const e1 = sse.frame((f) => f.id === 'e1');
  const e2 = sse.frame((f) => f.id === 'e2');
  const e3 = sse.frame((f) => f.id === 'e3');
  const e4 = sse.frame((f) => f.op === 'error' && f.code === 'bad_json');
  assert.equal(await sse.send({ subject: '_WSB.B.x', text: 'no', id: 'e1' }, { op: 'sub', subject: '_INBOX.>', id: 'e2' }, { op: 'nope', id: 'e3' }, '{not json'), 204);
  assert.equal((await e1).code, 'invalid_subject');
  assert.equal((await e2).code, 'invalid_subject');
  assert.equal((await e3).code, 'unknown_op');
  await e4;
  assert.deepEqual(await sse.call({ op: 'ping', id: 'pp' }), { op: 'pong', id: 'pp' });
  // One POST at a time, so frames keep their order: a second one while the first is still being
  // read is refused with 409.
  const slow = http.request(`${sse.base}/sse/send`, { method: 'POST', headers: { authorization: `Bearer ${sse.sendToken}` } });
  slow.on('error', () => {});
  const half = sse.frame((f) => f.id === 'half');
  slow.write('{"op":"ping","id":"half"}\n');
  await half; // the server is reading the first POST
  const busy = await sse.post('{"op":"ping","id":"no"}');
  assert.equal(busy.status, 409);
  assert.equal(JSON.parse(busy.body).error.code, 'busy');
  const after = sse.frame((f) => f.id === 'after');
  slow.end('{"op":"ping","id":"after"}');
  await after;
  assert.deepEqual(await sse.call({ op: 'ping', id: 'again' }), { op: 'pong', id: 'again' }, 'the next POST is taken');
  assert.ok(!sse.events.some((e) => e.data.includes('"id":"no"')), 'the refused POST reached nothing');
  // The operator sees and closes it like any session: the close event carries the code.
  assert.equal(await gw.closeAnySession(String(sse.welcome!.session)), true);
  assert.deepEqual(await sse.closeEvent(), { code: 1000, reason: 'closed by operator' });
  await bounded(sse.ended, 'the stream ending');
  await waitFor(() => gw.hub.sessions.size === 1, 'the SSE session leaving the hub');
  assert.equal((await sse.post('{"op":"ping"}')).status, 404, 'a closed session takes no more frames');
});

test('SSE credentials: the Authorization header or a first-frame auth; wrong ones 401 and count toward the backoff; send tokens are checked', async (t) => {
  const gw = await startGateway({ JWT_SECRET: SECRET, AUTH_DEADLINE_MS: '300', AUTH_FAILURE_BACKOFF_MS: '60000' });
  t.after(() => gw.shutdown());
  const refused = await SseClient.open(gw, { authorization: 'Bearer not-a-jwt' });
  assert.equal(refused.status, 401);
  assert.equal(refused.headers['www-authenticate'], 'Bearer realm="wsbridge"');
  assert.equal(gw.hub.stats.authFailures, 1);

  const good = await SseClient.open(gw, { authorization: `Bearer ${await jwt({ subs: ['room.*'] })}` });
  t.after(() => good.destroy());
  assert.equal(good.status, 200);
  // The token's permissions apply: the same subject policy as WebSocket.
  assert.equal((await good.call({ op: 'sub', subject: 'other.x', id: 'd' })).code, 'permission_denied');
  assert.deepEqual(await good.call({ op: 'sub', subject: 'room.x', id: 'a' }), { op: 'ok', id: 'a' });

  // First-frame auth: no welcome before it, frames behind it in the same POST run after it.
  const late = await SseClient.open(gw, {}, { welcome: false });
  t.after(() => late.destroy());
  await late.next((e) => e.event === 'open');
  const welcome = late.frame((f) => f.op === 'welcome');
  const pong = late.frame((f) => f.op === 'pong');
  assert.equal(await late.send({ op: 'auth', token: await jwt() }, { op: 'ping', id: 'x' }), 204);
  await welcome;
  assert.equal((await pong).id, 'x');
  assert.equal(late.events.filter((e) => e.event === 'message').length, 0);

  // Without any credential: closed with 1008 after AUTH_DEADLINE_MS.
  const none = await SseClient.open(gw, {}, { welcome: false });
  t.after(() => none.destroy());
  assert.deepEqual(await none.closeEvent(), { code: 1008, reason: 'authentication required' });

  // A send token with the right stream id and a wrong secret is refused like an unknown one.
  const [id] = good.sendToken.split('.');
  const wrong = await good.post('{"op":"ping","id":"w"}', `${id}.${'A'.repeat(43)}`);
  assert.equal(wrong.status, 404);
  assert.equal(JSON.parse(wrong.body).error.code, 'session_not_found');
  assert.equal((await good.post('{"op":"ping"}', 'garbage')).status, 404);
  assert.equal(good.events.filter((e) => e.event === 'message').length, 0, 'nothing reached the session');
});

test('SSE limits: frame size (1009), rate, one POST at a time, per-IP slots shared with WebSocket, idle timeout, dead peers', async (t) => {
  const gw = await startGateway({ MAX_MESSAGE_BYTES: '1024', RATE_LIMIT_MSGS: '5', MAX_CONNECTIONS_PER_IP: '2', IDLE_TIMEOUT_SEC: '2', PING_INTERVAL_SEC: '1' });
  t.after(() => gw.shutdown());
  const a = await SseClient.open(gw);
  t.after(() => a.destroy());
  // Rate: 5 frames a second; the rest of a burst of 20 is dropped with one rate_limited error.
  const burst = Array.from({ length: 20 }, (_, i) => ({ op: 'ping', id: `p${i}` }));
  const limited = a.frame((f) => f.code === 'rate_limited');
  assert.equal(await a.send(...burst), 204);
  await limited;
  assert.ok(a.events.filter((e) => e.event === 'message').length <= 5, 'at most a second of pings answered');
  // Per-IP slots count SSE and WebSocket sessions alike.
  const ws = await TestClient.connect(gw);
  t.after(() => ws.close());
  const third = await SseClient.open(gw);
  assert.equal(third.status, 429);
  ws.close();
  await waitFor(() => gw.server!.gate.slots.total === 1, 'the WebSocket slot freed');
  const b = await SseClient.open(gw);
  t.after(() => b.destroy());
  assert.equal(b.status, 200);
  // A frame over MAX_MESSAGE_BYTES closes the session with 1009, as an oversized WebSocket frame does.
  const big = await b.post(JSON.stringify({ subject: 'x.y', text: 'z'.repeat(2000) }));
  assert.equal(big.status, 413);
  assert.deepEqual(await b.closeEvent(), { code: 1009, reason: 'frame too big' });

  // Dead peers: a client that never answers the server's ping (no POST) is dropped; the idle
  // timeout closes one that answers pings but sends no frame.
  const quiet = await SseClient.open(gw);
  t.after(() => quiet.destroy());
  const dead = gw.hub.stats.deadPeers;
  await bounded(quiet.ended, 'a silent SSE client dropped', 10_000);
  assert.ok(gw.hub.stats.deadPeers > dead);
  const idle = await SseClient.open(gw);
  t.after(() => idle.destroy());
  const pinger = setInterval(() => void idle.post('').catch(() => {}), 300);
  t.after(() => clearInterval(pinger));
  assert.deepEqual(await idle.closeEvent(), { code: 1000, reason: 'idle timeout' });
  clearInterval(pinger);
});

test('SSE slow consumer: a client that stops reading its stream is closed with 1013 at MAX_BUFFERED_BYTES', async (t) => {
  const gw = await startGateway({ MAX_BUFFERED_BYTES: '65536' });
  t.after(() => gw.shutdown());
  const c = await SseClient.open(gw);
  t.after(() => c.destroy());
  assert.deepEqual(await c.call({ op: 'sub', subject: 'flood', id: 's' }), { op: 'ok', id: 's' });
  // A second client that reads its stream, subscribed to the same flood, is not closed.
  const reader = await SseClient.open(gw);
  t.after(() => reader.destroy());
  assert.deepEqual(await reader.call({ op: 'sub', subject: 'flood', id: 's' }), { op: 'ok', id: 's' });
  c.res.pause(); // reads no more: the kernel buffers fill, then the server's queue grows
  const body = new Uint8Array(4 * 1024);
  let published = 0;
  while (gw.hub.stats.slowConsumerCloses === 0 && published < 100_000) {
    gw.publish({ subject: 'flood', body, replyTo: null });
    published++;
    const mine = gw.listSessions().find((s) => s.id === c.welcome!.session);
    if (mine) assert.ok(mine.queued_bytes <= 65536 + 32 * 1024, `queued ${mine.queued_bytes} stays near the bound`);
    if (published % 4 === 0) await new Promise((r) => setTimeout(r, 1));
  }
  assert.equal(gw.hub.stats.slowConsumerCloses, 1, `closed after ${published} messages`);
  assert.ok(published > 20, `only after the kernel buffers filled (${published} messages of 4 KiB)`);
  // Its close event waits behind what it does not read (as a WebSocket close frame does); the
  // client going away ends it, counted with the 1013 the server closed it with.
  c.destroy();
  await waitFor(() => gw.hub.stats.closeCodes[1013] === 1, 'the session closed with 1013');
  await waitFor(() => gw.hub.sessions.size === 1, 'the slow session left the hub');
  assert.ok(gw.hub.sessions.has(String(reader.welcome!.session)), 'the reading client stays');
  await waitFor(() => reader.events.filter((e) => e.event === 'message').length >= published, 'the reader got every message');
});

test('SDK: transport "sse" works like WebSocket; "auto" falls back when WebSocket fails and says so', async (t) => {
  const gw = await startGateway({ SERVER_AUTH_TOKEN: 'a-static-token-of-16+' });
  t.after(() => gw.shutdown());
  const url = gw.server!.url;
  const viaSse = connect(url, { transport: 'sse', token: 'a-static-token-of-16+', reconnect: false });
  t.after(() => viaSse.close());
  await viaSse.ready({ timeoutMs: 10_000 });
  assert.equal(viaSse.session.transport, 'sse');
  // A WebSocket that never opens (a proxy that breaks upgrades): the client falls back at once.
  class BrokenWebSocket implements WebSocketLike {
    readyState = 0;
    binaryType = 'arraybuffer';
    onmessage = null;
    onclose: ((ev: { code: number; reason: string }) => void) | null = null;
    onerror = null;
    constructor() {
      setTimeout(() => this.onclose?.({ code: 1006, reason: 'blocked by a proxy' }), 10);
    }
    send(): void {}
    close(): void {}
  }
  const errors: number[] = [];
  const states: string[] = [];
  const auto = connect(url, { WebSocket: BrokenWebSocket, token: 'a-static-token-of-16+' });
  t.after(() => auto.close());
  auto.onConnectError((e) => errors.push(e.code));
  auto.onSessionChange((s) => states.push(s.state));
  await auto.ready({ timeoutMs: 10_000 });
  assert.equal(auto.session.transport, 'sse');
  assert.deepEqual(errors, [1006], 'the WebSocket failure was reported');
  assert.ok(!states.includes('reconnecting'), `a first connection that falls back is still connecting: ${states.join(',')}`);
  // Publish, subscribe and request across the two fallback clients and a WebSocket one.
  const plain = connect(url, { token: 'a-static-token-of-16+' });
  t.after(() => plain.close());
  await plain.ready({ timeoutMs: 10_000 });
  assert.equal(plain.session.transport, 'websocket');
  plain.subscribe('svc.echo', (m) => plain.publish(m.replyTo!, `echo ${m.text()}`));
  const got: string[] = [];
  const sub = auto.subscribe('news.*', (m) => void got.push(m.text()));
  await sub.ready;
  await (plain.subscribe('svc.echo', () => {}).ready);
  viaSse.publish('news.a', 'one');
  await viaSse.publishAck('news.b', 'two');
  await waitFor(() => got.length === 2, 'both messages delivered over SSE');
  assert.deepEqual(got, ['one', 'two']);
  assert.equal((await auto.request('svc.echo', 'hi', { timeoutMs: 5000 })).text(), 'echo hi');
  // A dropped SSE session reconnects over SSE (a new session), and its subscription comes back.
  const first = auto.session.session!;
  assert.ok(gw.closeSession(first, 1012, 'restart'));
  await waitFor(() => auto.session.state === 'open' && auto.session.session !== first, 'the SSE client back');
  assert.equal(auto.session.transport, 'sse');
  await waitFor(() => auto.subscriptions.every((s) => s.state === 'active'), 're-subscribed');
  viaSse.publish('news.c', 'three');
  await waitFor(() => got.length === 3, 'delivered after the reconnect');
  // A wrong token over SSE is 401: a fixed token is not retried (1008), as over WebSocket.
  const bad = connect(url, { transport: 'sse', token: 'wrong-token-wrong-token', reconnect: { baseMs: 10 } });
  await assert.rejects(bad.ready({ timeoutMs: 10_000 }), (e: Error & { closeCode?: number }) => e.closeCode === 1008);
});

test('SSE and browsers: CORS as ALLOWED_ORIGINS says, and shutdown closes streams with 1001', async (t) => {
  const gw = await startGateway({ ALLOWED_ORIGINS: 'https://app.example' });
  let stopped = false;
  t.after(() => (stopped ? undefined : gw.shutdown()));
  const base = `http://127.0.0.1:${gw.server!.address.port}`;
  const pre = await fetch(`${base}/sse/send`, { method: 'OPTIONS', headers: { origin: 'https://app.example', 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization' } });
  assert.equal(pre.status, 204);
  assert.equal(pre.headers.get('access-control-allow-origin'), 'https://app.example');
  assert.match(pre.headers.get('access-control-allow-headers') ?? '', /authorization/);
  const evil = await SseClient.open(gw, { origin: 'https://evil.example' });
  assert.equal(evil.status, 403);
  assert.equal(evil.headers['access-control-allow-origin'], undefined);
  assert.equal(gw.hub.sessions.size, 0);
  assert.equal(gw.hub.stats.authFailures, 1, 'counted like a refused WebSocket Origin');
  assert.equal((await fetch(`${base}/sse/send`, { method: 'POST', headers: { origin: 'https://evil.example' }, body: '' })).status, 403);
  // In the same order as a WebSocket upgrade: the per-IP rate comes before Origin (429, not 403).
  const limited = await startGateway({ ALLOWED_ORIGINS: 'https://app.example', HANDSHAKE_RATE_PER_IP: '1' });
  t.after(() => limited.shutdown());
  const first = await SseClient.open(limited, { origin: 'https://evil.example' });
  const second = await SseClient.open(limited, { origin: 'https://evil.example' });
  assert.deepEqual([first.status, second.status], [403, 429]);
  const app = await SseClient.open(gw, { origin: 'https://app.example' });
  t.after(() => app.destroy());
  assert.equal(app.headers['access-control-allow-origin'], 'https://app.example');
  assert.equal((await fetch(`${base}/sse`)).status, 405, 'GET is not a way in');
  const closing = app.closeEvent();
  stopped = true;
  await gw.shutdown();
  assert.deepEqual(await closing, { code: 1001, reason: 'server shutting down' });
});
