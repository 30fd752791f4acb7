// Client mode from the command line: MODE is validated in every layer, a config file's MODE runs
// without a command, --mode works and may not contradict the command.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { remoteServer, cliProcess } from './remote-helpers.ts';

const tmp = () => mkdtempSync(join(tmpdir(), 'wsbridge-client-cli-'));

for (const [name, args, env] of [
  ['env MODE=bogus, no command', [], { MODE: 'bogus' }],
  ['env MODE=bogus under serve', ['serve', '--listen', '127.0.0.1:0'], { MODE: 'bogus' }],
  ['--mode bogus', ['--mode', 'bogus'], {}],
] as Array<[string, string[], Record<string, string>]>) {
  test(`MODE is validated: ${name} exits 2 naming MODE`, async (t) => {
    const { exit, output } = await cliProcess(t, args, env);
    assert.equal((await exit).code, 2, output());
    assert.match(output(), /MODE \(from (env|flag)\): expected one of server, client, got "bogus"/);
  });
}

test('a config file MODE that is bogus exits 2 naming the file', async (t) => {
  const file = join(tmp(), 'bogus.json');
  writeFileSync(file, JSON.stringify({ MODE: 'bogus' }));
  const { exit, output } = await cliProcess(t, ['serve', '--config', file, '--listen', '127.0.0.1:0']);
  assert.equal((await exit).code, 2);
  assert.match(output(), /MODE \(from config file .*bogus\.json\): expected one of server, client/);
});

test('--mode contradicting the command exits 2', async (t) => {
  const { exit, output } = await cliProcess(t, ['serve', '--mode', 'client']);
  assert.equal((await exit).code, 2);
  assert.match(output(), /--mode client contradicts the command serve/);
});

test('a config file with "MODE":"client" and no command dials its links and opens no listener', async (t) => {
  const remote = await remoteServer();
  t.after(() => remote.close());
  const file = join(tmp(), 'client.json');
  writeFileSync(file, JSON.stringify({ MODE: 'client', links: [{ URI: remote.url, HEADER_X_Link: 'from-file' }] }));
  const conn = remote.nextConn();
  const { proc, output, exit } = await cliProcess(t, ['--config', file], {}, /connected to ws:/);
  const { req } = await conn;
  assert.equal(req.headers['x_link'], 'from-file');
  assert.doesNotMatch(output(), /listening on/);
  proc.kill('SIGTERM');
  assert.equal((await exit).code, 0);
});

test('--mode client (no command) dials --uri', async (t) => {
  const remote = await remoteServer();
  t.after(() => remote.close());
  const conn = remote.nextConn();
  const { proc, exit } = await cliProcess(t, ['--mode', 'client', '--uri', remote.url], {}, /connected to ws:/);
  await conn;
  proc.kill('SIGTERM');
  assert.equal((await exit).code, 0);
});

test('env MODE=client (no command) dials URI', async (t) => {
  const remote = await remoteServer();
  t.after(() => remote.close());
  const conn = remote.nextConn();
  const { proc, exit } = await cliProcess(t, [], { MODE: 'client', URI: remote.url }, /connected to ws:/);
  await conn;
  proc.kill('SIGTERM');
  assert.equal((await exit).code, 0);
});

test('a bad --header is reported as coming from the flag', async (t) => {
  const { exit, output } = await cliProcess(t, ['connect', 'ws://127.0.0.1:1/', '--header', 'Bad Name=x']);
  assert.equal((await exit).code, 2);
  assert.match(output(), /HEADER_Bad Name \(from flag\): "Bad Name" is not a valid HTTP header name/);
});

test('sessions honours WSBRIDGE_URL, as the README says every tool does', async (t) => {
  const { startGateway, TestClient } = await import('./helpers.ts');
  const { runTool } = await import('../src/cli/tools.ts');
  const { PassThrough } = await import('node:stream');
  const gw = await startGateway({ ADMIN_TOKEN: 'tools-token' });
  t.after(() => gw.shutdown());
  const c = await TestClient.connect(gw);
  t.after(() => c.close());
  const out = new PassThrough();
  const err = new PassThrough();
  let text = '';
  out.on('data', (d: Buffer) => (text += d.toString()));
  const code = await runTool('sessions', ['--json'], { out, err, env: { WSBRIDGE_URL: gw.server!.url, ADMIN_TOKEN: 'tools-token' }, stdin: new PassThrough() });
  assert.equal(code, 0);
  assert.ok(text.includes(String(c.welcome.session)), text);
});
