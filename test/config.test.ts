// Config resolution that the CLI tests do not reach: per-link merging and component entries.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync, mkdtempSync, mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { loadConfig, ConfigError } from '../src/config/load.ts';

const file = (obj: unknown) => {
  const p = join(mkdtempSync(join(tmpdir(), 'wsbridge-cfg-')), 'c.json');
  writeFileSync(p, JSON.stringify(obj));
  return p;
};

test('a link value wins over the top level, also when it equals the default', () => {
  const c = loadConfig({ env: {}, file: file({
    MODE: 'client', RECONNECT_MAX_MS: 10_000, AUTH_TOKEN: 'top', HEADER_X_A: 'top',
    links: [
      { URI: 'ws://127.0.0.1:1/a', RECONNECT_MAX_MS: 30_000, HEADER_X_A: 'own' },
      { URI: 'ws://127.0.0.1:1/b', AUTH_TOKEN: 'b-token' },
    ],
  }) });
  assert.equal(c.links.length, 2);
  assert.equal(c.links[0]!.reconnect.maxMs, 30_000, 'equal to the default, still the link value');
  assert.equal(c.links[0]!.authToken, 'top');
  assert.deepEqual(c.links[0]!.headers, { X_A: 'own' });
  assert.equal(c.links[1]!.reconnect.maxMs, 10_000);
  assert.equal(c.links[1]!.authToken, 'b-token');
});

test('a link may not set server-only keys; env adds a link next to the file links', () => {
  assert.throws(() => loadConfig({ env: {}, file: file({ MODE: 'client', links: [{ URI: 'ws://127.0.0.1:1/', ADMIN_TOKEN: 'x' }] }) }), /links\[0\]: unknown key ADMIN_TOKEN/);
  const c = loadConfig({ env: { URI: 'ws://127.0.0.1:2/env' }, file: file({ MODE: 'client', links: [{ URI: 'ws://127.0.0.1:1/file' }] }) });
  assert.deepEqual(c.links.map((l) => l.uri), ['ws://127.0.0.1:1/file', 'ws://127.0.0.1:2/env']);
});

test('component entries: defaults, queue, grants, and errors naming the entry', () => {
  const c = loadConfig({ env: { COMPONENT_POOL_SIZE: '3' }, file: file({ components: [
    { path: 'x/echo.wasm', subscriptions: ['echo.>', { subject: 'e2', queue: 'own' }], queue: 'g', env: { A: '1' } },
  ] }) });
  const e = c.components[0]!;
  assert.equal(e.id, 'echo');
  assert.equal(e.poolSize, 3);
  assert.deepEqual(e.subscriptions, [{ subject: 'echo.>', queue: 'g' }, { subject: 'e2', queue: 'own' }]);
  assert.deepEqual(e.env, { A: '1' });
  const bad: Array<[unknown, RegExp]> = [
    [{ subscriptions: ['a'] }, /components\[0\]: path/],
    [{ path: 'a.wasm', subscriptions: ['a b'] }, /subscription "a b"/],
    [{ path: 'a.wasm', subscriptions: ['_WSB.>'] }, /reserved/],
    [{ path: 'a.wasm', pool_size: 0 }, /pool_size: expected an integer from 1/],
    [{ path: 'a.wasm', env: { A: 1 } }, /env: expected an object of strings/],
    [{ path: 'a.wasm', typo: 1 }, /unknown key typo/],
  ];
  for (const [entry, re] of bad) assert.throws(() => loadConfig({ env: {}, file: file({ components: [entry] }) }), (err: Error) => err instanceof ConfigError && re.test(err.message));
  assert.throws(() => loadConfig({ env: {}, file: file({ components: [{ path: 'a/x.wasm' }, { path: 'b/x.wasm' }] }) }), /two components have the id "x"/);
});

test('component paths and preopens in a config file resolve from its folder; on the command line from the cwd', () => {
  const dir = mkdtempSync(join(tmpdir(), 'wsbridge-cfg-'));
  try {
    mkdirSync(join(dir, 'conf'));
    const path = join(dir, 'conf', 'gateway.json');
    writeFileSync(path, JSON.stringify({ components: [
      { path: '../build/a.wasm', preopens: { '/data': 'data', '/abs': '/srv/abs' } },
      { path: '/opt/b.wasm' },
    ] }));
    const c = loadConfig({ env: {}, file: path, components: [{ path: 'cli/c.wasm' }] });
    assert.deepEqual(c.components.map((e) => e.path), [join(dir, 'build/a.wasm'), '/opt/b.wasm', 'cli/c.wasm']);
    assert.deepEqual(c.components[0]!.preopens, { '/data': join(dir, 'conf/data'), '/abs': '/srv/abs' });
    assert.deepEqual(c.components.map((e) => e.id), ['a', 'b', 'c']);
    // The same through WSBRIDGE_CONFIG, given relative to the cwd.
    const rel = relative(process.cwd(), path);
    assert.equal(loadConfig({ env: { WSBRIDGE_CONFIG: rel } }).components[0]!.path, join(dir, 'build/a.wasm'));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('defaults: server mode listens on 127.0.0.1:8080 with every documented default', () => {
  const c = loadConfig({ env: {} });
  assert.equal(c.mode, 'server');
  assert.deepEqual(c.listen, { host: '127.0.0.1', port: 8080 });
  assert.equal(c.maxMessageBytes, 1024 * 1024);
  assert.equal(c.slowConsumerPolicy, 'close');
  assert.equal(c.sessionTracking, true);
  assert.equal(c.demoPage, true);
  assert.deepEqual(c.links, []);
  const client = loadConfig({ env: {}, flags: { MODE: 'client' } });
  assert.equal(client.listen, undefined);
  assert.equal(client.links[0]!.uri, 'ws://127.0.0.1:8080/ws');
  assert.deepEqual(client.links[0]!.forward, [], 'nothing is forwarded unless a link names it');
  assert.equal(client.links[0]!.connectTimeoutMs, 30_000);
});
