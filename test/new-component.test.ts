// `npm run new:component -- <name>`: the scaffold builds with `npm run build:components` and runs
// with `wsbridge serve --component` as it is, answering a WebSocket client; bad names and existing
// folders are refused with exit 2 and a reason.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { ROOT, TestClient, spawnCli, unb64 } from './helpers.ts';

const PATH = `${dirname(process.execPath)}:${ROOT}node_modules/.bin:${process.env.PATH ?? ''}`;
const SCRATCH = join(ROOT, 'build/test-scaffold');
rmSync(SCRATCH, { recursive: true, force: true });
mkdirSync(SCRATCH, { recursive: true });
after(() => rmSync(SCRATCH, { recursive: true, force: true }));

/** Runs an npm script to its end, from `cwd` (bounded: a build takes up to a few minutes when the machine is busy). */
function npmRun(args: string[], cwd = ROOT, timeoutMs = 300_000): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve) => {
    const p = spawn('npm', ['run', '--silent', ...args], { cwd, env: { ...process.env, PATH, npm_config_update_notifier: 'false' }, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    let out = '';
    let err = '';
    p.stdout.on('data', (d: Buffer) => (out += d));
    p.stderr.on('data', (d: Buffer) => (err += d));
    const timer = setTimeout(() => process.kill(-p.pid!, 'SIGKILL'), timeoutMs);
    p.on('close', (code) => (clearTimeout(timer), resolve({ code, out, err })));
  });
}

// Without npm's INIT_CWD (set when the tests run under `npm test`), which the script would take as
// the user's directory: the scaffold goes where it is run from, the scratch directory.
const { INIT_CWD: _npmCwd, ...ENV } = process.env;
const newComponent = (...args: string[]) => spawnSync(process.execPath, [join(ROOT, 'scripts/new-component.ts'), ...args], { cwd: SCRATCH, env: ENV, encoding: 'utf8' });

test('bad names and existing folders are refused (exit 2, a reason, nothing written)', () => {
  const bad: Array<[string, RegExp]> = [
    ['Greeter', /lower-case kebab-case/],
    ['my_component', /lower-case kebab-case/],
    ['1st', /lower-case kebab-case/],
    ['a--b', /lower-case kebab-case/],
    ['trailing-', /lower-case kebab-case/],
    ['../escape', /lower-case kebab-case/],
    ['sub/dir', /lower-case kebab-case/],
    ['with space', /lower-case kebab-case/],
    ['type', /WIT keyword/],
    ['map', /WIT keyword/],
    ['error-context', /WIT keyword/],
    ['grüße', /lower-case kebab-case/],
    ['/tmp/abs', /lower-case kebab-case/],
    ['..', /lower-case kebab-case/],
    ['', /the name is empty/],
    ['x'.repeat(65), /at most 64/],
  ];
  for (const [name, why] of bad) {
    const r = newComponent(name);
    assert.equal(r.status, 2, name);
    assert.match(r.stderr, why, name);
  }
  assert.equal(newComponent().status, 2);
  assert.match(newComponent('a', 'b').stderr, /one name at a time/);
  assert.deepEqual(spawnSync('ls', [SCRATCH], { encoding: 'utf8' }).stdout, '', 'nothing written');
  const first = newComponent('taken');
  assert.equal(first.status, 0, first.stderr);
  assert.ok(existsSync(join(SCRATCH, 'taken/component.js')), 'made where it was run');
  const again = newComponent('taken');
  assert.equal(again.status, 2);
  assert.match(again.stderr, /already exists: not overwriting it/);
});

test('npm run new:component → npm run build:components → wsbridge serve --component answers a WebSocket client', async (t) => {
  // From a subdirectory, as a user would: both scripts take paths from where npm was run.
  const made = await npmRun(['new:component', '--', 'scaffold-e2e'], SCRATCH);
  assert.equal(made.code, 0, made.err);
  const dir = join(SCRATCH, 'scaffold-e2e');
  for (const f of ['component.js', 'world.wit', 'build.json', 'README.md']) assert.ok(existsSync(join(dir, f)), f);
  assert.match(made.out, /npm run build:components -- scaffold-e2e\n/);
  // The commands it prints are the ones run below, from the same directory.
  const printed = /npx wsbridge serve --component (\S+) --subscribe 'scaffold-e2e\.>'/.exec(made.out);
  assert.ok(printed, made.out);
  assert.match(readFileSync(join(dir, 'component.js'), 'utf8'), /from 'wsbridge\/guest'/);
  // The README's commands are for the repository's root, the folder named from there.
  assert.match(readFileSync(join(dir, 'README.md'), 'utf8'), /npm run build:components -- build\/test-scaffold\/scaffold-e2e +#.*\nnpx wsbridge serve --component build\/components\/scaffold-e2e\.wasm /);

  const built = await npmRun(['build:components', '--', 'scaffold-e2e'], SCRATCH);
  assert.equal(built.code, 0, built.err);
  const wasm = resolve(SCRATCH, printed[1]!);
  assert.equal(wasm, join(ROOT, 'build/components/scaffold-e2e.wasm'));
  assert.match(built.out, new RegExp(`(built|cached) +${printed[1]!.replace(/[./]/g, '\\$&')}`));
  assert.ok(existsSync(wasm));

  const { proc, match, exit } = await spawnCli(['serve', '--listen', '127.0.0.1:0', '--component', wasm, '--subscribe', 'scaffold-e2e.>'], { COMPONENT_CACHE_DIR: join(ROOT, 'build/cache') });
  t.after(() => proc.kill('SIGKILL'));
  const c = await TestClient.connect(match![1]!);
  const res = await c.call({ op: 'req', id: '1', subject: 'scaffold-e2e.try', text: 'hi' });
  assert.equal(res.op, 'res');
  assert.deepEqual(JSON.parse(unb64(res.body)), { component: 'scaffold-e2e', subject: 'scaffold-e2e.try', text: 'hi' });
  // A plain publish is answered on the session's reply subject.
  c.send({ subject: 'scaffold-e2e.again', text: 'plain' });
  const m = await c.next((f) => f.subject === c.welcome.reply_to, 20_000);
  assert.deepEqual(JSON.parse(unb64(m.body)), { component: 'scaffold-e2e', subject: 'scaffold-e2e.again', text: 'plain' });
  c.close();
  proc.kill('SIGTERM');
  assert.equal((await exit).code, 0);
});
