// The guest kit's WebSocket class (wsbridge/guest): a component built from source runs a
// WebSocket session written as a web page would write it (test/fixtures/browser-ws-scenario.js)
// inside one handle-message call, against a ws server started here, once over
// golem:websocket/client and once over wasmcloud:websocket/client. What it sees (open, messages
// both ways, a timer firing while a message is awaited, close codes and reasons, abnormal ends)
// must be what Chromium sees running the same function against the same server, and what the
// server sees must be what the component sent.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { WebSocketServer } from 'ws';
import type WebSocket from 'ws';
import { chromium } from 'playwright-core';
import { buildComponent, ROOT } from '../scripts/build-components.ts';
import { startGateway, once, bounded } from './helpers.ts';

const CACHE = join(ROOT, 'build/cache');
const CHROMIUM = '/usr/bin/chromium';
const fixture = async (name: string) => (await buildComponent(join(ROOT, 'test/fixtures/components', name), { outDir: join(ROOT, 'build/test-components') })).path;
const [golemWasm, wasmcloudWasm] = await Promise.all([fixture('browser-ws'), fixture('browser-ws-wasmcloud')]);

/** What the server saw of one main session. */
interface Seen {
  received: Array<string | number[]>;
  closed?: { code: number; reason: string };
  protocol: string;
}

const sessions: Seen[] = [];
const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, handleProtocols: (offered) => [...offered].pop() ?? false });
await once(wss, 'listening');
wss.on('connection', (ws: WebSocket, req) => {
  const path = req.url ?? '';
  if (path.startsWith('/by-server')) {
    ws.close(4321, 'server says bye');
    return;
  }
  if (path.startsWith('/silent')) return;
  if (path.startsWith('/dropped')) {
    ws.send('one', () => ws.terminate());
    return;
  }
  const seen: Seen = { received: [], protocol: ws.protocol };
  sessions.push(seen);
  ws.send('hello');
  ws.send(Buffer.from([1, 2, 3]));
  ws.on('message', (data: Buffer, isBinary) => {
    seen.received.push(isBinary ? [...data] : data.toString());
    if (!isBinary && data.toString() === 'answer late') setTimeout(() => ws.send('late answer'), 300);
    else if (!isBinary && data.toString() === 'burst') for (const m of ['one', 'two', 'three']) ws.send(m);
    else if (!isBinary && data.toString() === 'say nothing') return;
    else ws.send(isBinary ? data : `echo:${data.toString()}`, { binary: isBinary });
  });
  ws.on('close', (code, reason) => (seen.closed = { code, reason: reason.toString() }));
});
const port = (wss.address() as net.AddressInfo).port;
const refused = await new Promise<number>((resolve) => {
  const s = net.createServer().listen(0, '127.0.0.1', () => {
    const p = (s.address() as net.AddressInfo).port;
    s.close(() => resolve(p));
  });
});
const urls = {
  main: `ws://127.0.0.1:${port}/main`,
  byServer: `ws://127.0.0.1:${port}/by-server`,
  dropped: `ws://127.0.0.1:${port}/dropped`,
  refused: `ws://127.0.0.1:${refused}/`,
  silent: `ws://127.0.0.1:${port}/silent`,
};

const gw = await startGateway({ COMPONENT_CACHE_DIR: CACHE });
after(async () => {
  await gw.shutdown();
  for (const c of wss.clients) c.terminate();
  wss.close();
});
for (const [id, path] of [['browser-ws', golemWasm], ['browser-ws-wasmcloud', wasmcloudWasm]] as const) {
  await gw.addComponent({ id, path, subscriptions: [{ subject: `${id}.run`, queue: undefined }], poolSize: 1, timeoutMs: 60_000, maxQueue: 10, env: {}, preopens: {} });
}

async function inComponent(id: string, protocols: string[]): Promise<unknown[]> {
  const r = await gw.request(`${id}.run`, Buffer.from(JSON.stringify({ urls, protocols })), 60_000);
  if (r.tag === 'err') throw new Error(`${id}: ${r.val}`);
  return JSON.parse(Buffer.from(r.val.body).toString()) as unknown[];
}

const scenarioSource = readFileSync(join(ROOT, 'test/fixtures/browser-ws-scenario.js'), 'utf8').replace(/^export async function scenario/m, 'async function scenario');

async function inChromium(protocols: string[]): Promise<unknown[]> {
  const profile = mkdtempSync(join(tmpdir(), 'wsbridge-chromium-'));
  const browser = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  try {
    const page = await browser.newPage();
    return await bounded(page.evaluate(([src, u, p]) => (0, eval)(`${src}; scenario`)(globalThis.WebSocket, u, p), [scenarioSource, urls, protocols] as const), 'the scenario in Chromium', 60_000) as unknown[];
  } finally {
    await browser.close();
    rmSync(profile, { recursive: true, force: true });
  }
}

/** What both transports must see, written out (so the test stands without a browser too). */
function expected(protocol: string): unknown[] {
  return [
    ['constructed', 0, urls.main, '', 'blob', 0, '', 0, 3],
    ['send while connecting', 'InvalidStateError', 'TypeError'],
    ['binaryType after a bad value', 'blob'],
    ['open', 'Event', 1, protocol],
    ['message', 'string', 'hello', `ws://127.0.0.1:${port}`, ''],
    ['message', true, 3, [1, 2, 3]],
    ['echo', 'echo:ping text ✓'],
    ['echo', [9, 8, 7]],
    ['echo', [...Buffer.from(new Uint16Array([0x0102]).buffer)]],
    ['echo', [...Buffer.from('blob-part')]],
    ['echo', 'echo:after the blob'],
    ['race', 'timer'],
    ['late', 'late answer'],
    ['silence', 'timer fired'],
    ['close(1001)', 'InvalidAccessError'],
    ['close(999)', 'InvalidAccessError'],
    ['close with a long reason', 'SyntaxError'],
    ['after close()', 2],
    ['bufferedAmount', 11],
    ['close', 'CloseEvent', 4000, 'done ✓', true, 3],
    ['messages after close()', []],
    ['order', Array.from({ length: 16 }, (_, i) => (i % 2 === 0 ? ['onmessage', true, true, true] : ['listener']))],
    ['closed by the server', ['open', 'close'], 4321, 'server says bye', true, 3],
    ['dropped', ['open', 'message', 'close'], 1006, '', false],
    ['refused', ['error', 'close', 'onclose'], 1006, '', false, 3],
    ['closed while connecting', 2],
    ['closed while connecting', ['error', 'close'], 1006, false],
    ['while another is silent', 4321, 1000],
    ['bad URLs', 'SyntaxError', 'SyntaxError', 'SyntaxError', 'TypeError'],
    ['bad subprotocols', 'SyntaxError', 'SyntaxError', 'SyntaxError'],
    ...(protocol ? [['subprotocols accepted', [3, 3]]] : []),
  ];
}

/** What the server saw of the last main session. */
function serverSaw(protocol: string): void {
  const s = sessions.at(-1)!;
  assert.equal(s.protocol, protocol);
  assert.deepEqual(s.received, ['ping text ✓', [9, 8, 7], [...Buffer.from(new Uint16Array([0x0102]).buffer)], [...Buffer.from('blob-part')], 'after the blob', 'answer late', 'say nothing', 'burst']);
  assert.deepEqual(s.closed, { code: 4000, reason: 'done ✓' });
}

const browserLogs = new Map<string, Promise<unknown[]>>();
const browser = (protocols: string[]) => {
  const key = protocols.join(',');
  if (!browserLogs.has(key)) browserLogs.set(key, inChromium(protocols));
  return browserLogs.get(key)!;
};
const haveChromium = existsSync(CHROMIUM);
if (!haveChromium && process.env.CI) throw new Error(`${CHROMIUM} is missing: .ci/run installs Debian's chromium`);

test('golem:websocket: new WebSocket(url) inside one handler call sees what a browser sees', async () => {
  const log = await inComponent('browser-ws', []);
  assert.deepEqual(log, expected(''));
  serverSaw('');
});

test('wasmcloud:websocket: the same class, subprotocols offered and chosen', async () => {
  const log = await inComponent('browser-ws-wasmcloud', ['chat.v1', 'chat.v2']);
  assert.deepEqual(log, expected('chat.v2'));
  serverSaw('chat.v2');
});

test('Chromium running the same session sees the same events', { skip: haveChromium ? false : `${CHROMIUM} not installed` }, async () => {
  assert.deepEqual(await browser([]), expected(''));
  serverSaw('');
  assert.deepEqual(await browser(['chat.v1', 'chat.v2']), expected('chat.v2'));
  serverSaw('chat.v2');
});
