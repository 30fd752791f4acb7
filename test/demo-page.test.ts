// The demo page in real headless Chromium: two pages chat through the server (and its chat
// component), a request is answered by the echo component, and a screenshot is kept as an
// artifact in build/artifacts/demo.png.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { buildComponent, ROOT } from '../scripts/build-components.ts';
import { startGateway } from './helpers.ts';

const CHROMIUM = '/usr/bin/chromium';
const available = existsSync(CHROMIUM);
if (!available && process.env.CI) throw new Error(`${CHROMIUM} is missing: .ci/run installs Debian's chromium`);

test('two browser pages chat; the echo component answers a request; screenshot saved', { skip: available ? false : `${CHROMIUM} not installed (apt-get install chromium)` }, async () => {
  const [echo, chat] = await Promise.all(['echo', 'chat'].map(async (n) => (await buildComponent(join(ROOT, 'examples/components', n))).path));
  const gw = await startGateway({ COMPONENT_CACHE_DIR: join(ROOT, 'build/cache') });
  after(() => gw.shutdown());
  await gw.addComponent({ id: 'echo', path: echo!, subscriptions: [{ subject: 'echo.>', queue: undefined }], poolSize: 2, timeoutMs: 10_000, maxQueue: 100, env: {}, preopens: {} });
  await gw.addComponent({ id: 'chat', path: chat!, subscriptions: [{ subject: 'chat.>', queue: undefined }], poolSize: 1, timeoutMs: 10_000, maxQueue: 100, env: {}, preopens: {} });
  const url = `http://127.0.0.1:${gw.server!.address.port}/`;

  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  after(() => browser.close());
  const [a, b] = await Promise.all([browser.newPage(), browser.newPage()]);
  for (const p of [a, b]) {
    await p.goto(url);
    await p.locator('#state', { hasText: 'open' }).waitFor();
  }
  const sessionA = await a.locator('#session').textContent();
  assert.match(sessionA ?? '', /^[A-Za-z0-9_-]{22}$/);
  assert.ok(gw.hub.sessions.has(sessionA!), 'the page shows its real session id');

  for (const [p, nick] of [[a, 'alice'], [b, 'bob']] as const) {
    await p.fill('#nick', nick);
    await p.click('#chat-join button');
    await p.locator('#chat-lines li', { hasText: 'joined lobby' }).waitFor();
  }
  await a.fill('#chat-text', 'hello from the other tab');
  await a.click('#chat-send button');
  await b.locator('#chat-lines li', { hasText: 'alice: hello from the other tab' }).waitFor();
  await a.locator('#chat-lines li', { hasText: 'alice: hello from the other tab' }).waitFor();

  await a.fill('#req-text', 'echo me');
  await a.click('#req button');
  await a.locator('#replies li', { hasText: 'echo.demo → echo me' }).waitFor();
  await a.fill('#req-subject', 'nobody.home');
  await a.click('#req button');
  await a.locator('#replies li', { hasText: 'no_responders' }).waitFor();
  await a.locator('#count', { hasText: /^[2-9]/ }).waitFor();
  await a.locator('#frames li', { hasText: '"op":"welcome"' }).waitFor();

  mkdirSync(join(ROOT, 'build/artifacts'), { recursive: true });
  await a.screenshot({ path: join(ROOT, 'build/artifacts/demo.png'), fullPage: true });
  assert.ok(existsSync(join(ROOT, 'build/artifacts/demo.png')));
});
