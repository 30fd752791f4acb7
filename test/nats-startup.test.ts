// Starting against a production NATS: mutual TLS to a three-server cluster with a throwaway CA
// (works, fails over, and every way it can be misconfigured ends startup at once with the setting
// to fix, never a silent hang); a dead or frozen NATS at startup is retried for
// NATS_STARTUP_RETRY_SEC with a log line per round, then exit 1; files that do not parse exit 2.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { spawnCli, TestClient, unb64, bounded } from './helpers.ts';
import { startNats, freePort } from './nats-helpers.ts';
import { startCluster } from './nats-cluster-helpers.ts';
import { makePki } from './tls-helpers.ts';
import { loadConfig, ConfigError } from '../src/config/load.ts';

const pki = makePki();
const [serverCert, serverKey] = pki.issue('nats');
const [clientCert, clientKey] = pki.issue('gw', { client: true });
const cluster = await startCluster({
  scheme: 'tls',
  extra: `tls { cert_file: ${JSON.stringify(serverCert)}, key_file: ${JSON.stringify(serverKey)}, ca_file: ${JSON.stringify(pki.ca)}, verify: true, timeout: 2 }`,
});
after(() => cluster.stop());
await cluster.jetstreamReady();

type Cli = Awaited<ReturnType<typeof spawnCli>>;
async function node(env: Record<string, string>, ready: RegExp | null = /listening on (ws:\/\/\S+)/): Promise<Cli> {
  const n = await spawnCli(['serve', '--listen', '127.0.0.1:0'], { LOG_FORMAT: 'json', ...env }, ready);
  after(async () => {
    if (n.proc.exitCode === null && n.proc.signalCode === null) {
      n.proc.kill('SIGKILL');
      await n.exit;
    }
  });
  return n;
}

const mtls = { NATS_URL: cluster.urls.join(','), NATS_TLS_CA_FILE: pki.ca, NATS_TLS_CERT_FILE: clientCert, NATS_TLS_KEY_FILE: clientKey };

/** Exit code and how long the process took from spawn to exit. */
async function exitOf(n: Cli, t0: number): Promise<{ code: number | null; ms: number }> {
  const { code } = await n.exit;
  return { code, ms: Date.now() - t0 };
}

test('mutual TLS to the cluster: two nodes exchange messages, keep history, and one fails over when its server dies', async () => {
  const a = await node({ ...mtls, HISTORY_SUBJECTS: 'mt.>', LOG_LEVEL: 'info' });
  assert.match(a.output(), /"msg":"NATS connected"/);
  const used = /"server":"127\.0\.0\.1:(\d+)","serverName"/.exec(a.output());
  const victim = cluster.servers.find((s) => s.port === Number(used![1]))!;
  // B dials the other servers, so it stays connected while A's server dies.
  const b = await node({ ...mtls, NATS_URL: cluster.urls.filter((u) => u !== victim.url).join(','), HISTORY_SUBJECTS: 'mt.>' });
  const onA = await TestClient.connect(a.match![1]!);
  const onB = await TestClient.connect(b.match![1]!);
  try {
    await onB.call({ op: 'sub', subject: 'mt.x', id: 's' });
    const ok = await onA.call({ op: 'pub', subject: 'mt.x', text: 'over mTLS', id: 'p' });
    assert.equal(ok.op, 'ok');
    const got = await onB.next((f) => f.subject === 'mt.x', 10_000);
    assert.equal(unb64(got.body), 'over mTLS');
    assert.equal(typeof got.seq, 'number', 'stored in JetStream, reached over mTLS');
    await onB.call({ op: 'sub', subject: 'core.x', id: 's2' });
    victim.signal('SIGKILL');
    try {
      // Published on A after the failover, received on B: A is connected again, with its certificate.
      for (let i = 0; ; i++) {
        onA.send({ subject: 'core.x', text: `after${i}` });
        if (await onB.next((f) => f.subject === 'core.x', 200).catch(() => undefined)) break;
        assert.ok(i < 100, 'nothing from A reached B after the failover');
      }
      assert.match(a.output(), /"msg":"NATS reconnected"/);
    } finally {
      await victim.restart();
      await cluster.jetstreamReady();
    }
  } finally {
    onA.close();
    onB.close();
  }
});

test('mutual TLS refused: no client certificate, a certificate from another CA, an unknown server CA: exit 1 at once naming the setting', async () => {
  const cases: Array<{ env: Record<string, string>; names: RegExp }> = [];
  cases.push({ env: { NATS_URL: cluster.urls.join(','), NATS_TLS_CA_FILE: pki.ca }, names: /requires a client certificate .*set NATS_TLS_CERT_FILE and NATS_TLS_KEY_FILE/ });
  const other = makePki();
  const [otherCert, otherKey] = other.issue('intruder', { client: true });
  cases.push({ env: { ...mtls, NATS_TLS_CERT_FILE: otherCert, NATS_TLS_KEY_FILE: otherKey }, names: /refused the client certificate .*NATS_TLS_CERT_FILE=/ });
  cases.push({ env: { ...mtls, NATS_TLS_CA_FILE: other.ca }, names: /TLS certificate of the NATS server.* is not accepted .*NATS_TLS_CA_FILE=/ });
  cases.push({ env: { NATS_URL: cluster.urls.join(',') }, names: /not accepted .*set NATS_TLS_CA_FILE/ });
  for (const c of cases) {
    const t0 = Date.now();
    const n = await node({ ...c.env, LOG_LEVEL: 'info' }, null);
    const { code, ms } = await exitOf(n, t0);
    assert.equal(code, 1, n.output());
    assert.match(n.output(), /"msg":"connecting to NATS"/, 'startup says what it is doing');
    assert.match(n.output(), /wsbridge: cannot connect to NATS at .*\(NATS_URL\): /);
    assert.match(n.output(), c.names);
    assert.doesNotMatch(n.output(), /listening on/);
    // Three servers × NATS_CONNECT_TIMEOUT_MS (2 s) at most, then one probe: not a retry loop.
    assert.ok(ms < 20_000, `exited after ${ms} ms`);
  }
});

test('a tls:// NATS_URL requires TLS: a server without TLS ends startup (exit 1), never plain text', async () => {
  const plain = await startNats();
  after(() => plain.stop());
  const n = await node({ NATS_URL: plain.url.replace('nats://', 'tls://'), NATS_STARTUP_RETRY_SEC: '0' }, null);
  const { code } = await bounded(n.exit, 'exit of a node dialling tls:// to a plain server', 20_000);
  assert.equal(code, 1, n.output());
  assert.match(n.output(), /does not offer TLS, which a tls:\/\/ NATS_URL requires/);
  assert.doesNotMatch(n.output(), /listening on/);
});

test('certificate, credentials and NKEY seed files that cannot be used exit 2 naming the setting, before any connection', async () => {
  const [, otherKey] = makePki().issue('x', { client: true });
  const junk = join(pki.dir, 'junk.pem');
  writeFileSync(junk, 'not a certificate\n');
  const cases: Array<[Record<string, string>, RegExp]> = [
    [{ NATS_TLS_CERT_FILE: clientCert }, /NATS_TLS_CERT_FILE and NATS_TLS_KEY_FILE go together/],
    [{ NATS_TLS_CERT_FILE: clientCert, NATS_TLS_KEY_FILE: otherKey }, /NATS_TLS_CERT_FILE \/ NATS_TLS_KEY_FILE: .*key values mismatch/],
    [{ NATS_TLS_CERT_FILE: join(pki.dir, 'missing.pem'), NATS_TLS_KEY_FILE: clientKey }, /NATS_TLS_CERT_FILE: cannot read .*ENOENT/],
    [{ NATS_TLS_CA_FILE: junk }, /NATS_TLS_CA_FILE: .* is not a PEM CA certificate/],
    // nats.js reads these only when a server asks; unchecked, they looked like an unreachable NATS.
    [{ NATS_CREDS_FILE: junk }, /NATS_CREDS_FILE: .*junk\.pem is not a NATS credentials file .*unable to parse credentials/],
    [{ NATS_NKEY_SEED_FILE: junk }, /NATS_NKEY_SEED_FILE: .*junk\.pem is not an NKEY user seed .*invalid encoded key/],
  ];
  for (const [env, msg] of cases) {
    const n = await node({ NATS_URL: cluster.urls[0]!, ...env }, null);
    assert.equal((await n.exit).code, 2, n.output());
    assert.match(n.output(), msg);
  }
});

test('a dead NATS URL at startup: retried for NATS_STARTUP_RETRY_SEC with a warning per round, then exit 1 naming it', async () => {
  const port = await freePort();
  const t0 = Date.now();
  const n = await node({ NATS_URL: `nats://127.0.0.1:${port}`, NATS_STARTUP_RETRY_SEC: '3', NATS_RECONNECT_WAIT_MS: '500' }, null);
  const { code, ms } = await exitOf(n, t0);
  assert.equal(code, 1);
  assert.match(n.output(), /cannot connect to NATS at nats:\/\/127\.0\.0\.1:\d+ \(NATS_URL\): connection refused \(ECONNREFUSED\); no server answered in \d+ rounds over 3 s \(NATS_STARTUP_RETRY_SEC=3\)/);
  assert.ok((n.output().match(/NATS not reachable at startup: retrying/g) ?? []).length >= 3, n.output());
  assert.ok(ms >= 2500 && ms < 15_000, `exited after ${ms} ms`);
  // 0: one round, then exit.
  const once = await node({ NATS_URL: `nats://127.0.0.1:${port}`, NATS_STARTUP_RETRY_SEC: '0' }, null);
  assert.equal((await once.exit).code, 1);
  assert.doesNotMatch(once.output(), /retrying/);
});

test('NATS that comes up during the startup retry: the node starts', async () => {
  const port = await freePort();
  const n = await node({ NATS_URL: `nats://127.0.0.1:${port}`, NATS_STARTUP_RETRY_SEC: '60', NATS_RECONNECT_WAIT_MS: '200' }, /NATS not reachable at startup/);
  const nats = await startNats(port);
  after(() => nats.stop());
  await new Promise<void>((resolve, reject) => {
    const check = (): void => {
      if (/listening on ws:/.test(n.output())) resolve();
    };
    n.proc.stdout!.on('data', check);
    n.proc.stderr!.on('data', check);
    void n.exit.then(({ code }) => reject(new Error(`exited ${code}: ${n.output()}`)));
    check();
  });
});

test('frozen NATS servers at startup: each round costs one NATS_CONNECT_TIMEOUT_MS per server plus one for the TLS check, never a hang', async () => {
  const frozen = [await startNats(), await startNats(), await startNats()];
  after(() => Promise.all(frozen.map((f) => f.stop())));
  for (const f of frozen) f.proc.kill('SIGSTOP');
  try {
    const n = await node({ NATS_URL: frozen.map((f) => f.url).join(','), NATS_STARTUP_RETRY_SEC: '0', NATS_CONNECT_TIMEOUT_MS: '2000', LOG_LEVEL: 'info' }, null);
    const { code } = await n.exit;
    const exited = Date.now();
    assert.equal(code, 1);
    assert.match(n.output(), /cannot connect to NATS .*\(NATS_URL\): no server completed the NATS handshake within NATS_CONNECT_TIMEOUT_MS=2000/);
    // From the first dial: 3 × 2 s, then the three TLS checks at once (2 s): 8 s. One check after
    // another (as before) made it 12 s; 10 s leaves room for a loaded machine either way.
    const started = (JSON.parse(n.output().split('\n').find((l) => l.includes('"connecting to NATS"'))!) as { time: number }).time;
    const ms = exited - started;
    assert.ok(ms >= 7500 && ms < 10_000, `the round took ${ms} ms`);
  } finally {
    for (const f of frozen) f.proc.kill('SIGCONT');
  }
});

test('production NATS settings: bad values are ConfigErrors naming the key; defaults as documented', () => {
  const load = (flags: Record<string, string>) => loadConfig({ env: {}, flags: { MODE: 'server', NATS_URL: 'nats://127.0.0.1:4222', ...flags } });
  const bad: Array<[Record<string, string>, RegExp]> = [
    [{ NATS_JS_DOMAIN: 'hub', NATS_JS_API_PREFIX: '$JS.hub.API' }, /NATS_JS_DOMAIN and NATS_JS_API_PREFIX are alternatives/],
    [{ NATS_JS_DOMAIN: 'a.b' }, /NATS_JS_DOMAIN: expected a JetStream domain name/],
    [{ NATS_JS_API_PREFIX: 'JS.*.API' }, /NATS_JS_API_PREFIX: expected subject tokens without wildcards/],
    [{ NATS_JS_REPLICAS: '6' }, /NATS_JS_REPLICAS/],
    [{ NATS_PING_INTERVAL_SEC: '0' }, /NATS_PING_INTERVAL_SEC/],
    [{ NATS_MAX_PINGS_OUT: '0' }, /NATS_MAX_PINGS_OUT/],
    [{ NATS_CONNECT_TIMEOUT_MS: '10' }, /NATS_CONNECT_TIMEOUT_MS/],
    // 0 (with no jitter) made reconnecting a busy loop: 74 % of a core while NATS was down.
    [{ NATS_RECONNECT_WAIT_MS: '0' }, /NATS_RECONNECT_WAIT_MS .*expected an integer from 100 to 600000/],
    [{ NATS_PUBLISH_ACK_TIMEOUT_MS: '99' }, /NATS_PUBLISH_ACK_TIMEOUT_MS/],
    [{ NATS_JS_PLACEMENT_CLUSTER: 'a b' }, /NATS_JS_PLACEMENT_CLUSTER/],
  ];
  for (const [flags, msg] of bad) assert.throws(() => load(flags), (e: Error) => e instanceof ConfigError && msg.test(e.message), JSON.stringify(flags));
  const n = load({}).nats!;
  assert.deepEqual(
    [n.pingIntervalSec, n.maxPingsOut, n.connectTimeoutMs, n.reconnectWaitMs, n.reconnectJitterMs, n.startupRetrySec, n.jsReplicas, n.publishAckTimeoutMs, n.jsDomain],
    [5, 2, 2000, 1000, 500, 30, 0, 2000, undefined],
  );
  assert.deepEqual(load({ NATS_JS_PLACEMENT_TAGS: 'ssd,az1' }).nats!.jsPlacementTags, ['ssd', 'az1']);
});
