// PROXY protocol v1 and v2 in front of the plain and the TLS listener: the header's source
// address is the client's (per-IP caps, session list); connections without a header, with a bad
// one, or from a peer not in TRUSTED_PROXIES are dropped before HTTP.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import tls from 'node:tls';
import { readFileSync } from 'node:fs';
import { withGateway, TestClient, once } from './helpers.ts';
import { makePki } from './tls-helpers.ts';

const v1 = (src: string) => Buffer.from(`PROXY TCP4 ${src} 10.0.0.1 40000 443\r\n`);
function v2ipv6(src: string): Buffer {
  const sig = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
  const addr = (a: string) => {
    const b = Buffer.alloc(16);
    const [head, tail] = a.split('::') as [string, string | undefined];
    const h = head ? head.split(':') : [];
    const t = tail ? tail.split(':') : [];
    [...h, ...Array(8 - h.length - t.length).fill('0'), ...t].forEach((g, i) => b.writeUInt16BE(parseInt(g, 16), i * 2));
    return b;
  };
  const body = Buffer.concat([addr(src), addr('2001:db8::1'), Buffer.from([0x9c, 0x40, 0x01, 0xbb])]);
  return Buffer.concat([sig, Buffer.from([0x21, 0x21, 0x00, body.length]), body]);
}

/** A TCP connection to the gateway that sends `header` first (local address `from`). */
async function proxiedSocket(port: number, header: Buffer, from = '127.0.0.1'): Promise<net.Socket> {
  const raw = net.connect({ port, host: '127.0.0.1', localAddress: from });
  raw.on('error', () => {});
  await once(raw, 'connect');
  await new Promise<void>((r) => raw.write(header, () => r()));
  return raw;
}

function outcome(c: TestClient): Promise<'open' | number> {
  return Promise.race([
    c.next((f) => f.op === 'welcome', 5000).then(() => 'open' as const),
    new Promise<number>((resolve) => c.ws.once('unexpected-response', (_q, res) => { resolve(res.statusCode ?? 0); res.resume(); })),
    c.closed.then(({ code }) => code),
  ]);
}

test('PROXY v1 and v2 name the client on the plain listener; no header, bad header or untrusted peer: dropped', async () => {
  await withGateway({ PROXY_PROTOCOL: 'true', TRUSTED_PROXIES: '127.0.0.1', MAX_CONNECTIONS_PER_IP: '1' }, async (gw) => {
    const port = gw.server!.address.port;
    const url = gw.server!.url;
    const via = async (header: Buffer) => {
      const sock = await proxiedSocket(port, header);
      return new TestClient(url, undefined, { createConnection: () => sock });
    };
    const a = await via(v1('203.0.113.9'));
    assert.equal(await outcome(a), 'open');
    const b = await via(v2ipv6('2001:db8::77'));
    assert.equal(await outcome(b), 'open');
    assert.deepEqual(gw.listSessions().map((s) => s.remote_address).sort(), ['2001:db8::77', '203.0.113.9']);
    const again = await via(v1('203.0.113.9'));
    assert.equal(await outcome(again), 429, 'the per-IP cap applies to the address in the header');
    // Everything else is cut before HTTP: no answer at all.
    for (const [what, header, from] of [
      ['no header', Buffer.from('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n'), '127.0.0.1'],
      ['bad header', Buffer.from('PROXY TCP4 999.1.1.1 10.0.0.1 1 2\r\n'), '127.0.0.1'],
      ['untrusted peer', v1('198.51.100.1'), '127.0.0.2'],
    ] as const) {
      const sock = await proxiedSocket(port, header, from).catch(() => undefined);
      if (!sock) continue; // refused so fast that the write failed: dropped too
      let answer = '';
      sock.on('data', (d: Buffer) => (answer += d.toString()));
      await once(sock, 'close');
      assert.equal(answer, '', `${what}: dropped without an answer`);
    }
    a.close();
    b.close();
  });
});

test('PROXY header in front of TLS: the client address comes through the TLS handshake', async () => {
  const pki = makePki();
  const [cert, key] = pki.issue('server');
  await withGateway({ PROXY_PROTOCOL: 'true', TRUSTED_PROXIES: '127.0.0.0/8', TLS_CERT: cert, TLS_KEY: key }, async (gw) => {
    const raw = await proxiedSocket(gw.server!.address.port, v2ipv6('2001:db8::99'));
    const secure = tls.connect({ socket: raw, ca: readFileSync(pki.ca), host: '127.0.0.1' });
    const c = new TestClient(gw.server!.url, undefined, { createConnection: () => secure });
    assert.equal(await outcome(c), 'open');
    assert.equal((await c.call({ op: 'ping', id: 'p' })).op, 'pong');
    assert.deepEqual(gw.listSessions().map((s) => s.remote_address), ['2001:db8::99']);
    c.close();
  });
});
