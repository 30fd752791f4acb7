// The admin page in headless Chromium, against live data: sessions (WebSocket and SSE) with
// their subscriptions, a client-mode link, a component with calls, and the refreshing plots;
// filtering and closing a session from the page. The token is typed into the page and never
// appears in a URL. A screenshot is kept as build/artifacts/admin.png.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { buildComponent, ROOT } from '../scripts/build-components.ts';
import { startGateway, TestClient } from './helpers.ts';
import { connect } from '../src/sdk/client.ts';

const CHROMIUM = '/usr/bin/chromium';
const available = existsSync(CHROMIUM);
if (!available && process.env.CI) throw new Error(`${CHROMIUM} is missing: .ci/run installs Debian's chromium`);
const TOKEN = 'admin-token-for-the-admin-page-test';

test('the admin page shows live sessions, subjects, links, components and plots, filters, and closes a session', { skip: available ? false : `${CHROMIUM} not installed` }, async (t) => {
  const echo = (await buildComponent(join(ROOT, 'examples/components/echo'))).path;
  const remote = await startGateway();
  t.after(() => remote.shutdown());
  const gw = await startGateway({ ADMIN_TOKEN: TOKEN, COMPONENT_CACHE_DIR: join(ROOT, 'build/cache'), PRESENCE_SUBJECTS: 'room.*' });
  t.after(() => gw.shutdown());
  await gw.addComponent({ id: 'echo', path: echo, subscriptions: [{ subject: 'echo.>', queue: undefined }], poolSize: 2, timeoutMs: 10_000, maxQueue: 100, env: {}, preopens: {} });
  gw.linkTarget('feed', { URI: remote.server!.url });
  const urls: string[] = [];
  gw.server!.http.on('request', (req) => urls.push(req.url ?? ''));

  const [a, b, c] = await Promise.all([TestClient.connect(gw), TestClient.connect(gw), TestClient.connect(gw)]);
  t.after(() => [a, b, c].forEach((x) => x.close()));
  for (const [client, subject] of [[a, 'room.a'], [b, 'room.a'], [a, 'chat.*'], [c, 'other.x']] as const) {
    assert.equal((await client.call({ op: 'sub', subject, id: subject })).op, 'ok');
  }
  const sse = connect(gw.server!.url, { transport: 'sse' });
  t.after(() => sse.close());
  await sse.ready({ timeoutMs: 10_000 });
  await sse.subscribe('room.a', () => {}).ready;
  // Some traffic, and calls to the component, while the page watches.
  const traffic = setInterval(() => {
    a.send({ subject: 'room.a', text: 'tick' });
    void sse.request('echo.x', 'hi', { timeoutMs: 5000 }).catch(() => {});
  }, 100);
  t.after(() => clearInterval(traffic));

  const base = `http://127.0.0.1:${gw.server!.address.port}`;
  const page0 = await fetch(`${base}/admin`);
  assert.equal(page0.status, 200);
  assert.match(page0.headers.get('content-security-policy') ?? '', /frame-ancestors 'none'/);
  assert.equal(page0.headers.get('x-frame-options'), 'DENY');
  assert.equal((await fetch(`http://127.0.0.1:${remote.server!.address.port}/admin`)).status, 404, 'no ADMIN_TOKEN, no admin page');

  const profile = mkdtempSync(join(tmpdir(), 'wsbridge-chromium-'));
  const browser = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1400, height: 1000 },
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  t.after(async () => {
    await browser.close();
    rmSync(profile, { recursive: true, force: true });
  });
  const page = await browser.newPage();
  const pageErrors: string[] = [];
  page.on('pageerror', (e) => pageErrors.push(e.message));
  page.on('console', (m) => {
    // The browser logs the 401s of the wrong-token attempt and the 404 of the untracked subject
    // below; anything else is a fault.
    if (m.type() === 'error' && !/(401 \(Unauthorized\)|404 \(Not Found\))/.test(m.text())) pageErrors.push(m.text());
  });
  await page.goto(`${base}/admin`);
  // A wrong token is refused and the page says so.
  await page.fill('#token', 'not-the-token');
  await page.click('#login button');
  await page.locator('#status', { hasText: 'token refused' }).waitFor();
  assert.ok(await page.locator('#app').isHidden());

  await page.fill('#token', TOKEN);
  await page.click('#login button');
  await page.locator('#status', { hasText: 'live' }).waitFor();
  for (const client of [a, b, c]) await page.locator(`#sessions tr[data-session="${String(client.welcome.session)}"]`).waitFor();
  await page.locator(`#sessions tr[data-session="${sse.session.session!}"]`, { hasText: 'sse' }).waitFor();
  await page.locator('#session-count', { hasText: '4' }).waitFor();
  // Subscriptions per subject: room.a has three sessions (two WebSocket, one SSE).
  await page.locator('#subjects tr[data-subject="room.a"]', { hasText: '3' }).waitFor();
  await page.locator('#subjects tr[data-subject="chat.*"]').waitFor();
  // The client-mode link and its state; the component with its pool use and calls.
  await page.locator('#links tr', { hasText: remote.server!.url }).locator('td', { hasText: 'open' }).waitFor();
  await page.locator('#components tr[data-component="echo"]', { hasText: '/ 2' }).waitFor();
  // (Locators, not waitForFunction: the page's CSP forbids evaluating strings, as it should.)
  await page.locator('#components tr[data-component="echo"] td:nth-child(6)', { hasText: /[1-9]/ }).waitFor();
  // Plots refresh: the sessions plot shows 4, the message rate plot a number above zero.
  await page.locator('figure[data-plot="sessions"] b', { hasText: '4' }).waitFor();
  await page.locator('figure[data-plot="msgsIn"] b', { hasText: /[1-9]/ }).waitFor();

  // Presence of a subject: its members, with the node each is on.
  await page.fill('#presence-subject', 'room.a');
  await page.click('#presence-form button');
  await page.locator('#presence-note', { hasText: '3 member(s) of room.a' }).waitFor();
  for (const client of [a, b]) await page.locator(`#presence tr[data-session="${String(client.welcome.session)}"]`, { hasText: gw.bus.nodeId }).waitFor();
  await page.fill('#presence-subject', 'hall.x');
  await page.click('#presence-form button');
  await page.locator('#presence-note', { hasText: 'presence_unavailable' }).waitFor();
  await page.fill('#presence-subject', 'room.a');
  await page.click('#presence-form button');

  // Filter by one session's id, then close it from the page: the client gets 1000.
  const victim = String(c.welcome.session);
  await page.fill('#filter', victim.slice(0, 10));
  await page.locator('#session-count', { hasText: '1 of 4' }).waitFor();
  assert.equal(await page.locator('#sessions tbody tr').count(), 1);
  await page.fill('#filter', 'other.x'); // by subscription
  await page.locator('#session-count', { hasText: '1 of 4' }).waitFor();
  const closed = c.closed;
  await page.locator(`#sessions tr[data-session="${victim}"] button`).click();
  assert.equal((await closed).code, 1000);
  await page.locator('#status', { hasText: `closed ${victim}` }).waitFor();
  await page.fill('#filter', '');
  await page.locator('#session-count', { hasText: /^3$/ }).waitFor();
  // The client sees the close frame before the gateway sees the TCP close: gone by now.
  assert.ok(!gw.hub.sessions.has(victim));
  await page.locator(`#sessions tr[data-session="${victim}"]`).waitFor({ state: 'detached' });
  // c was not in room.a; the members stay three until one leaves.
  await page.locator('#presence-note', { hasText: '3 member(s) of room.a' }).waitFor();
  b.close();
  await page.locator('#presence-note', { hasText: '2 member(s) of room.a' }).waitFor();

  assert.deepEqual(pageErrors, []);
  assert.ok(urls.length > 5 && urls.every((u) => !u.includes(TOKEN) && !u.includes('token=')), 'the token never appears in a URL');
  assert.ok(!page.url().includes(TOKEN));
  // A few points of history in the plots before the picture is taken.
  await page.locator('figure[data-plot="msgsIn"]:not([data-points="0"]):not([data-points="1"]):not([data-points="2"])').waitFor();
  mkdirSync(join(ROOT, 'build/artifacts'), { recursive: true });
  await page.screenshot({ path: join(ROOT, 'build/artifacts/admin.png'), fullPage: true });
  assert.ok(existsSync(join(ROOT, 'build/artifacts/admin.png')));
});

test('the admin page shows what clients control as text: markup in a JWT sub, an info claim and a subject stays inert', { skip: available ? false : `${CHROMIUM} not installed` }, async (t) => {
  const { SignJWT } = await import('jose');
  const secret = 'admin-page-xss-secret-of-enough-length';
  const gw = await startGateway({ ADMIN_TOKEN: TOKEN, JWT_SECRET: secret, PRESENCE_SUBJECTS: 'room.*' });
  t.after(() => gw.shutdown());
  const markup = '<img src=x onerror="document.title=\'pwned\'">';
  const jwt = await new SignJWT({ info: { name: markup } }).setProtectedHeader({ alg: 'HS256' }).setSubject(markup).setIssuedAt().setExpirationTime('10m').sign(new TextEncoder().encode(secret));
  const evil = await TestClient.connect(gw.server!.url, undefined, { headers: { authorization: `Bearer ${jwt}` } });
  t.after(() => evil.close());
  // Subjects may not hold '>' or spaces, but may hold the rest of a tag.
  const subject = 'room.<svg/onload=alert(1)//';
  assert.equal((await evil.call({ op: 'sub', subject, id: 's' })).op, 'ok');

  const profile = mkdtempSync(join(tmpdir(), 'wsbridge-chromium-'));
  const browser = await chromium.launchPersistentContext(profile, { executablePath: CHROMIUM, headless: true, args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'] });
  t.after(async () => {
    await browser.close();
    rmSync(profile, { recursive: true, force: true });
  });
  const page = await browser.newPage();
  await page.goto(`http://127.0.0.1:${gw.server!.address.port}/admin`);
  await page.fill('#token', TOKEN);
  await page.click('#login button');
  await page.locator(`#sessions tr[data-session="${String(evil.welcome.session)}"]`, { hasText: subject }).waitFor();
  await page.fill('#presence-subject', subject);
  await page.click('#presence-form button');
  const row = page.locator(`#presence tr[data-session="${String(evil.welcome.session)}"]`);
  await row.waitFor();
  assert.equal(await row.locator('td:nth-child(2)').textContent(), markup, 'the sub, as text');
  assert.equal(await row.locator('td:nth-child(3)').textContent(), JSON.stringify({ name: markup }), 'the info claim, as text');
  assert.equal(await page.locator('#subjects code', { hasText: subject }).count(), 1);
  assert.equal(await page.locator('main img, main svg').count(), 0, 'no element made from client data');
  assert.equal(await page.title(), 'wsbridge admin');
});
