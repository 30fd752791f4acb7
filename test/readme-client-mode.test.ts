// The README's client-mode lines, run as written through bash and npx (the only edits: the remote's
// address becomes a server this test starts, and the --listen port becomes 0). The bearer token
// and the hyphenated header arrive, raw frames reach local subscribers, forwarded publishes reach
// the remote. dist/ is rebuilt first when src/ is newer (npx runs the compiled bin).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync, mkdtempSync, statSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT, TestClient, bounded } from './helpers.ts';
import { remoteServer } from './remote-helpers.ts';

const README_URL = 'ws://127.0.0.1:9000/feed';

function section(): { commands: string[]; json: string } {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  const text = readme.slice(readme.indexOf('### Client mode'), readme.indexOf('### WebAssembly components'));
  const blocks = [...text.matchAll(/```(\w+)\n([\s\S]*?)```/g)].map((m) => ({ lang: m[1]!, body: m[2]! }));
  return {
    commands: blocks.filter((b) => b.lang === 'sh').flatMap((b) => b.body.split('\n')).filter((l) => l.includes('npx wsbridge')),
    json: blocks.find((b) => b.lang === 'json')!.body,
  };
}

function newest(dir: string): number {
  let t = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    t = Math.max(t, e.isDirectory() ? newest(p) : statSync(p).mtimeMs);
  }
  return t;
}

function ensureBuilt(): void {
  let built = 0;
  try {
    built = statSync(join(ROOT, 'dist/cli/main.js')).mtimeMs;
  } catch { /* not built */ }
  if (built < newest(join(ROOT, 'src'))) execFileSync('npm', ['run', 'build'], { cwd: ROOT, stdio: 'ignore' });
}

test('the README\'s client-mode lines work in bash as written', async (t) => {
  ensureBuilt();
  const { commands, json } = section();
  assert.equal(commands.length, 2, `two command lines: ${commands.join(' | ')}`);
  assert.ok(commands[0]!.includes(README_URL) && json.includes(README_URL));
  const cwd = mkdtempSync(join(tmpdir(), 'wsbridge-readme-'));
  for (const line of commands) {
    const remote = await remoteServer();
    t.after(() => remote.close());
    writeFileSync(join(cwd, 'client.json'), json.replaceAll(README_URL, remote.url));
    const command = line.replaceAll(README_URL, remote.url).replace('127.0.0.1:8081', '127.0.0.1:0');
    // npx finds this repository's own bin from inside it: run in ROOT, with the file's path absolute.
    const proc = spawn('bash', ['-c', command.replace('--config client.json', `--config ${join(cwd, 'client.json')}`)], {
      cwd: ROOT, env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', LOG_LEVEL: 'warn' }, stdio: ['ignore', 'pipe', 'pipe'], detached: true,
    });
    t.after(() => { try { process.kill(-proc.pid!, 'SIGKILL'); } catch { /* gone */ } });
    let out = '';
    const listening = bounded(new Promise<string>((resolve) => {
      const onData = (d: Buffer) => {
        out += d.toString();
        const m = /listening on (ws:\/\/\S+)/.exec(out);
        if (m) resolve(m[1]!);
      };
      proc.stdout!.on('data', onData);
      proc.stderr!.on('data', onData);
    }), `${command}: the listening line`, 60_000);
    const conn = await remote.nextConn();
    assert.equal(conn.req.headers.authorization, 'Bearer t', line);
    assert.equal(conn.req.headers['x-tenant'], 'acme', line);

    const local = await TestClient.connect(await listening);
    await local.call({ op: 'sub', subject: 'feed.ticks', id: 's' });
    conn.ws.send('tick 1');
    const tick = await local.next((f) => f.subject === 'feed.ticks', 10_000);
    assert.equal(Buffer.from(String(tick.body), 'base64').toString(), 'tick 1');
    local.send({ subject: 'orders.new', text: 'o-1' });
    const out1 = JSON.parse(await remote.nextFrame(conn)) as { subject: string; body: string };
    assert.equal(out1.subject, 'orders.new');
    local.close();
    process.kill(-proc.pid!, 'SIGTERM');
    await remote.close();
  }
});
