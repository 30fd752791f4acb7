// Authentication and permissions in server mode, black-box over real sockets: static token and
// JWTs (HS256 secret, RS256 PEM, ES256 JWKS file, EdDSA JWKS URL on loopback) carried in the
// Authorization header, a subprotocol entry, the query, or a first {"op":"auth"} frame; claims
// limit subjects; exp closes with 1008 unless refreshed in-band; Origin allowlist; refusals give
// no hint; a well-behaved session keeps its traffic throughout.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type net from 'node:net';
import { SignJWT, generateKeyPair, exportSPKI, exportJWK, base64url } from 'jose';
import { startGateway, TestClient, once } from './helpers.ts';
import type { Gateway } from '../src/gateway/gateway.ts';

const SECRET = 'a-shared-secret-of-enough-length-for-hs256';
const hs = (claims: Record<string, unknown>, exp: string | number = '10m') => new SignJWT(claims).setProtectedHeader({ alg: 'HS256' }).setSubject('user-1').setIssuedAt().setExpirationTime(exp).sign(new TextEncoder().encode(SECRET));

/** Opens a socket and reports how the handshake and first frame went. */
async function attempt(url: string, protocols?: string[], headers?: Record<string, string>): Promise<{ status?: number; client?: TestClient }> {
  const c = new TestClient(url, protocols, { headers });
  const outcome = await Promise.race([
    c.next((f) => f.op === 'welcome', 3000).then((w) => {
      c.welcome = w;
      return { client: c };
    }),
    new Promise<{ status?: number }>((resolve) => c.ws.once('unexpected-response', (_req, res) => { resolve({ status: res.statusCode }); res.resume(); })),
  ]);
  return outcome;
}

test('static token: header, query, subprotocol entry and first frame; wrong ones refused without hints', async () => {
  const gw = await startGateway({ SERVER_AUTH_TOKEN: 'open-sesame', AUTH_DEADLINE_MS: '300' });
  after(() => gw.shutdown());
  const url = gw.server!.url;
  assert.ok((await attempt(url, undefined, { authorization: 'Bearer open-sesame' })).client);
  assert.ok((await attempt(`${url}?token=open-sesame`)).client);
  const viaProto = await attempt(url, ['wsbridge.v1.json', 'wsbridge.token.open-sesame']);
  assert.ok(viaProto.client);
  assert.equal(viaProto.client!.ws.protocol, 'wsbridge.v1.json', 'the token entry is never selected');
  for (const c of [viaProto.client!]) c.close();
  assert.equal((await attempt(url, undefined, { authorization: 'Bearer wrong' })).status, 401);
  assert.equal((await attempt(`${url}?token=wrong`)).status, 401);

  // No token in the handshake: nothing until a valid first frame.
  const late = new TestClient(url);
  await once(late.ws, 'open');
  late.send({ op: 'ping', id: 'early' });
  assert.equal((await late.closed).code, 1008, 'any other first frame closes with 1008');
  assert.equal(late.frames.length, 0, 'no welcome, no pong before authentication');
  const ok = new TestClient(url);
  await once(ok.ws, 'open');
  ok.send({ op: 'auth', token: 'open-sesame' });
  await ok.next((f) => f.op === 'welcome');
  ok.close();
  const bad = new TestClient(url);
  await once(bad.ws, 'open');
  bad.send({ op: 'auth', token: 'nope' });
  const closed = await bad.closed;
  assert.equal(closed.code, 1008);
  assert.equal(closed.reason, 'authentication failed');
  const silent = new TestClient(url);
  assert.equal((await silent.closed).code, 1008, 'closed after AUTH_DEADLINE_MS');
  assert.ok(gw.hub.stats.authFailures >= 4);
});

test('JWT claims limit publish and subscribe; replies are always allowed; violations are error frames', async () => {
  const gw = await startGateway({ JWT_SECRET: SECRET });
  after(() => gw.shutdown());
  const url = gw.server!.url;
  const limited = (await attempt(`${url}?token=${await hs({ pub: ['chat.>'], subs: ['chat.*', 'news.>'] })}`)).client!;
  const free = (await attempt(`${url}?token=${await hs({})}`)).client!;
  assert.equal((await limited.call({ subject: 'chat.room', text: 'hi', id: 'p1' })).op, 'ok');
  const denied = await limited.call({ subject: 'admin.reset', text: 'x', id: 'p2' });
  assert.deepEqual([denied.op, denied.code], ['error', 'permission_denied']);
  assert.equal((await limited.call({ op: 'sub', subject: 'news.>', id: 's1' })).op, 'ok');
  assert.equal((await limited.call({ op: 'sub', subject: 'news.sports.x', id: 's1b' })).op, 'ok');
  assert.equal((await limited.call({ op: 'sub', subject: '>', id: 's2' })).code, 'permission_denied');
  assert.equal((await limited.call({ op: 'sub', subject: 'chat.>', id: 's3' })).code, 'permission_denied', 'chat.* does not cover chat.>');
  assert.equal((await limited.call({ op: 'req', subject: 'svc.x', id: 'r1' })).code, 'permission_denied');
  // A reply to a reply subject it was handed is allowed.
  await free.call({ op: 'sub', subject: 'chat.q', id: 'f' });
  limited.send({ subject: 'chat.q', text: 'question' });
  const q = await free.next((f) => f.subject === 'chat.q');
  free.send({ subject: q.reply_to, text: 'answer' });
  await limited.next((f) => f.subject === limited.welcome.reply_to);
  limited.send({ subject: free.welcome.reply_to, text: 'reply to a handed reply subject', id: 'p3' });
  assert.equal((await limited.next((f) => f.id === 'p3')).op, 'ok');
  // Reserved subjects other than reply subjects are refused to everyone.
  assert.equal((await free.call({ subject: '_WSB.B.all', text: 'x', id: 'b' })).code, 'invalid_subject');
  assert.ok(gw.hub.stats.permissionDenials >= 4);
  limited.close();
  free.close();
});

test('exp closes the session with 1008; an in-band refresh extends it; expired, unsigned and wrong-key tokens are refused', async () => {
  const gw = await startGateway({ JWT_SECRET: SECRET });
  after(() => gw.shutdown());
  const url = gw.server!.url;
  const soon = Math.floor(Date.now() / 1000) + 2;
  const short = (await attempt(`${url}?token=${await hs({}, soon)}`)).client!;
  const refreshed = (await attempt(`${url}?token=${await hs({}, soon)}`)).client!;
  assert.equal((await refreshed.call({ op: 'auth', token: await hs({}, '10m'), id: 'refresh' })).op, 'ok');
  assert.equal((await refreshed.call({ op: 'auth', token: 'garbage', id: 'bad' })).code, 'unauthorized');
  const closed = await short.closed;
  assert.deepEqual([closed.code, closed.reason], [1008, 'credential expired']);
  assert.equal((await refreshed.call({ op: 'ping', id: 'still' })).op, 'pong', 'the refreshed session outlived the first exp');
  refreshed.close();

  assert.equal((await attempt(`${url}?token=${await hs({}, Math.floor(Date.now() / 1000) - 10)}`)).status, 401);
  const header = base64url.encode(JSON.stringify({ alg: 'none', typ: 'JWT' }));
  const payload = base64url.encode(JSON.stringify({ sub: 'x', exp: Math.floor(Date.now() / 1000) + 600 }));
  assert.equal((await attempt(`${url}?token=${header}.${payload}.`)).status, 401, 'alg none');
  const other = await new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).setExpirationTime('10m').sign(new TextEncoder().encode('another-secret-of-enough-length-xyz'));
  assert.equal((await attempt(`${url}?token=${other}`)).status, 401, 'wrong key');
});

test('RS256 with a PEM key file, ES256 with a JWKS file, EdDSA with a JWKS URL on loopback', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'wsbridge-jwt-'));
  const rs = await generateKeyPair('RS256', { extractable: true });
  writeFileSync(join(dir, 'rs.pem'), await exportSPKI(rs.publicKey));
  const es = await generateKeyPair('ES256', { extractable: true });
  writeFileSync(join(dir, 'jwks.json'), JSON.stringify({ keys: [{ ...(await exportJWK(es.publicKey)), kid: 'es', alg: 'ES256' }] }));
  const ed = await generateKeyPair('EdDSA', { extractable: true });
  const jwks = createServer((_req, res) => { res.writeHead(200, { 'content-type': 'application/json' }); void exportJWK(ed.publicKey).then((k) => res.end(JSON.stringify({ keys: [{ ...k, kid: 'ed', alg: 'EdDSA' }] }))); });
  jwks.listen(0, '127.0.0.1');
  await once(jwks, 'listening');
  after(() => jwks.close());
  const cases: Array<[Record<string, string>, string, Parameters<SignJWT['sign']>[0], string | undefined, Gateway | undefined]> = [
    [{ JWT_PUBLIC_KEY_FILE: join(dir, 'rs.pem') }, 'RS256', rs.privateKey, undefined, undefined],
    [{ JWT_JWKS: join(dir, 'jwks.json') }, 'ES256', es.privateKey, 'es', undefined],
    [{ JWT_JWKS: `http://127.0.0.1:${(jwks.address() as net.AddressInfo).port}/jwks.json`, JWT_ISSUER: 'https://issuer.test' }, 'EdDSA', ed.privateKey, 'ed', undefined],
  ];
  for (const [settings, alg, key, kid] of cases) {
    const gw = await startGateway(settings);
    try {
      const make = new SignJWT({}).setProtectedHeader({ alg, ...(kid ? { kid } : {}) }).setIssuer('https://issuer.test').setExpirationTime('10m');
      const good = await attempt(gw.server!.url, undefined, { authorization: `Bearer ${await make.sign(key)}` });
      assert.ok(good.client, `${alg} accepted`);
      good.client!.close();
      const hsToken = await hs({});
      assert.equal((await attempt(gw.server!.url, undefined, { authorization: `Bearer ${hsToken}` })).status, 401, `${alg}: an HS256 token is not accepted`);
    } finally {
      await gw.shutdown();
    }
  }
});

test('Origin allowlist: other browser origins get 403; clients without Origin are unaffected', async () => {
  const gw = await startGateway({ ALLOWED_ORIGINS: 'https://app.example,http://127.0.0.1:8080' });
  after(() => gw.shutdown());
  const url = gw.server!.url;
  assert.equal((await attempt(url, undefined, { origin: 'https://evil.example' })).status, 403);
  const ok = await attempt(url, undefined, { origin: 'https://app.example' });
  assert.ok(ok.client);
  ok.client!.close();
  const bare = await attempt(url);
  assert.ok(bare.client);
  bare.client!.close();
});
