// wss:// to a private CA that requires a client certificate (a throwaway CA made by the test),
// REMOTE_TLS_SERVERNAME, and links through a local CONNECT proxy started by the test (with proxy
// credentials, to wss:// through the tunnel, and a proxy that never answers the CONNECT).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import https from 'node:https';
import http from 'node:http';
import net from 'node:net';
import { readFileSync } from 'node:fs';
import type { TLSSocket } from 'node:tls';
import { WebSocketServer } from 'ws';
import { once } from './helpers.ts';
import { makePki } from './tls-helpers.ts';
import { clientGateway, nextEvent, remoteServer } from './remote-helpers.ts';

const FAST = { RECONNECT_BASE_MS: '20', RECONNECT_MAX_MS: '40', KEEPALIVE_INTERVAL_SEC: '0', CONNECT_TIMEOUT_SEC: '5' };
const pki = makePki();
const [serverCert, serverKey] = pki.issue('server');
const [clientCert, clientKey] = pki.issue('gateway-link', { client: true });

/** A wss:// server on 127.0.0.1 requiring a client certificate from the test CA. */
async function mtlsServer(t: { after(fn: () => unknown): void }) {
  const server = https.createServer({ cert: readFileSync(serverCert), key: readFileSync(serverKey), ca: readFileSync(pki.ca), requestCert: true, rejectUnauthorized: true });
  const wss = new WebSocketServer({ server });
  const seen: Array<{ cn: unknown; servername: unknown }> = [];
  wss.on('connection', (ws, req) => {
    const sock = req.socket as TLSSocket;
    seen.push({ cn: sock.getPeerCertificate().subject?.CN, servername: sock.servername });
    ws.send('hello over mTLS');
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.after(() => {
    for (const c of wss.clients) c.terminate();
    server.close();
  });
  return { port: (server.address() as net.AddressInfo).port, seen };
}

/** A CONNECT proxy on loopback; `mute` accepts CONNECT and never answers. */
async function connectProxy(t: { after(fn: () => unknown): void }, opts: { mute?: boolean } = {}) {
  const server = http.createServer((_req, res) => res.writeHead(405).end());
  const requests: Array<{ target: string; auth: string | undefined }> = [];
  const sockets: net.Socket[] = [];
  server.on('connect', (req, client: net.Socket) => {
    sockets.push(client);
    client.on('error', () => {});
    requests.push({ target: req.url!, auth: req.headers['proxy-authorization'] });
    if (opts.mute) return;
    const [host, port] = req.url!.split(':');
    const upstream = net.connect(Number(port), host!, () => {
      client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      upstream.pipe(client);
      client.pipe(upstream);
    });
    upstream.on('error', () => client.destroy());
    client.on('close', () => upstream.destroy());
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.after(() => {
    for (const s of sockets) s.destroy();
    server.close();
  });
  return { port: (server.address() as net.AddressInfo).port, requests, sockets };
}

test('wss:// to a private CA requiring a client certificate: REMOTE_TLS_CA_FILE, REMOTE_TLS_CERT, REMOTE_TLS_KEY', async (t) => {
  const remote = await mtlsServer(t);
  const gw = await clientGateway({ URI: `wss://127.0.0.1:${remote.port}/`, REMOTE_TLS_CA_FILE: pki.ca, REMOTE_TLS_CERT: clientCert, REMOTE_TLS_KEY: clientKey, ...FAST });
  t.after(() => gw.shutdown());
  const got = new Promise<string>((r) => gw.linkSource('h', { handleMessage: (m) => { r(Buffer.from(m.body).toString()); return { tag: 'ok', val: undefined }; } }, ['ws.in']));
  assert.equal(await got, 'hello over mTLS');
  assert.equal(remote.seen[0]!.cn, 'gateway-link');
});

test('without the client certificate, or without the CA, the attempt fails (named), never connects', async (t) => {
  const remote = await mtlsServer(t);
  for (const settings of [{ REMOTE_TLS_CA_FILE: pki.ca }, { REMOTE_TLS_CERT: clientCert, REMOTE_TLS_KEY: clientKey }] as Array<Record<string, string>>) {
    const gw = await clientGateway({ URI: `wss://127.0.0.1:${remote.port}/`, RECONNECT_MAX_ATTEMPTS: '1', ...settings, ...FAST });
    t.after(() => gw.shutdown());
    const failed = nextEvent(gw.links[0]!, 'failed');
    const [err] = await nextEvent<[Error]>(gw.links[0]!, 'error');
    assert.ok(err.message.length > 0);
    await failed;
  }
  assert.equal(remote.seen.length, 0);
});

test('REMOTE_TLS_SERVERNAME: SNI and the certificate check use it when dialling an IP', async (t) => {
  const remote = await mtlsServer(t);
  const gw = await clientGateway({ URI: `wss://127.0.0.1:${remote.port}/`, REMOTE_TLS_SERVERNAME: 'localhost', REMOTE_TLS_CA_FILE: pki.ca, REMOTE_TLS_CERT: clientCert, REMOTE_TLS_KEY: clientKey, ...FAST });
  t.after(() => gw.shutdown());
  if (gw.links[0]!.state !== 'open') await nextEvent(gw.links[0]!, 'open');
  assert.equal(remote.seen[0]!.servername, 'localhost');
  const wrong = await clientGateway({ URI: `wss://127.0.0.1:${remote.port}/`, REMOTE_TLS_SERVERNAME: 'elsewhere.invalid', REMOTE_TLS_CA_FILE: pki.ca, REMOTE_TLS_CERT: clientCert, REMOTE_TLS_KEY: clientKey, RECONNECT_MAX_ATTEMPTS: '1', ...FAST });
  t.after(() => wrong.shutdown());
  const failed = nextEvent(wrong.links[0]!, 'failed');
  const [err] = await nextEvent<[Error]>(wrong.links[0]!, 'error');
  assert.match(err.message, /elsewhere\.invalid|altnames/i);
  await failed;
});

test('PROXY_URL: ws:// through a local CONNECT proxy, with proxy credentials', async (t) => {
  const remote = await remoteServer();
  t.after(() => remote.close());
  const proxy = await connectProxy(t);
  const conn = remote.nextConn();
  const gw = await clientGateway({ URI: remote.url, PROXY_URL: `http://user:p%40ss@127.0.0.1:${proxy.port}`, AUTH_TOKEN: 'tok', ...FAST });
  t.after(() => gw.shutdown());
  const { req } = await conn;
  assert.equal(req.headers.authorization, 'Bearer tok');
  assert.deepEqual(proxy.requests, [{ target: `127.0.0.1:${remote.port}`, auth: `Basic ${Buffer.from('user:p@ss').toString('base64')}` }]);
});

test('PROXY_URL with wss:// and mTLS through the tunnel', async (t) => {
  const remote = await mtlsServer(t);
  const proxy = await connectProxy(t);
  const gw = await clientGateway({ URI: `wss://127.0.0.1:${remote.port}/`, PROXY_URL: `http://127.0.0.1:${proxy.port}`, REMOTE_TLS_CA_FILE: pki.ca, REMOTE_TLS_CERT: clientCert, REMOTE_TLS_KEY: clientKey, ...FAST });
  t.after(() => gw.shutdown());
  if (gw.links[0]!.state !== 'open') await nextEvent(gw.links[0]!, 'open');
  assert.equal(remote.seen[0]!.cn, 'gateway-link');
  assert.equal(proxy.requests[0]!.target, `127.0.0.1:${remote.port}`);
});

test('a proxy that never answers the CONNECT is cut off by CONNECT_TIMEOUT_SEC, its socket closed', async (t) => {
  const proxy = await connectProxy(t, { mute: true });
  const started = Date.now();
  const gw = await clientGateway({ URI: 'ws://127.0.0.1:9/', PROXY_URL: `http://127.0.0.1:${proxy.port}`, ...FAST, CONNECT_TIMEOUT_SEC: '1', RECONNECT_MAX_ATTEMPTS: '1' });
  t.after(() => gw.shutdown());
  const failed = nextEvent(gw.links[0]!, 'failed');
  const [err] = await nextEvent<[Error]>(gw.links[0]!, 'error');
  assert.match(err.message, /connect timed out after 1 s .*proxy's CONNECT/);
  assert.ok(Date.now() - started < 6000);
  await failed;
  // The gateway ends its connection to the proxy (the proxy sees the end of its stream).
  const sock = proxy.sockets[0]!;
  if (!sock.readableEnded && !sock.destroyed) await once(sock, 'end');
});

test('REMOTE_TLS_* and PROXY_URL are validated at start', async () => {
  const { loadConfig } = await import('../src/config/load.ts');
  assert.throws(() => loadConfig({ env: {}, flags: { MODE: 'client', REMOTE_TLS_CERT: clientCert } }), /REMOTE_TLS_CERT and REMOTE_TLS_KEY go together/);
  assert.throws(() => loadConfig({ env: {}, flags: { MODE: 'client', REMOTE_TLS_CA_FILE: '/nonexistent/ca.pem' } }), /REMOTE_TLS_CA_FILE: cannot read/);
  assert.throws(() => loadConfig({ env: {}, flags: { MODE: 'client', PROXY_URL: 'socks5://127.0.0.1:1080' } }), /PROXY_URL .*expected http/);
});
