// The close codes ws sends for framing violations, as docs/protocol.md lists them: 1002 for
// protocol errors (an orphan continuation, an unmasked client frame, reserved bits), 1008 for a
// message in too many fragments. Raw sockets, so the frames are exactly the violation.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { withGateway, once } from './helpers.ts';

async function rawSession(port: number): Promise<{ sock: net.Socket; closeCode: Promise<number | undefined> }> {
  const sock = net.connect(port, '127.0.0.1');
  sock.on('error', () => {});
  await once(sock, 'connect');
  sock.write('GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n');
  let data = Buffer.alloc(0);
  sock.on('data', (d: Buffer) => (data = Buffer.concat([data, d])));
  const closeCode = new Promise<number | undefined>((resolve) => sock.on('close', () => {
    // The server's close frame: opcode 8, unmasked, the code in its first two payload bytes.
    const body = data.subarray(data.indexOf('\r\n\r\n') + 4);
    let off = 0;
    while (off + 2 <= body.length) {
      const len = body[off + 1]! & 0x7f;
      const hdr = len === 126 ? 4 : 2;
      if ((body[off]! & 0x0f) === 8) return resolve(body.readUInt16BE(off + hdr));
      off += hdr + (len === 126 ? body.readUInt16BE(off + 2) : len);
    }
    resolve(undefined);
  }));
  for (let i = 0; i < 200 && !data.includes('\r\n\r\n'); i++) await new Promise((r) => setTimeout(r, 10));
  return { sock, closeCode };
}

const frame = (first: number, payload: Buffer, masked = true): Buffer => {
  const mask = Buffer.from([5, 6, 7, 8]);
  if (!masked) return Buffer.concat([Buffer.from([first, payload.length]), payload]);
  return Buffer.concat([Buffer.from([first, 0x80 | payload.length]), mask, Buffer.from(payload.map((b, i) => b ^ mask[i % 4]!))]);
};

test('framing violations close with 1002; a message in too many fragments with 1008', async () => {
  await withGateway({}, async (gw) => {
    const port = gw.server!.address.port;
    const orphan = await rawSession(port);
    orphan.sock.write(frame(0x80, Buffer.from('continuation of nothing')));
    assert.equal(await orphan.closeCode, 1002);
    const unmasked = await rawSession(port);
    unmasked.sock.write(frame(0x81, Buffer.from('{"op":"ping"}'), false));
    assert.equal(await unmasked.closeCode, 1002);
    const rsv = await rawSession(port);
    rsv.sock.write(frame(0xc1, Buffer.from('{"op":"ping"}'))); // RSV1 without an extension
    assert.equal(await rsv.closeCode, 1002);
    const fragments = await rawSession(port);
    const parts = [frame(0x01, Buffer.from('['))];
    for (let i = 0; i < 16_400; i++) parts.push(frame(0x00, Buffer.from(' ')));
    fragments.sock.write(Buffer.concat(parts));
    assert.equal(await fragments.closeCode, 1008);
  });
});
