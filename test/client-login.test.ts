// Credentials that rotate and login frames, against a local remote: LOGIN_FRAMES go first on every
// (re)connect, before what waited offline; AUTH_TOKEN_FILE is read again for every attempt, in the
// Authorization header and in {{AUTH_TOKEN}}.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '../src/config/load.ts';
import { remoteServer, clientGateway, nextEvent } from './remote-helpers.ts';

test('login frames on every (re)connect; a rotated token file is used on the next attempt', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'wsbridge-token-'));
  const tokenFile = join(dir, 'token');
  writeFileSync(tokenFile, 'token-one\n');
  const remote = await remoteServer();
  t.after(() => remote.close());
  const first = remote.nextConn();
  const gw = await clientGateway({
    URI: remote.url, AUTH_TOKEN_FILE: tokenFile, FORWARD: 'out.>', KEEPALIVE_INTERVAL_SEC: '0', RECONNECT_BASE_MS: '20', RECONNECT_MAX_MS: '40',
    LOGIN_FRAMES: JSON.stringify([{ op: 'auth', token: '{{AUTH_TOKEN}}' }, 'SUBSCRIBE ticks']),
  });
  t.after(() => gw.shutdown());
  const link = gw.links[0]!;
  const a = await first;
  assert.equal(a.req.headers.authorization, 'Bearer token-one');
  assert.deepEqual(JSON.parse(await remote.nextFrame(a)), { op: 'auth', token: 'token-one' });
  assert.equal(await remote.nextFrame(a), 'SUBSCRIBE ticks');

  // Rotate the credential, drop the connection, publish while it is down.
  writeFileSync(tokenFile, 'token-two\n');
  const second = remote.nextConn();
  const reconnecting = nextEvent(link, 'reconnecting');
  a.ws.terminate();
  await reconnecting;
  gw.publish({ subject: 'out.queued', body: Buffer.from('q'), replyTo: null });
  const b = await second;
  assert.equal(b.req.headers.authorization, 'Bearer token-two');
  assert.deepEqual(JSON.parse(await remote.nextFrame(b)), { op: 'auth', token: 'token-two' });
  assert.equal(await remote.nextFrame(b), 'SUBSCRIBE ticks');
  assert.equal((JSON.parse(await remote.nextFrame(b)) as { subject: string }).subject, 'out.queued', 'what waited offline comes after the login frames');

  // A token file that disappears: a failed attempt (named), retried, not a crash.
  rmSync(tokenFile);
  const failed = nextEvent<[Error]>(link, 'error');
  b.ws.terminate();
  assert.match((await failed)[0].message, /AUTH_TOKEN_FILE: cannot read .* \(ENOENT\)/);
  writeFileSync(tokenFile, 'token-three');
  const c = await remote.nextConn();
  assert.equal(c.req.headers.authorization, 'Bearer token-three');
});

test('LOGIN_FRAMES and AUTH_TOKEN_FILE are validated at start', () => {
  assert.throws(() => loadConfig({ env: {}, flags: { MODE: 'client', LOGIN_FRAMES: '{"not":"an array"}' } }), /LOGIN_FRAMES .*expected a JSON array/);
  assert.throws(() => loadConfig({ env: {}, flags: { MODE: 'client', LOGIN_FRAMES: '[oops' } }), /LOGIN_FRAMES \(from flag\): expected JSON/);
  assert.throws(() => loadConfig({ env: {}, flags: { MODE: 'client', AUTH_TOKEN_FILE: '/nonexistent/token' } }), /AUTH_TOKEN_FILE: cannot read \/nonexistent\/token \(ENOENT\)/);
  assert.throws(() => loadConfig({ env: {}, flags: { MODE: 'client', AUTH_TOKEN_FILE: '/etc/hostname', AUTH_TOKEN: 'x' } }), /alternatives/);
});
