// Links that would share one connection agree on every setting or are refused naming the conflict;
// programmatic links resolve over the gateway's own top-level values (HEADER_*, AUTH_TOKEN in
// client mode, RAW_SUBJECT, reconnect), as the seed merged link values over the provider's.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Gateway } from '../src/gateway/gateway.ts';
import { loadConfig } from '../src/config/load.ts';
import { ok } from '../src/gateway/messaging.ts';
import { remoteServer, clientGateway, cliProcess } from './remote-helpers.ts';

const file = (o: unknown) => {
  const f = join(mkdtempSync(join(tmpdir(), 'wsbridge-share-')), 'c.json');
  writeFileSync(f, JSON.stringify(o));
  return f;
};

test('config-file links to one connection that disagree are a config error naming the settings and both links', async (t) => {
  const f = file({ MODE: 'client', links: [{ URI: 'ws://127.0.0.1:1/x', RAW_SUBJECT: 'a' }, { URI: 'ws://127.0.0.1:1/x', RAW_SUBJECT: 'b', KEEPALIVE_INTERVAL_SEC: 5 }] });
  assert.throws(() => loadConfig({ env: {}, file: f }), /links\[1\] and .*links\[0\] would share one connection .* but set KEEPALIVE_INTERVAL_SEC \(30 vs 5\), RAW_SUBJECT \("a" vs "b"\) differently/);
  const { exit, output } = await cliProcess(t, ['--config', f]);
  assert.equal((await exit).code, 2);
  assert.match(output(), /RAW_SUBJECT/);
  // Same values: one connection. Other headers: two connections, fine.
  assert.equal(loadConfig({ env: {}, file: file({ MODE: 'client', links: [{ URI: 'ws://127.0.0.1:1/x' }, { URI: 'ws://127.0.0.1:1/x' }] }) }).links.length, 2);
  assert.equal(loadConfig({ env: {}, file: file({ MODE: 'client', links: [{ URI: 'ws://127.0.0.1:1/x', RAW_SUBJECT: 'a' }, { URI: 'ws://127.0.0.1:1/x', RAW_SUBJECT: 'b', HEADER_X_Feed: 'b' }] }) }).links.length, 2);
  assert.throws(() => loadConfig({ env: {}, file: file({ MODE: 'client', links: [{ URI: 'ws://127.0.0.1:1/x', LINK_NAME: 'feed' }, { URI: 'ws://127.0.0.1:2/y', LINK_NAME: 'feed' }] }) }), /both named "feed"/);
});

test('a programmatic link that would share a connection with other settings is refused, naming them', async (t) => {
  const remote = await remoteServer();
  t.after(() => remote.close());
  const gw = await Gateway.start(loadConfig({ flags: { MODE: 'server', LISTEN: '127.0.0.1:0' }, env: {} }));
  t.after(() => gw.shutdown());
  gw.linkTarget('a', { URI: remote.url, FORWARD: 'x.>' });
  assert.throws(() => gw.linkSource('b', { handleMessage: () => ok(undefined) }, ['y'], { URI: remote.url, FORWARD: 'y.>' }), /FORWARD \(\["x\.>"\] vs \["y\.>"\]\)/);
  gw.linkTarget('c', { URI: remote.url, FORWARD: 'x.>' });
  assert.equal(gw.links.length, 1, 'the agreeing one shares');
});

test('programmatic links inherit the gateway\'s HEADER_*, AUTH_TOKEN, RAW_SUBJECT and reconnect settings (client mode)', async (t) => {
  const main = await remoteServer();
  const other = await remoteServer();
  t.after(() => main.close());
  t.after(() => other.close());
  const gw = await clientGateway({ URI: main.url, HEADER_X_Team: 'blue', AUTH_TOKEN: 'top-token', RAW_SUBJECT: 'top.raw', RECONNECT_MAX_MS: '1234' });
  t.after(() => gw.shutdown());
  const conn = other.nextConn();
  const link = gw.remoteLinks.get(gw.linkTarget('comp', { URI: other.url, HEADER_X_Own: 'mine' }) && [...gw.links].at(-1)!.id)!;
  const { req } = await conn;
  assert.equal(req.headers.authorization, 'Bearer top-token');
  assert.equal(req.headers['x_team'], 'blue');
  assert.equal(req.headers['x_own'], 'mine');
  assert.equal(link.config.rawSubject, 'top.raw');
  assert.equal(link.config.reconnect.maxMs, 1234);
});

test('in server mode AUTH_TOKEN is the server\'s own credential: programmatic links never send it', async (t) => {
  const remote = await remoteServer();
  t.after(() => remote.close());
  const gw = await Gateway.start(loadConfig({ flags: { MODE: 'server', LISTEN: '127.0.0.1:0', AUTH_TOKEN: 'server-secret', HEADER_X_Team: 'blue' }, env: {} }));
  t.after(() => gw.shutdown());
  const conn = remote.nextConn();
  gw.linkTarget('comp', { URI: remote.url });
  const { req } = await conn;
  assert.equal(req.headers.authorization, undefined);
  assert.equal(req.headers['x_team'], 'blue');
});
