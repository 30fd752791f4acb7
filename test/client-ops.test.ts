// Operating client-mode links: /readyz follows them, /metrics and /api/stats name them, one link
// giving up does not take the process (or the other links) down.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { remoteServer, clientGateway, nextEvent, cliProcess, tcpServer } from './remote-helpers.ts';
import type { Gateway } from '../src/gateway/gateway.ts';

const FAST = { RECONNECT_BASE_MS: '20', RECONNECT_MAX_MS: '40', KEEPALIVE_INTERVAL_SEC: '0' };
const http = (gw: Gateway, path: string, init: RequestInit = {}) => fetch(`http://127.0.0.1:${gw.server!.address.port}${path}`, init);

test('/readyz is 503 while a link is down, names the links; /metrics and /api/stats name them', async (t) => {
  const remote = await remoteServer();
  const port = remote.port;
  const gw = await clientGateway({ URI: remote.url, LINK_NAME: 'feed', LISTEN: '127.0.0.1:0', ADMIN_TOKEN: 'adm', ...FAST });
  t.after(() => gw.shutdown());
  const link = gw.links[0]!;
  if (link.state !== 'open') await nextEvent(link, 'open');
  const ready = await http(gw, '/readyz');
  assert.equal(ready.status, 200);
  assert.deepEqual((await ready.json() as { links: unknown }).links, { feed: 'open' });
  const metrics = await (await http(gw, '/metrics')).text();
  assert.match(metrics, /wsbridge_link_up\{link="feed"\} 1/);
  assert.match(metrics, /wsbridge_link_connects_total\{link="feed"\} 1/);
  assert.match(metrics, /wsbridge_link_dropped_total\{link="feed",reason="offline"\} 0/);
  const stats = await (await http(gw, '/api/stats', { headers: { authorization: 'Bearer adm' } })).json() as { links: Array<Record<string, unknown>> };
  assert.equal(stats.links[0]!.id, 'feed');
  assert.equal(stats.links[0]!.state, 'open');
  assert.deepEqual(stats.links[0]!.owners, ['config']);

  await remote.close();
  await nextEvent(link, 'reconnecting');
  const down = await http(gw, '/readyz');
  assert.equal(down.status, 503);
  const body = await down.json() as { status: string; links: Record<string, string> };
  assert.equal(body.status, 'not_ready');
  assert.notEqual(body.links.feed, 'open');
  assert.match(await (await http(gw, '/metrics')).text(), /wsbridge_link_up\{link="feed"\} 0/);
  const back = await remoteServer(port);
  t.after(() => back.close());
  await nextEvent(link, 'open');
  assert.equal((await http(gw, '/readyz')).status, 200);
});

test('CLI: one link giving up leaves the process and the other link running; all given up without a listener exits 1', async (t) => {
  const remote = await remoteServer();
  t.after(() => remote.close());
  const dead = await tcpServer((s) => s.destroy());
  t.after(() => dead.close());
  const dir = mkdtempSync(join(tmpdir(), 'wsbridge-ops-'));
  const file = join(dir, 'two.json');
  writeFileSync(file, JSON.stringify({ MODE: 'client', RECONNECT_BASE_MS: 20, RECONNECT_MAX_MS: 40, links: [
    { URI: `ws://127.0.0.1:${dead.port}/`, LINK_NAME: 'dead', RECONNECT_MAX_ATTEMPTS: 2 },
    { URI: remote.url, LINK_NAME: 'live', FORWARD: ['out.>'], RAW_OUT_SUBJECT: 'echo.out', RAW_SUBJECT: 'echo.in' },
  ] }));
  const conn = remote.nextConn();
  const cli = await cliProcess(t, ['--config', file]);
  await cli.waitFor(/link dead gave up/);
  const { ws } = await conn;
  // The live link is still open after the other gave up, and nothing exited.
  ws.send('still here');
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(ws.readyState, ws.OPEN);
  assert.doesNotMatch(cli.output(), /exiting/);

  const only = join(dir, 'one.json');
  writeFileSync(only, JSON.stringify({ MODE: 'client', RECONNECT_BASE_MS: 20, RECONNECT_MAX_MS: 40, links: [{ URI: `ws://127.0.0.1:${dead.port}/`, RECONNECT_MAX_ATTEMPTS: 1 }] }));
  const lone = await cliProcess(t, ['--config', only]);
  assert.equal((await lone.exit).code, 1);
  assert.match(lone.output(), /every link has given up/);
});
