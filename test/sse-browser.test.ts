// The fallback transport end to end in headless Chromium: a page whose WebSocket is gone (as
// behind a proxy that breaks it) runs the demo page through the SDK's Server-Sent Events + HTTP
// POST fallback: it subscribes, publishes, and gets answers to requests, next to a page on
// WebSocket.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { startGateway } from './helpers.ts';
import { ok } from '../src/gateway/messaging.ts';

const CHROMIUM = '/usr/bin/chromium';
const available = existsSync(CHROMIUM);
if (!available && process.env.CI) throw new Error(`${CHROMIUM} is missing: .ci/run installs Debian's chromium`);

test('with WebSocket blocked in the page, the demo publishes, subscribes and requests over SSE', { skip: available ? false : `${CHROMIUM} not installed` }, async (t) => {
  const gw = await startGateway();
  t.after(() => gw.shutdown());
  // A TypeScript responder on echo.> stands in for the echo component.
  const consumer = gw.linkTarget('echo-ts');
  gw.linkSource('echo-ts', { handleMessage: (m) => (m.replyTo ? consumer.publish({ subject: m.replyTo, body: m.body, replyTo: null }) : ok(undefined)) }, ['echo.>']);
  const url = `http://127.0.0.1:${gw.server!.address.port}/`;
  const profile = mkdtempSync(join(tmpdir(), 'wsbridge-chromium-'));
  const browser = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--disable-renderer-backgrounding', '--disable-background-timer-throttling', '--disable-backgrounding-occluded-windows'],
  });
  t.after(async () => {
    await browser.close();
    rmSync(profile, { recursive: true, force: true });
  });
  const blocked = await browser.newPage();
  // The page's WebSocket is gone before any of its scripts run.
  await blocked.addInitScript('delete window.WebSocket;');
  // Another page has a WebSocket, but every connection fails (a proxy that breaks upgrades).
  const broken = await browser.newPage();
  await broken.routeWebSocket(/.*/, (ws) => void ws.close({ code: 1006 }).catch(() => {}));
  let upgrades = 0;
  gw.server!.http.on('upgrade', () => upgrades++);
  const plain = await browser.newPage();
  for (const p of [blocked, broken, plain]) {
    await p.goto(url);
    await p.locator('#state', { hasText: 'open' }).waitFor();
  }
  assert.equal(await blocked.evaluate('typeof window.WebSocket'), 'undefined');
  await blocked.locator('#transport', { hasText: 'sse' }).waitFor();
  await broken.locator('#transport', { hasText: 'sse' }).waitFor();
  await plain.locator('#transport', { hasText: 'websocket' }).waitFor();
  assert.equal(upgrades, 1, 'only the plain page opened a WebSocket');
  const session = (await blocked.locator('#session').textContent())!;
  assert.equal(gw.listSessions().find((s) => s.id === session)?.transport, 'sse', 'the server holds it as an SSE session');

  // Subscribe, then publish from the same page and from the WebSocket page. (A page in the
  // background gets its frames throttled, which slows every click: bring the acting one forward.)
  await blocked.bringToFront();
  await blocked.fill('#sub-pattern', 'demo.>');
  await blocked.click('#sub button');
  await blocked.locator('#subs li', { hasText: 'demo.> subscribed' }).waitFor();
  await blocked.fill('#pub-subject', 'demo.self');
  await blocked.fill('#pub-text', 'over sse');
  await blocked.click('#pub button');
  await blocked.locator('#messages li', { hasText: 'demo.self: over sse' }).waitFor();
  await plain.bringToFront();
  await plain.fill('#pub-subject', 'demo.other');
  await plain.fill('#pub-text', 'from a websocket page');
  await plain.click('#pub button');
  await blocked.locator('#messages li', { hasText: 'demo.other: from a websocket page' }).waitFor();
  // And the other way round.
  await plain.fill('#sub-pattern', 'demo.>');
  await plain.click('#sub button');
  await plain.locator('#subs li', { hasText: 'demo.> subscribed' }).waitFor();
  await blocked.bringToFront();
  await blocked.fill('#pub-subject', 'demo.back');
  await blocked.fill('#pub-text', 'to the websocket page');
  await blocked.click('#pub button');
  await plain.locator('#messages li', { hasText: 'demo.back: to the websocket page' }).waitFor();

  // Request → reply, and a request nobody answers.
  await blocked.fill('#req-text', 'echo over sse');
  await blocked.click('#req button');
  await blocked.locator('#replies li', { hasText: 'echo.demo → echo over sse' }).waitFor();
  await blocked.fill('#req-subject', 'nobody.home');
  await blocked.click('#req button');
  await blocked.locator('#replies li', { hasText: 'no_responders' }).waitFor();
  await broken.bringToFront();
  await broken.fill('#req-text', 'echo after a broken websocket');
  await broken.click('#req button');
  await broken.locator('#replies li', { hasText: 'echo.demo → echo after a broken websocket' }).waitFor();
  // The frame log shows the same v1 frames as over WebSocket.
  await blocked.locator('#frames li', { hasText: '"op":"welcome"' }).waitFor();
});
