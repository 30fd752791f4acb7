// docs/components.md, "Write your own component", checked against what it shows: the scaffold's
// source is what `new:component` writes, the finished greeter is examples/components/greeter as
// it is, and that greeter, served from a config file that names it relative to the file (step 5),
// answers as step 4 says: counts, an event, a request, a WebSocket of its own, and failures that
// are handler_failed with the reason in the log.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { buildComponent, ROOT } from '../scripts/build-components.ts';
import { TestClient, spawnCli, unb64, b64, bounded } from './helpers.ts';

const doc = readFileSync(join(ROOT, 'docs/components.md'), 'utf8');
const walkthrough = doc.slice(doc.indexOf('## Write your own component'), doc.indexOf('## The contract'));
/** The first fenced block of `lang` after `heading` in the walkthrough. */
function block(heading: string, lang: string): string {
  const from = walkthrough.indexOf(heading);
  assert.ok(from >= 0, heading);
  const m = new RegExp('```' + lang + '\\n([\\s\\S]*?)```').exec(walkthrough.slice(from));
  assert.ok(m, `${heading}: a ${lang} block`);
  return m[1]!;
}

const SCRATCH = join(ROOT, 'build/test-walkthrough');
rmSync(SCRATCH, { recursive: true, force: true });
mkdirSync(SCRATCH, { recursive: true });
after(() => rmSync(SCRATCH, { recursive: true, force: true }));

test('the walkthrough shows the scaffold and the finished greeter as they are', () => {
  const r = spawnSync(process.execPath, [join(ROOT, 'scripts/new-component.ts'), 'greeter', '--dir', SCRATCH], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.ok(readFileSync(join(SCRATCH, 'greeter/component.js'), 'utf8').endsWith(block('### 1. Scaffold it', 'js')));
  assert.equal(block('### 4. Make it yours', 'js'), readFileSync(join(ROOT, 'examples/components/greeter/component.js'), 'utf8'));
  assert.equal(block('### 4. Make it yours', 'wit'), readFileSync(join(ROOT, 'examples/components/greeter/world.wit'), 'utf8'));
});

test('the greeter, served from a config file in another folder, does what step 4 says', async (t) => {
  const wasm = (await buildComponent(join(ROOT, 'examples/components/greeter'))).path;
  assert.equal(wasm, join(ROOT, 'build/components/greeter.wasm'));
  // Step 5's config, in a folder of its own: the path is the file's, not the cwd's (the CLI runs in ROOT).
  const confDir = join(SCRATCH, 'conf');
  mkdirSync(confDir);
  const conf = JSON.parse(block('### 5. Keep it in a config file', 'json')) as { components: Array<{ path: string }> };
  conf.components[0]!.path = '../../components/greeter.wasm';
  writeFileSync(join(confDir, 'greeter.json'), JSON.stringify(conf));
  const { proc, match, output } = await spawnCli(['serve', '--listen', '127.0.0.1:0', '--config', join(confDir, 'greeter.json')], { COMPONENT_CACHE_DIR: join(ROOT, 'build/cache') });
  t.after(() => proc.kill('SIGKILL'));
  const url = match![1]!;
  const c = await TestClient.connect(url);
  const req = async (subject: string, text: string) => c.call({ op: 'req', id: subject + text, subject, text, timeout_ms: 20_000 });

  assert.equal((await c.call({ op: 'sub', id: 's', subject: 'events.greeted' })).op, 'ok');
  for (const times of [1, 2]) {
    const r = await req('greeter.hello', '{"name":"Ada"}');
    assert.deepEqual(JSON.parse(unb64(r.body)), { greeting: 'Hello, Ada!', times });
    const ev = await c.next((f) => f.subject === 'events.greeted');
    assert.deepEqual(JSON.parse(unb64(ev.body)), { name: 'Ada', times });
  }
  // greeter.ping: a WebSocket from the component to this gateway, as the doc runs it (its own URL).
  assert.deepEqual(JSON.parse(unb64((await req('greeter.ping', url)).body)), ['welcome', 'pong']);

  const bad = await req('greeter.hello', 'not json');
  assert.deepEqual([bad.op, bad.code, bad.message], ['error', 'handler_failed', 'the handler of greeter.hello failed']);
  await bounded((async () => {
    while (!/"reason":"SyntaxError: the body of a message on greeter\.hello is not JSON \(.*"msg":"handler failed"/.test(output())) await new Promise((r) => setTimeout(r, 20));
  })(), 'the reason in the log', 10_000);
  assert.equal((await req('greeter.time', '')).code, 'handler_failed');

  // Somebody answers clock.now: greeter.time works.
  const clock = await TestClient.connect(url);
  assert.equal((await clock.call({ op: 'sub', id: 'c', subject: 'clock.now' })).op, 'ok');
  const asked = req('greeter.time', '');
  const q = await clock.next((f) => f.subject === 'clock.now', 20_000);
  clock.send({ subject: q.reply_to, body: b64('12:00') });
  assert.equal(unb64((await asked).body), 'the clock says 12:00');
  // The count survived the failures: one instance, kept.
  assert.equal(JSON.parse(unb64((await req('greeter.hello', '{"name":"Ada"}')).body)).times, 3);
  c.close();
  clock.close();
});
