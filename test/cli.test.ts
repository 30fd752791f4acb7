// The wsbridge process: the ready line, graceful shutdown on SIGTERM/SIGINT, config precedence
// and errors that name the bad setting.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import net from 'node:net';
import { spawnCli, TestClient } from './helpers.ts';

test('serve prints the ws:// URL, serves, and on SIGTERM closes sessions with 1001 and exits 0', async () => {
  const { proc, match, exit } = await spawnCli(['serve', '--listen', '127.0.0.1:0']);
  const url = match![1]!;
  assert.match(url, /^ws:\/\/127\.0\.0\.1:\d+\/ws$/);
  const a = await TestClient.connect(url);
  const b = await TestClient.connect(url);
  await b.call({ op: 'sub', subject: 'greet', id: '1' });
  a.send({ subject: 'greet', text: 'hi' });
  await b.next((f) => f.subject === 'greet');
  proc.kill('SIGTERM');
  assert.equal((await a.closed).code, 1001);
  assert.equal((await b.closed).code, 1001);
  assert.deepEqual(await exit, { code: 0, signal: null });
});

test('SIGINT shuts down the same way', async () => {
  const { proc, match, exit } = await spawnCli(['serve', '--listen', '127.0.0.1:0']);
  const a = await TestClient.connect(match![1]!);
  proc.kill('SIGINT');
  assert.equal((await a.closed).code, 1001);
  assert.equal((await exit).code, 0);
});

test('SIGTERM: connections still authenticating get 1001 and do not hold the exit', async (t) => {
  // A long SHUTDOWN_TIMEOUT_MS: a connection that held the exit would hold it that long.
  const { proc, match, exit } = await spawnCli(['serve', '--listen', '127.0.0.1:0'], { JWT_SECRET: 'sigterm-suite-secret-of-enough-length-01', SHUTDOWN_TIMEOUT_MS: '60000', AUTH_DEADLINE_MS: '60000' });
  t.after(() => proc.kill('SIGKILL'));
  const url = match![1]!;
  const pending = [new TestClient(url), new TestClient(url)];
  await Promise.all(pending.map((c) => new Promise((r) => c.ws.once('open', r))));
  const started = Date.now();
  proc.kill('SIGTERM');
  for (const c of pending) assert.equal((await c.closed).code, 1001);
  const exited = await Promise.race([exit, new Promise<'held'>((r) => setTimeout(() => r('held'), 30_000).unref())]);
  assert.deepEqual(exited, { code: 0, signal: null }, 'exited without waiting for SHUTDOWN_TIMEOUT_MS');
  assert.ok(Date.now() - started < 30_000);
});

test('config precedence: flag > env > file > default', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'wsbridge-'));
  const file = join(dir, 'config.json');
  writeFileSync(file, JSON.stringify({ LISTEN: '127.0.0.1:0', MAX_MESSAGE_BYTES: 100, ADMIN_TOKEN: 'from-file' }));
  // env overrides the file's MAX_MESSAGE_BYTES, the flag overrides env's ADMIN_TOKEN.
  const { proc, match, exit } = await spawnCli(['serve', '--config', file, '--admin-token', 'from-flag'], { MAX_MESSAGE_BYTES: '200', ADMIN_TOKEN: 'from-env' });
  const url = match![1]!;
  const port = new URL(url).port;
  const ok = await fetch(`http://127.0.0.1:${port}/api/sessions`, { headers: { authorization: 'Bearer from-flag' } });
  assert.equal(ok.status, 200);
  const envToken = await fetch(`http://127.0.0.1:${port}/api/sessions`, { headers: { authorization: 'Bearer from-env' } });
  assert.equal(envToken.status, 401);
  const c = await TestClient.connect(url);
  c.send({ subject: 'a', text: 'x'.repeat(150) }); // over the file's 100, under env's 200
  assert.equal((await c.call({ op: 'ping', id: 'p' })).op, 'pong');
  c.send({ subject: 'a', text: 'x'.repeat(250) });
  assert.equal((await c.closed).code, 1009);
  proc.kill('SIGTERM');
  await exit;
});

test('the seed keys work from env: MODE=server, URI as the bind address', async () => {
  const { proc, match, exit } = await spawnCli([], { MODE: 'server', URI: '127.0.0.1:0' });
  assert.match(match![1]!, /^ws:\/\/127\.0\.0\.1:\d+\/ws$/);
  proc.kill('SIGTERM');
  await exit;
});

const badConfigs: Array<[string, string[], Record<string, string>, RegExp]> = [
  ['bad int flag', ['serve', '--max-message-bytes', 'lots'], {}, /MAX_MESSAGE_BYTES \(from flag\): expected an integer/],
  ['bad env bool', ['serve'], { ENABLE_SESSION_TRACKING: 'maybe' }, /ENABLE_SESSION_TRACKING \(from env\): expected true or false/],
  ['bad enum', ['serve', '--slow-consumer-policy', 'explode'], {}, /SLOW_CONSUMER_POLICY .*one of close, drop/],
  ['bad listen', ['serve', '--listen', 'nowhere'], {}, /LISTEN .*HOST:PORT/],
  ['bad url for connect', ['connect', 'http://example.invalid'], {}, /URI .*ws:\/\/ or wss:\/\//],
  ['unknown flag', ['serve', '--no-such-flag', 'x'], {}, /no-such-flag/],
  ['unknown command', ['launch'], {}, /unknown command "launch"/],
  ['bad header name', ['connect', 'ws://127.0.0.1:1/', '--header', 'Bad Name=x'], {}, /HEADER_Bad Name/],
  ['timeout over max', ['serve', '--request-timeout-ms', '9000', '--max-request-timeout-ms', '1000'], {}, /REQUEST_TIMEOUT_MS \(9000\) must not exceed/],
  ['missing JWT public key file', ['serve'], { JWT_PUBLIC_KEY_FILE: '/nonexistent/key.pem' }, /JWT_PUBLIC_KEY_FILE: cannot read \/nonexistent\/key\.pem \(ENOENT\)/],
  ['JWT public key file that is no key', ['serve'], { JWT_PUBLIC_KEY_FILE: '/etc/hostname' }, /JWT_PUBLIC_KEY_FILE: \/etc\/hostname is not a PEM public key/],
  ['missing JWKS file', ['serve'], { JWT_JWKS: '/nonexistent/jwks.json' }, /JWT_JWKS: cannot read \/nonexistent\/jwks\.json \(ENOENT\)/],
  ['JWKS file that is no JWKS', ['serve'], { JWT_JWKS: '/etc/hostname' }, /JWT_JWKS: \/etc\/hostname is not a JWKS file/],
  ['TLS_CLIENT_CA without TLS_CERT/TLS_KEY', ['serve', '--tls-client-ca', '/etc/hostname'], {}, /TLS_CLIENT_CA needs TLS_CERT and TLS_KEY/],
  ['bad trusted proxy', ['serve'], { TRUSTED_PROXIES: '10.0.0.0/33' }, /TRUSTED_PROXIES: "10\.0\.0\.0\/33"/],
];

for (const [name, args, env, message] of badConfigs) {
  test(`config error exits 2 naming the setting: ${name}`, async () => {
    const { exit, output } = await spawnCli(args, env, null);
    assert.equal((await exit).code, 2);
    assert.match(output(), message);
  });
}

test('config file errors: missing file, bad JSON, unknown key', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'wsbridge-'));
  const badJson = join(dir, 'bad.json');
  writeFileSync(badJson, '{ nope');
  const unknown = join(dir, 'unknown.json');
  writeFileSync(unknown, JSON.stringify({ MAX_MESAGE_BYTES: 5 }));
  for (const [file, re] of [[join(dir, 'missing.json'), /cannot read it \(ENOENT\)/], [badJson, /not valid JSON/], [unknown, /unknown key MAX_MESAGE_BYTES/]] as const) {
    const { exit, output } = await spawnCli(['serve', '--config', file], {}, null);
    assert.equal((await exit).code, 2);
    assert.match(output(), re);
  }
});

test('a port already in use exits 1 with a message naming LISTEN', async () => {
  const blocker = net.createServer().listen(0, '127.0.0.1');
  await new Promise((r) => blocker.once('listening', r));
  const port = (blocker.address() as net.AddressInfo).port;
  const { exit, output } = await spawnCli(['serve', '--listen', `127.0.0.1:${port}`], {}, null);
  assert.equal((await exit).code, 1);
  assert.match(output(), /LISTEN.*address already in use/);
  blocker.close();
});

test('--help-all lists every command and setting; --version prints the version', async () => {
  const { exit, output } = await spawnCli(['--help-all'], {}, null);
  assert.equal((await exit).code, 0);
  for (const s of ['serve', 'connect', '--max-message-bytes', '--admin-token', '--header', 'AUTH_TOKEN', 'CONNECT_TIMEOUT_SEC']) assert.ok(output().includes(s), s);
  const v = await spawnCli(['--version'], {}, null);
  assert.equal((await v.exit).code, 0);
  assert.match(v.output(), /^\d+\.\d+\.\d+\n$/);
});
