// TLS in server mode with a CA made here: wss:// works, SIGHUP swaps the certificate without
// dropping sessions, and TLS_CLIENT_CA requires client certificates (mutual TLS).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { TLSSocket } from 'node:tls';
import net from 'node:net';
import { spawnCli, TestClient, startGateway } from './helpers.ts';
import { makePki } from './tls-helpers.ts';

test('wss:// with TLS_CERT/TLS_KEY; SIGHUP reloads the certificate and open sessions stay', async () => {
  const pki = makePki();
  const [cert1, key1] = pki.issue('server1');
  const [cert2, key2] = pki.issue('server2');
  const live = [join(pki.dir, 'live.pem'), join(pki.dir, 'live.key')] as const;
  copyFileSync(cert1, live[0]);
  copyFileSync(key1, live[1]);
  const n = await spawnCli(['serve', '--listen', '127.0.0.1:0', '--tls-cert', live[0], '--tls-key', live[1]], {}, /listening on (wss:\/\/\S+)/);
  const url = n.match![1]!;
  assert.match(url, /^wss:\/\//);
  const ca = readFileSync(pki.ca);
  const serial = (c: TestClient) => (c.ws as unknown as { _socket: TLSSocket })._socket.getPeerCertificate().serialNumber;
  const first = await TestClient.connect(url, undefined, { ca });
  const before = serial(first);
  copyFileSync(cert2, live[0]);
  copyFileSync(key2, live[1]);
  n.proc.kill('SIGHUP');
  // A new connection sees the new certificate (the reload is asynchronous: retry, bounded).
  let after = before;
  for (let i = 0; i < 50 && after === before; i++) {
    const c = await TestClient.connect(url, undefined, { ca });
    after = serial(c);
    c.close();
  }
  assert.notEqual(after, before, 'new connections get the reloaded certificate');
  assert.equal((await first.call({ op: 'ping', id: 'still' })).op, 'pong', 'the session from before the reload is still open');
  first.close();
  n.proc.kill('SIGTERM');
  assert.equal((await n.exit).code, 0);
});

test('mutual TLS: TLS_CLIENT_CA refuses clients without a certificate it signed', async () => {
  const pki = makePki();
  const [cert, key] = pki.issue('server');
  const [clientCert, clientKey] = pki.issue('client-1', { client: true });
  const gw = await startGateway({ TLS_CERT: cert, TLS_KEY: key, TLS_CLIENT_CA: pki.ca });
  try {
    const url = gw.server!.url;
    const ca = readFileSync(pki.ca);
    const anonymous = new TestClient(url, undefined, { ca });
    assert.equal((await anonymous.closed).code, 1006, 'handshake refused without a client certificate');
    const withCert = await TestClient.connect(url, undefined, { ca, cert: readFileSync(clientCert), key: readFileSync(clientKey) });
    assert.equal(withCert.welcome.op, 'welcome');
    withCert.close();
  } finally {
    await gw.shutdown();
  }
});

test('TLS settings are checked at startup', async () => {
  const half = await spawnCli(['serve', '--tls-cert', '/nonexistent.pem'], {}, null);
  assert.equal((await half.exit).code, 2);
  assert.match(half.output(), /TLS_CERT and TLS_KEY go together/);
  const missing = await spawnCli(['serve', '--tls-cert', '/nonexistent.pem', '--tls-key', '/nonexistent.key'], {}, null);
  assert.equal((await missing.exit).code, 2);
  assert.match(missing.output(), /TLS_CERT: cannot read \/nonexistent\.pem \(ENOENT\)/);
});

test('HANDSHAKE_TIMEOUT_MS covers the TLS handshake: connections that never send a ClientHello are dropped', async () => {
  const pki = makePki();
  const [cert, key] = pki.issue('server');
  const gw = await startGateway({ TLS_CERT: cert, TLS_KEY: key, HANDSHAKE_TIMEOUT_MS: '300' });
  const sockets: net.Socket[] = [];
  try {
    const port = gw.server!.address.port;
    const closed = await Promise.all(Array.from({ length: 20 }, async (_, i) => {
      const sock = net.connect(port, '127.0.0.1');
      sockets.push(sock);
      sock.on('error', () => {});
      await new Promise((r) => sock.once('connect', r));
      if (i % 2 === 1) sock.write(Buffer.from([0x16, 0x03, 0x01])); // a record header, then nothing
      return new Promise<boolean>((resolve) => sock.once('close', () => resolve(true)));
    }));
    assert.equal(closed.length, 20, 'every silent connection was closed by the server');
    const ok = await TestClient.connect(gw.server!.url, undefined, { ca: readFileSync(pki.ca) });
    assert.equal((await ok.call({ op: 'ping', id: 'p' })).op, 'pong', 'a real client still gets in');
    ok.close();
  } finally {
    for (const s of sockets) s.destroy();
    await gw.shutdown();
  }
});

test('TLS_CLIENT_CA without a certificate to serve is a config error, not plain ws://', async () => {
  const pki = makePki();
  const n = await spawnCli(['serve', '--listen', '127.0.0.1:0', '--tls-client-ca', pki.ca], {}, null);
  assert.equal((await n.exit).code, 2);
  assert.match(n.output(), /TLS_CLIENT_CA needs TLS_CERT and TLS_KEY/);
  assert.doesNotMatch(n.output(), /listening on/);
});
