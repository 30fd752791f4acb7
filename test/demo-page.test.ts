// The demo page in real headless Chromium: two pages chat through the server (and its chat
// component), a request is answered by the echo component; disconnect and reconnect from the
// page keep its subscriptions and room; an invalid pattern shows as refused; bodies are readable; and a screenshot is kept as an
// artifact in build/artifacts/demo.png.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { buildComponent, ROOT } from '../scripts/build-components.ts';
import { startGateway } from './helpers.ts';

const CHROMIUM = '/usr/bin/chromium';
const available = existsSync(CHROMIUM);
if (!available && process.env.CI) throw new Error(`${CHROMIUM} is missing: .ci/run installs Debian's chromium`);

test('two browser pages chat; the echo component answers a request; screenshot saved', { skip: available ? false : `${CHROMIUM} not installed (apt-get install chromium)` }, async () => {
  const [echo, chat] = await Promise.all(['echo', 'chat'].map(async (n) => (await buildComponent(join(ROOT, 'examples/components', n))).path));
  // As npm start runs it (examples/demo.json): presence kept for the chat rooms.
  const gw = await startGateway({ COMPONENT_CACHE_DIR: join(ROOT, 'build/cache'), PRESENCE_SUBJECTS: 'room.*' });
  after(() => gw.shutdown());
  await gw.addComponent({ id: 'echo', path: echo!, subscriptions: [{ subject: 'echo.>', queue: undefined }], poolSize: 2, timeoutMs: 10_000, maxQueue: 100, env: {}, preopens: {} });
  await gw.addComponent({ id: 'chat', path: chat!, subscriptions: [{ subject: 'chat.>', queue: undefined }], poolSize: 1, timeoutMs: 10_000, maxQueue: 100, env: {}, preopens: {} });
  const url = `http://127.0.0.1:${gw.server!.address.port}/`;

  // A fresh profile per run, so nothing cached from an earlier run changes what the page does.
  const profile = mkdtempSync(join(tmpdir(), 'wsbridge-chromium-'));
  const browser = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  after(async () => {
    await browser.close();
    rmSync(profile, { recursive: true, force: true });
  });
  const [a, b] = [await browser.newPage(), await browser.newPage()];
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
    await p.locator('#chat-lines li', { hasText: `${nick} joined` }).waitFor();
  }
  // Each join shows once, with the name; the member count follows.
  await a.locator('#chat-lines li', { hasText: 'bob joined' }).waitFor();
  assert.equal(await a.locator('#chat-lines li', { hasText: 'joined' }).count(), 2, 'alice joined, bob joined: once each');
  await a.locator('#members', { hasText: '2' }).waitFor();
  // The member list names everyone (presence per subject, names from the pages' hellos).
  await a.locator('#member-list li', { hasText: 'alice (you)' }).waitFor();
  await a.locator('#member-list li', { hasText: /^bob$/ }).waitFor();
  await b.locator('#member-list li', { hasText: /^alice$/ }).waitFor();
  await b.locator('#member-list li', { hasText: 'bob (you)' }).waitFor();
  await a.fill('#chat-text', 'hello from the other tab');
  await a.click('#chat-send button');
  await b.locator('#chat-lines li', { hasText: 'alice: hello from the other tab' }).waitFor();
  await a.locator('#chat-lines li', { hasText: 'alice: hello from the other tab' }).waitFor();
  // Chat reads top-down: the newest line is the last one.
  assert.match((await a.locator('#chat-lines li').last().textContent()) ?? '', /alice: hello from the other tab/);

  await a.fill('#req-text', 'echo me');
  await a.click('#req button');
  await a.locator('#replies li', { hasText: 'echo.demo → echo me' }).waitFor();
  await a.fill('#req-subject', 'nobody.home');
  await a.click('#req button');
  await a.locator('#replies li', { hasText: 'no_responders' }).waitFor();
  await a.locator('#count', { hasText: /^[2-9]/ }).waitFor();
  await a.locator('#frames li', { hasText: '"op":"welcome"' }).waitFor();
  // Bodies in the frame log are readable text when they are UTF-8; the timeout box has a label.
  await a.locator('#frames li', { hasText: '"text":"echo me"' }).first().waitFor();
  assert.equal(await a.locator('#frames li', { hasText: '"body":"ZWNobyBtZQ=="' }).count(), 0);
  assert.equal(await a.getByLabel('timeout').count(), 1);
  assert.equal((await fetch(`${url}favicon.ico`)).status, 200);

  // An invalid pattern is shown as refused, with the server's code, not as subscribed.
  await a.fill('#sub-pattern', 'bad*');
  await a.click('#sub button');
  await a.locator('#subs li.bad', { hasText: 'refused: invalid_subject' }).waitFor();
  await a.locator('#sub-error', { hasText: 'invalid_subject' }).waitFor();
  // A valid one is shown as subscribed once the server said ok.
  await a.fill('#sub-pattern', 'demo.>');
  await a.click('#sub button');
  await a.locator('#subs li', { hasText: 'demo.> subscribed' }).waitFor();

  // Disconnect → Connect: a new session that still has the listed subscription and the room.
  await a.click('#toggle');
  await a.locator('#state', { hasText: 'closed' }).waitFor();
  await b.locator('#chat-lines li', { hasText: 'alice left' }).waitFor();
  await b.locator('#members', { hasText: '1' }).waitFor();
  const linesBefore = await b.locator('#chat-lines li').count();
  await a.click('#toggle');
  await a.locator('#state', { hasText: 'open' }).waitFor();
  await a.locator('#session', { hasNotText: sessionA! }).waitFor();
  await a.locator('#subs li', { hasText: 'demo.> subscribed' }).waitFor();
  await b.locator(`#chat-lines li:nth-child(${linesBefore + 1})`, { hasText: 'alice joined' }).waitFor(); // joined again
  await b.fill('#pub-subject', 'demo.after');
  await b.fill('#pub-text', 'after the reconnect');
  await b.click('#pub button');
  await a.locator('#messages li', { hasText: 'demo.after: after the reconnect' }).waitFor();
  await b.fill('#chat-text', 'still there?');
  await b.click('#chat-send button');
  await a.locator('#chat-lines li', { hasText: 'bob: still there?' }).waitFor();

  // A dropped session reconnects by itself, and the badge says "reconnecting", not "connecting".
  // (Browser-side code as strings: the tests are type-checked without lib "dom".)
  await a.evaluate(`window.states = [];
    new MutationObserver(() => window.states.push(document.getElementById('state').textContent))
      .observe(document.getElementById('state'), { childList: true, characterData: true, subtree: true });`);
  const sessionA2 = (await a.locator('#session').textContent())!;
  assert.ok(gw.closeSession(sessionA2, 1012, 'restart'));
  await a.locator('#session', { hasNotText: sessionA2 }).waitFor();
  await a.locator('#state', { hasText: 'open' }).waitFor();
  const states = (await a.evaluate('window.states')) as string[];
  assert.ok(states.some((t) => t.startsWith('reconnecting')), `states seen: ${states.join(' | ')}`);
  // The dropped session left the room, the new one joined it under the same name.
  await b.locator('#member-list li', { hasText: /^alice$/ }).waitFor();
  await b.locator('#members', { hasText: '2' }).waitFor();

  // The narrow layout (a phone, 390 px) keeps every control reachable.
  await b.setViewportSize({ width: 390, height: 844 });
  await b.locator('#req button').scrollIntoViewIfNeeded();
  assert.ok(await b.locator('#req button').isVisible());

  mkdirSync(join(ROOT, 'build/artifacts'), { recursive: true });
  await a.screenshot({ path: join(ROOT, 'build/artifacts/demo.png'), fullPage: true });
  assert.ok(existsSync(join(ROOT, 'build/artifacts/demo.png')));

  // A tab that goes away leaves the room: the other page names who left and counts one member.
  const leftBefore = await b.locator('#chat-lines li', { hasText: 'alice left' }).count();
  await a.close({ runBeforeUnload: false });
  await b.locator('#chat-lines li', { hasText: 'alice left' }).nth(leftBefore).waitFor();
  await b.locator('#members', { hasText: /^1$/ }).waitFor();
  assert.equal(await b.locator('#member-list li').count(), 1);
});
