// Gateways on a real three-server nats-server cluster with JetStream (test/nats-cluster-helpers.ts):
// a node fails over when the server it uses is SIGKILLed (at once) or SIGSTOPped (within the
// documented ping bound, default settings); /readyz tells the truth while a connection is stale;
// the history stream and the presence bucket get 3 replicas (surviving the loss of the stream's
// leader), NATS_JS_REPLICAS=1 on a cluster warns, replicas or placement JetStream cannot honour stop
// startup naming the setting; a publish on a history subject gives up after
// NATS_PUBLISH_ACK_TIMEOUT_MS while the stream's leader is frozen.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from '@nats-io/transport-node';
import { jetstreamManager, StorageType } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { Gateway, NatsUnavailableError } from '../src/gateway/gateway.ts';
import { loadConfig } from '../src/config/load.ts';
import { NatsBus } from '../src/bus/nats-bus.ts';
import type { Logger } from '../src/observability/logger.ts';
import { scopedStateName } from '../src/security/subject-policy.ts';
import { TestClient, bounded } from './helpers.ts';
import { startCluster, captureLog } from './nats-cluster-helpers.ts';
import type { ClusterServer } from './nats-cluster-helpers.ts';
import { startNats } from './nats-helpers.ts';

const cluster = await startCluster();
after(() => cluster.stop());
await cluster.jetstreamReady();

async function node(servers: string[], settings: Record<string, string> = {}, log?: Logger): Promise<Gateway & { bus: NatsBus }> {
  const config = loadConfig({ flags: { MODE: 'server', LISTEN: '127.0.0.1:0', NATS_URL: servers.join(','), HISTORY_SUBJECTS: 'hist.>', PRESENCE_TTL_SEC: '3', ...settings }, env: {} });
  const gw = await Gateway.start(config, log ? { log } : {});
  after(() => gw.shutdown());
  return gw as Gateway & { bus: NatsBus };
}

/** The cluster server a node is connected to now. */
function serverOf(gw: { bus: NatsBus }): ClusterServer {
  const port = Number(gw.bus.server.split(':').pop());
  const s = cluster.servers.find((x) => x.port === port);
  if (!s) throw new Error(`node is on ${gw.bus.server}, not a cluster server`);
  return s;
}

/** Resolves with the first status event of `type` on the node's NATS connection. */
async function nextStatus(gw: { bus: NatsBus }, type: string, ms: number): Promise<void> {
  // nats.js's status() is a QueuedIterator: stop() ends it and removes its listener.
  const it = gw.bus.nc.status() as AsyncIterable<{ type: string }> & { stop(): void };
  try {
    await bounded((async () => {
      for await (const s of it) if (s.type === type) return;
    })(), `NATS status ${type}`, ms);
  } finally {
    it.stop();
  }
}

/** /readyz once it answers `status` (its checks run every second), within `ms`; its last answer otherwise. */
const readyzWithin = async (gw: Gateway, status: number, ms = 5000) => {
  const until = Date.now() + ms;
  for (;;) {
    const r = await readyz(gw);
    if (r.status === status || Date.now() > until) return { status: r.status, body: { status: r.body.status, nats: r.body.nats } };
    await new Promise((resolve) => setTimeout(resolve, 100)); // the next readiness run, bounded by ms
  }
};
const readyz = async (gw: Gateway) => {
  const r = await fetch(gw.server!.url.replace('ws://', 'http://').replace(/\/ws$/, '/readyz'));
  return { status: r.status, body: (await r.json()) as { status: string; nats: string } };
};

/** Cross-node pub/sub works: a message published on `from` reaches a subscriber on `to`. */
async function crossNode(from: Gateway, to: Gateway, subject: string): Promise<void> {
  const sub = await TestClient.connect(to);
  const pub = await TestClient.connect(from);
  try {
    await sub.call({ op: 'sub', subject, id: 's' });
    // The subscription reaches the other node's server asynchronously: publish until it arrives.
    await bounded((async () => {
      for (let i = 0; ; i++) {
        pub.send({ subject, text: `m${i}` });
        const got = await sub.next((f) => f.subject === subject, 200).catch(() => undefined);
        if (got) return;
      }
    })(), `cross-node delivery on ${subject}`, 15_000);
  } finally {
    sub.close();
    pub.close();
  }
}

async function restore(s: ClusterServer): Promise<void> {
  if (s.running()) s.signal('SIGCONT');
  else await s.restart();
  await cluster.jetstreamReady();
}

test('SIGKILL of the server a node uses: it is on another server within 5 s; cross-node pub/sub and /readyz follow', async () => {
  const a = await node(cluster.urls);
  const first = serverOf(a);
  // B dials only the other servers, so it stays up while A's server dies.
  const b = await node(cluster.urls.filter((u) => u !== first.url));
  await crossNode(b, a, 'kill.x');
  const reconnected = nextStatus(a, 'reconnect', 5000);
  const t0 = Date.now();
  first.signal('SIGKILL');
  try {
    await reconnected;
    const ms = Date.now() - t0;
    assert.notEqual(serverOf(a), first);
    assert.equal(a.bus.connected, true);
    // Readiness follows within its checks' cycle (each check bounded to 1 s; presence rewrites its
    // entry on the next heartbeat): 15 s leaves room for a loaded machine.
    assert.deepEqual(await readyzWithin(a, 200, 15_000), { status: 200, body: { status: 'ready', nats: 'connected' } });
    await crossNode(b, a, 'kill.y');
    await crossNode(a, b, 'kill.z');
    console.log(`failover after SIGKILL: ${ms} ms`);
  } finally {
    await restore(first);
  }
});

test('SIGSTOP of the server a node uses (default settings): stale within 5 s × (2 + 1), then on another server at once; logged', async () => {
  const { log, lines } = captureLog();
  const a = await node(cluster.urls, {}, log);
  const frozen = serverOf(a);
  const b = await node(cluster.urls.filter((u) => u !== frozen.url));
  await crossNode(b, a, 'stop.x');
  const stale = nextStatus(a, 'staleConnection', 30_000);
  const reconnected = nextStatus(a, 'reconnect', 30_000);
  const t0 = Date.now();
  frozen.signal('SIGSTOP');
  try {
    await stale;
    const staleMs = Date.now() - t0;
    await reconnected;
    const ms = Date.now() - t0;
    console.log(`SIGSTOP: stale after ${staleMs} ms, on another server after ${ms} ms`);
    // NATS_PING_INTERVAL_SEC × (NATS_MAX_PINGS_OUT + 1) = 15 s, then NATS_CONNECT_TIMEOUT_MS at
    // most for the frozen server in the way; 3 s for a loaded machine.
    assert.ok(staleMs <= 15_000 + 3000, `stale after ${staleMs} ms`);
    // The frozen server is not redialled first: no connect timeout between stale and reconnected.
    assert.ok(ms - staleMs < 2000, `reconnected ${ms - staleMs} ms after the connection went stale`);
    assert.notEqual(serverOf(a), frozen);
    assert.ok(lines.some((l) => /stopped answering pings/.test(String(l.msg))), 'the stale connection is logged');
    // Readiness follows within its checks' cycle (each check bounded to 1 s; presence rewrites its
    // entry on the next heartbeat): 15 s leaves room for a loaded machine.
    assert.deepEqual(await readyzWithin(a, 200, 15_000), { status: 200, body: { status: 'ready', nats: 'connected' } });
    await crossNode(b, a, 'stop.y');
  } finally {
    await restore(frozen);
  }
});

test('/readyz is 503 once the only server is frozen (NATS_PING_INTERVAL_SEC=1), 200 after SIGCONT', async () => {
  const solo = await startNats();
  after(() => solo.stop());
  const gw = await node([solo.url], { NATS_PING_INTERVAL_SEC: '1', NATS_MAX_PINGS_OUT: '2', HISTORY_SUBJECTS: '' });
  assert.equal((await readyzWithin(gw, 200)).status, 200);
  const stale = nextStatus(gw, 'staleConnection', 15_000);
  const t0 = Date.now();
  solo.proc.kill('SIGSTOP');
  try {
    await stale;
    const ms = Date.now() - t0;
    // 1 s × (2 + 1), plus slack; nats.js's own default (2 minutes) would be far over.
    assert.ok(ms <= 3000 + 3000, `stale after ${ms} ms`);
    assert.equal(gw.bus.connected, false);
    assert.deepEqual(await readyzWithin(gw, 503), { status: 503, body: { status: 'not_ready', nats: 'disconnected' } });
    // Still frozen: every reconnect attempt ends at the connect timeout, readiness stays honest.
    const attempt = nextStatus(gw, 'reconnecting', 10_000);
    await attempt;
    assert.equal((await readyz(gw)).status, 503);
  } finally {
    solo.proc.kill('SIGCONT');
  }
  await nextStatus(gw, 'reconnect', 15_000).catch(() => {
    if (!gw.bus.connected) throw new Error('not reconnected after SIGCONT');
  });
  assert.equal((await readyzWithin(gw, 200)).status, 200);
});

test('replicas: history stream and presence bucket get 3 on the cluster; history survives SIGKILL of the stream leader', async () => {
  // A history stream and a presence bucket made earlier with 1 replica are brought to 3 as well.
  const nc = await connect({ servers: cluster.urls });
  try {
    const bucket = scopedStateName('wsbridge_nodes', 'rep.');
    await new Kvm(nc).create(bucket, { history: 1, ttl: 3000, replicas: 1 });
    await (await jetstreamManager(nc)).streams.add({ name: scopedStateName('WSBRIDGE_HISTORY', 'rep.'), subjects: ['rep.hist.>'], num_replicas: 1 });
    const a = await node(cluster.urls, { NATS_PREFIX: 'rep.', HISTORY_SUBJECTS: 'hist.>' });
    const jsm = await jetstreamManager(nc);
    // Scaling up moves data: wait until a leader and two current followers hold the stream.
    const stream = await bounded((async () => {
      for (;;) {
        const i = await jsm.streams.info(a.bus.historyStream);
        if (i.cluster?.leader && i.cluster.replicas?.length === 2 && i.cluster.replicas.every((r) => r.current)) return i;
        await new Promise((r) => setTimeout(r, 100)); // polling JetStream's state, bounded above
      }
    })(), 'three current replicas of the history stream', 20_000);
    assert.equal(stream.config.num_replicas, 3);
    assert.equal((await jsm.streams.info(`KV_${bucket}`)).config.num_replicas, 3);
    assert.equal(a.bus.placement.replicas, 3);

    const client = await TestClient.connect(a);
    const publish = async (text: string) => bounded((async () => {
      for (let i = 0; ; i++) {
        const r = await client.call({ op: 'pub', subject: 'hist.r', text, id: `${text}-${i}` });
        if (r.op === 'ok') return;
      }
    })(), `stored ${text}`, 30_000);
    for (let i = 0; i < 5; i++) await publish(`before${i}`);
    const leader = cluster.byName(stream.cluster!.leader!);
    leader.signal('SIGKILL');
    try {
      // The survivors elect a new leader (JetStream's raft, seconds); meanwhile publishes fail
      // and are retried (same text, new id). Then every message, old and new, is there.
      for (let i = 0; i < 5; i++) await publish(`after${i}`);
      const info = await jsm.streams.info(a.bus.historyStream);
      assert.notEqual(info.cluster?.leader, leader.name);
      const stored: string[] = [];
      for (let seq = info.state.first_seq; seq <= info.state.last_seq; seq++) {
        const m = await jsm.streams.getMessage(a.bus.historyStream, { seq }).catch(() => null);
        if (m) stored.push(new TextDecoder().decode(m.data));
      }
      for (let i = 0; i < 5; i++) {
        assert.ok(stored.includes(`before${i}`), `before${i} kept after losing the leader (${stored.join(',')})`);
        assert.ok(stored.includes(`after${i}`), `after${i} stored after losing the leader`);
      }
    } finally {
      client.close();
      await restore(leader);
    }
  } finally {
    await nc.close();
  }
});

test('NATS_JS_REPLICAS=1 on a cluster warns; 5 (more than the cluster has) and an impossible placement stop startup naming the setting', async () => {
  const { log, lines } = captureLog();
  const one = await node(cluster.urls, { NATS_JS_REPLICAS: '1', NATS_PREFIX: 'r1.', HISTORY_SUBJECTS: 'h.>' }, log);
  assert.equal(one.bus.placement.replicas, 1);
  assert.ok(lines.some((l) => l.level === 40 && /NATS_JS_REPLICAS=1 on a JetStream cluster/.test(String(l.msg))), 'warned');
  const nc = await connect({ servers: cluster.urls });
  try {
    const jsm = await jetstreamManager(nc);
    assert.equal((await jsm.streams.info(one.bus.historyStream)).config.num_replicas, 1);
    // No probe stream is left behind.
    const names: string[] = [];
    for await (const s of jsm.streams.list()) names.push(s.config.name);
    assert.deepEqual(names.filter((n) => n.includes('PROBE')), []);
  } finally {
    await nc.close();
  }
  await assert.rejects(node(cluster.urls, { NATS_JS_REPLICAS: '5', NATS_PREFIX: 'r5.' }), (e: Error) => e instanceof NatsUnavailableError && /NATS_JS_REPLICAS=5: .*cannot place 5 replicas/.test(e.message));
  await assert.rejects(node(cluster.urls, { NATS_JS_PLACEMENT_TAGS: 'ssd', NATS_PREFIX: 'rt.' }), (e: Error) => e instanceof NatsUnavailableError && /NATS_JS_PLACEMENT_CLUSTER, NATS_JS_PLACEMENT_TAGS/.test(e.message));
  // The cluster's own name is a placement it can honour.
  const placed = await node(cluster.urls, { NATS_JS_PLACEMENT_CLUSTER: 'wsbc', NATS_PREFIX: 'rc.', HISTORY_SUBJECTS: 'h.>' });
  assert.equal(placed.bus.placement.replicas, 3);
});

test('a node starting while JetStream cannot place 3 replicas (as during a server outage) keeps the 3 that history and presence already have', async () => {
  const nc = await connect({ servers: cluster.urls });
  try {
    const jsm = await jetstreamManager(nc);
    const settings = { NATS_PREFIX: 'keep.', HISTORY_SUBJECTS: 'h.>' };
    const first = await node(cluster.urls, settings);
    assert.equal(first.bus.placement.replicas, 3);
    await first.shutdown();
    // The probe gets no "placed": here another stream owns its subjects; with a server down it
    // can time out or be refused alike (measured: about every other try with one of 3 down).
    await jsm.streams.add({ name: 'PROBE_BLOCKER', subjects: ['_WSB_PROBE.>'], storage: StorageType.Memory });
    try {
      const { log, lines } = captureLog();
      const again = await node(cluster.urls, settings, log);
      assert.equal(again.bus.placement.replicas, 3);
      assert.equal((await jsm.streams.info(again.bus.historyStream)).config.num_replicas, 3, 'history stream not scaled down');
      assert.equal((await jsm.streams.info(`KV_${scopedStateName('wsbridge_nodes', 'keep.')}`)).config.num_replicas, 3, 'presence bucket not scaled down');
      assert.ok(lines.some((l) => l.level === 40 && /cannot place 3 replicas now: keeping the 3/.test(String(l.msg))), 'warned');
    } finally {
      await jsm.streams.delete('PROBE_BLOCKER');
    }
  } finally {
    await nc.close();
  }
});

test('a single JetStream server: 1 replica, no warning; placement settings there are warned about', async () => {
  const solo = await startNats();
  after(() => solo.stop());
  const { log, lines } = captureLog();
  const gw = await node([solo.url], {}, log);
  assert.equal(gw.bus.placement.replicas, 1);
  assert.equal(lines.filter((l) => (l.level as number) >= 40).length, 0, JSON.stringify(lines.filter((l) => (l.level as number) >= 40)));
  // Placement settings cannot apply to one server (JetStream takes and ignores them): a warning.
  const tagged = captureLog();
  const placed = await node([solo.url], { NATS_JS_PLACEMENT_TAGS: 'ssd', NATS_PREFIX: 'tagged.' }, tagged.log);
  assert.equal(placed.bus.placement.replicas, 1);
  assert.ok(tagged.lines.some((l) => l.level === 40 && /not clustered: NATS_JS_PLACEMENT_CLUSTER and NATS_JS_PLACEMENT_TAGS do not apply/.test(String(l.msg))), 'warned');
});

test('NATS_PUBLISH_ACK_TIMEOUT_MS: with the stream leader frozen, an acked publish fails within the timeout, not 5 s', async () => {
  const nc = await connect({ servers: cluster.urls });
  try {
    const probe = await node(cluster.urls, { NATS_PREFIX: 'ack.', HISTORY_SUBJECTS: 'h.>' });
    const jsm = await jetstreamManager(nc);
    const leader = cluster.byName((await jsm.streams.info(probe.bus.historyStream)).cluster!.leader!);
    const gw = await node(cluster.urls.filter((u) => u !== leader.url), { NATS_PREFIX: 'ack.', HISTORY_SUBJECTS: 'h.>', NATS_PUBLISH_ACK_TIMEOUT_MS: '500' });
    const c = await TestClient.connect(gw);
    assert.equal((await c.call({ op: 'pub', subject: 'h.x', text: 'stored', id: 'p0' })).op, 'ok');
    leader.signal('SIGSTOP');
    try {
      const t0 = Date.now();
      const r = await c.call({ op: 'pub', subject: 'h.x', text: 'during election', id: 'p1' });
      const ms = Date.now() - t0;
      console.log(`acked publish with the leader frozen: ${r.op} ${String(r.code)} after ${ms} ms`);
      assert.equal(r.op, 'error');
      assert.equal(r.code, 'unconfirmed');
      assert.ok(ms >= 400 && ms < 2500, `answered after ${ms} ms`);
    } finally {
      c.close();
      await restore(leader);
    }
  } finally {
    await nc.close();
  }
});
