// NATS credentials and transport options, each against a real nats-server configured for it:
// user/password, token, NKEY seed file, TLS with a CA made here; a wrong credential exits 1
// naming NATS_URL; NATS_PREFIX maps subjects under a prefix.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createUser } from '@nats-io/nkeys';
import { connect } from '@nats-io/transport-node';
import { spawnCli, TestClient, unb64 } from './helpers.ts';
import { startNats, freePort } from './nats-helpers.ts';
import { makePki } from './tls-helpers.ts';

async function nodeWorks(args: string[], env: Record<string, string>): Promise<void> {
  const n = await spawnCli(['serve', '--listen', '127.0.0.1:0', ...args], env);
  const c = await TestClient.connect(n.match![1]!);
  assert.equal((await fetch(n.match![1]!.replace('ws://', 'http://').replace(/\/ws$/, '/readyz'))).status, 200);
  c.close();
  n.proc.kill('SIGTERM');
  assert.equal((await n.exit).code, 0);
}

test('user/password: right ones connect, a wrong one exits 1 naming NATS_URL', async () => {
  const nats = await startNats(undefined, undefined, ['--user', 'gw', '--pass', 's3cret']);
  try {
    await nodeWorks(['--nats', nats.url], { NATS_USER: 'gw', NATS_PASSWORD: 's3cret' });
    const bad = await spawnCli(['serve', '--listen', '127.0.0.1:0', '--nats', nats.url], { NATS_USER: 'gw', NATS_PASSWORD: 'wrong' }, null);
    assert.equal((await bad.exit).code, 1);
    assert.match(bad.output(), /cannot connect to NATS .*\(NATS_URL\)/);
  } finally {
    await nats.stop();
  }
});

test('token', async () => {
  const nats = await startNats(undefined, undefined, ['--auth', 'tok-123']);
  try {
    await nodeWorks(['--nats', nats.url], { NATS_TOKEN: 'tok-123' });
  } finally {
    await nats.stop();
  }
});

test('NKEY seed file', async () => {
  const user = createUser();
  const dir = mkdtempSync(join(tmpdir(), 'wsbridge-nkey-'));
  const conf = join(dir, 'nats.conf');
  writeFileSync(conf, `authorization { users = [ { nkey: ${user.getPublicKey()} } ] }\n`);
  const seed = join(dir, 'user.nk');
  writeFileSync(seed, new TextDecoder().decode(user.getSeed()));
  const nats = await startNats(undefined, undefined, ['-c', conf]);
  try {
    await nodeWorks(['--nats', nats.url], { NATS_NKEY_SEED_FILE: seed });
  } finally {
    await nats.stop();
  }
});

test('TLS with a CA file (a throwaway CA made here)', async () => {
  const pki = makePki();
  const [cert, key] = pki.issue('nats');
  const nats = await startNats(undefined, undefined, ['--tls', '--tlscert', cert, '--tlskey', key]);
  try {
    await nodeWorks(['--nats', `tls://127.0.0.1:${nats.port}`], { NATS_TLS_CA_FILE: pki.ca });
  } finally {
    await nats.stop();
  }
});

test('NATS_PREFIX: subjects live under the prefix on NATS, unchanged for clients', async () => {
  const nats = await startNats();
  const n = await spawnCli(['serve', '--listen', '127.0.0.1:0', '--nats', nats.url], { NATS_PREFIX: 'wsb.' });
  const nc = await connect({ servers: nats.url });
  try {
    const seen = new Promise<string>((resolve) => nc.subscribe('wsb.orders.new', { max: 1, callback: (_e, m) => resolve(m.subject) }));
    await nc.flush();
    const c = await TestClient.connect(n.match![1]!);
    c.send({ subject: 'orders.new', text: 'x' });
    assert.equal(await seen, 'wsb.orders.new');
    // And back: a NATS request under the prefix reaches a session responder, subject unprefixed.
    await c.call({ op: 'sub', subject: 'svc.q', id: '1' });
    c.ws.on('message', (d) => {
      const f = JSON.parse(d.toString()) as { subject?: string; reply_to?: string };
      if (f.subject === 'svc.q') c.send({ subject: f.reply_to, text: 'answered' });
    });
    let answer: string | undefined;
    for (let i = 0; i < 100 && answer === undefined; i++) {
      answer = await nc.request('wsb.svc.q', new Uint8Array(), { timeout: 300 }).then((m) => new TextDecoder().decode(m.data), () => undefined);
    }
    assert.equal(answer, 'answered');
    c.close();
  } finally {
    await nc.close();
    n.proc.kill('SIGTERM');
    await n.exit;
    await nats.stop();
  }
});

void freePort;
void unb64;

test('JWT credentials file (.creds), with an operator, account and user made here', async () => {
  const { encodeOperator, encodeAccount, encodeUser, fmtCreds } = await import('@nats-io/jwt');
  const { createOperator, createAccount, createUser: newUser } = await import('@nats-io/nkeys');
  const operator = createOperator();
  const account = createAccount();
  const user = newUser();
  const operatorJwt = await encodeOperator('test-operator', operator);
  const accountJwt = await encodeAccount('test-account', account, { limits: { conn: -1, subs: -1, data: -1, payload: -1, imports: -1, exports: -1, wildcards: true, leaf: -1, mem_storage: -1, disk_storage: -1, streams: -1, consumer: -1 } as never }, { signer: operator });
  const userJwt = await encodeUser('wsbridge', user, account);
  const system = createAccount(); // JetStream needs a system account in operator mode
  const systemJwt = await encodeAccount('SYS', system, {}, { signer: operator });
  const dir = mkdtempSync(join(tmpdir(), 'wsbridge-creds-'));
  const conf = join(dir, 'nats.conf');
  writeFileSync(conf, `operator: ${operatorJwt}\nsystem_account: ${system.getPublicKey()}\nresolver: MEMORY\nresolver_preload: {\n  ${account.getPublicKey()}: ${accountJwt}\n  ${system.getPublicKey()}: ${systemJwt}\n}\n`);
  const creds = join(dir, 'wsbridge.creds');
  writeFileSync(creds, fmtCreds(userJwt, user));
  const nats = await startNats(undefined, undefined, ['-c', conf]);
  try {
    await nodeWorks(['--nats', nats.url], { NATS_CREDS_FILE: creds });
    const anonymous = await spawnCli(['serve', '--listen', '127.0.0.1:0', '--nats', nats.url], {}, null);
    assert.equal((await anonymous.exit).code, 1, 'without the creds the server refuses');
  } finally {
    await nats.stop();
  }
});
