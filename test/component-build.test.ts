// The component build (scripts/build-components.ts, `npm run build:components`): a world that
// imports WASI itself builds (the WASI WIT is supplied) and runs; a build that is not cached says
// so before it starts and a cached one says nothing; and a folder it cannot build gets a reason,
// not a stack trace from deep inside the toolchain.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { buildComponent, BuildError, ROOT } from '../scripts/build-components.ts';
import { loadComponent } from '../src/components/loader.ts';
import { InstancePool } from '../src/components/pool.ts';
import { ok, err } from '../src/gateway/messaging.ts';
import type { BrokerMessage } from '../src/gateway/messaging.ts';

const SCRATCH = join(ROOT, 'build/test-build');
rmSync(SCRATCH, { recursive: true, force: true });
mkdirSync(SCRATCH, { recursive: true });
after(() => rmSync(SCRATCH, { recursive: true, force: true }));

test('a world importing wasi:cli/environment@0.2.12 builds and runs; the progress line comes first, and only when building', async () => {
  const events: string[] = [];
  const building = buildComponent(join(ROOT, 'test/fixtures/components/wasi-world'), { outDir: SCRATCH, progress: (line) => events.push(`progress: ${line}`) });
  const built = await building.then((r) => (events.push('done'), r));
  assert.equal(built.cached, false);
  assert.equal(events.length, 2);
  assert.match(events[0]!, /^progress: building wasi-world with componentize-js \(StarlingMonkey\): 10–50 s and ~850 MB of memory/);
  assert.equal(events[1], 'done');
  const again = await buildComponent(join(ROOT, 'test/fixtures/components/wasi-world'), { outDir: SCRATCH, progress: () => assert.fail('a cached build says nothing') });
  assert.equal(again.cached, true);

  const loaded = await loadComponent(built.path, join(ROOT, 'build/cache'));
  assert.ok(loaded.imports.includes('wasi:cli/environment@0.2.12'));
  const out: BrokerMessage[] = [];
  const pool = new InstancePool(loaded, {
    publish: (m) => out.push(m),
    request: async () => err('unused'),
    outbound: { open: 0, opened: 0, bytesIn: 0, bytesOut: 0 },
    grants: { env: { REGION: 'eu' }, preopens: {} },
    policy: { allow: [], maxConnections: 1, receiveQueue: 10 },
    defaults: { timeoutMs: 5000, maxMessageBytes: 1 << 20 },
    onWorkerError: () => {},
  }, { size: 1, timeoutMs: 20_000, maxQueue: 10 });
  await pool.warm();
  try {
    assert.deepEqual(await pool.call({ subject: 'env', body: new Uint8Array(), replyTo: '_INBOX.e' }), ok(undefined));
    assert.deepEqual(JSON.parse(Buffer.from(out[0]!.body).toString()), { env: [['REGION', 'eu']] });
  } finally {
    await pool.close();
  }
});

test('a folder that cannot be built gets a BuildError with the reason, before any componentize run', async () => {
  const folder = (name: string, files: Record<string, string>) => {
    const dir = join(SCRATCH, name);
    mkdirSync(dir, { recursive: true });
    for (const [f, text] of Object.entries(files)) writeFileSync(join(dir, f), text);
    return dir;
  };
  const world = 'package local:x;\nworld x {\n  import wasmcloud:messaging/consumer@0.2.0;\n  export wasmcloud:messaging/handler@0.2.0;\n}\n';
  const source = "import { messageHandler } from 'wsbridge/guest';\nexport const handler = messageHandler(() => 'hi');\n";
  const cases: Array<[string, Record<string, string>, RegExp]> = [
    ['no-source', { 'world.wit': world }, /no component\.js .*npm run new:component/],
    ['no-world', { 'component.js': source }, /no world\.wit/],
    ['no-world-decl', { 'component.js': source, 'world.wit': 'package local:x;\n' }, /world\.wit: no world found/],
    ['old-wasi', { 'component.js': source, 'world.wit': world.replace('world x {', 'world x {\n  import wasi:cli/environment@0.2.5;') }, /uses wasi:cli@0\.2\.5, whose WIT this build does not carry\. Write wasi:cli\/…@0\.2\.12/],
    ['bad-build-json', { 'component.js': source, 'world.wit': world, 'build.json': '{"disable": ["clock"]}' }, /build\.json: expected \{"disable": \[\.\.\.\]\} with features from: all, stdio, random, clocks/],
    ['unresolved', { 'component.js': `import { x } from './missing.js';\n${source}`, 'world.wit': world }, /missing\.js/],
    ['syntax', { 'component.js': 'export const handler = {', 'world.wit': world }, /cannot bundle the component's source/],
  ];
  for (const [name, files, why] of cases) {
    await assert.rejects(buildComponent(folder(name, files), { outDir: SCRATCH, progress: () => assert.fail(`${name}: no build starts`) }), (e: Error) => e instanceof BuildError && why.test(e.message), name);
  }
});
