// A hub cluster (three servers, JetStream domain "hub") and a leafnode with a JetStream domain of
// its own ("leaf"): with NATS_JS_DOMAIN=hub on every node, the hub's domain owns history and
// presence, so a message published on the leaf's node has one sequence everywhere, a client
// resuming on either side gets the same messages with the same sequences, and sessions on the
// leaf's node are listed and reachable from the hub's. A node on the leaf without the setting keeps
// a history of its own (diverging sequences), and its log line says which domain it uses. A
// domain no server serves is named, with its setting, in the startup failure and the warnings.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import { Gateway, NatsUnavailableError } from '../src/gateway/gateway.ts';
import { loadConfig } from '../src/config/load.ts';
import type { NatsBus } from '../src/bus/nats-bus.ts';
import type { Logger } from '../src/observability/logger.ts';
import { TestClient, bounded, unb64 } from './helpers.ts';
import { startCluster, startLeaf, leafConnected, captureLog } from './nats-cluster-helpers.ts';

const hub = await startCluster({ name: 'hubc', domain: 'hub', leafListen: true });
after(() => hub.stop());
const leaf = await startLeaf({ name: 'leaf1', domain: 'leaf', hubLeafUrls: hub.servers.map((s) => `nats-leaf://127.0.0.1:${s.leafPort}`) });
after(() => leaf.stop());
await hub.jetstreamReady();
await leafConnected(leaf);

const TOKEN = 'domains-admin';

async function node(url: string, settings: Record<string, string>, log?: Logger): Promise<Gateway & { bus: NatsBus }> {
  const config = loadConfig({ flags: { MODE: 'server', LISTEN: '127.0.0.1:0', NATS_URL: url, HISTORY_SUBJECTS: 'dom.>', ADMIN_TOKEN: TOKEN, PRESENCE_TTL_SEC: '5', ...settings }, env: {} });
  const gw = await Gateway.start(config, log ? { log } : {});
  after(() => gw.shutdown());
  return gw as Gateway & { bus: NatsBus };
}

const placedDomain = (lines: Array<Record<string, unknown>>) => lines.find((l) => l.msg === 'JetStream state (history stream, presence bucket) placed')?.domain;
const api = (gw: Gateway, path: string, init: RequestInit = {}) => fetch(gw.server!.url.replace('ws://', 'http://').replace(/\/ws$/, path), { ...init, headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' } });

/** Publishes with an ack until JetStream stores it (the leafnode's interest may still be on its way). */
async function store(c: TestClient, subject: string, text: string): Promise<void> {
  await bounded((async () => {
    for (let i = 0; ; i++) {
      const r = await c.call({ op: 'pub', subject, text, id: `${text}-${i}` });
      if (r.op === 'ok') return;
    }
  })(), `storing ${text}`, 20_000);
}

test('NATS_JS_DOMAIN=hub on the hub and on the leaf: one history (same seq everywhere, resume across the edge), one presence', async () => {
  const h = captureLog();
  const l = captureLog();
  const onHub = await node(hub.urls.join(','), { NATS_JS_DOMAIN: 'hub' }, h.log);
  const onLeaf = await node(leaf.url, { NATS_JS_DOMAIN: 'hub' }, l.log);
  assert.equal(placedDomain(h.lines), 'hub');
  assert.equal(placedDomain(l.lines), 'hub', 'the leaf\'s node keeps its state in the hub\'s domain');
  assert.equal(onLeaf.bus.placement.replicas, 3, 'the hub cluster places 3 replicas, though the leaf is one server');

  const subHub = await TestClient.connect(onHub);
  const subLeaf = await TestClient.connect(onLeaf);
  const pubLeaf = await TestClient.connect(onLeaf);
  const pubHub = await TestClient.connect(onHub);
  try {
    await subHub.call({ op: 'sub', subject: 'dom.>', id: 's' });
    await subLeaf.call({ op: 'sub', subject: 'dom.>', id: 's' });
    await store(pubLeaf, 'dom.a', 'from-leaf');
    await store(pubHub, 'dom.b', 'from-hub');
    const seen = async (c: TestClient) => {
      const out = new Map<string, number>();
      while (out.size < 2) {
        const f = await c.next((x) => typeof x.subject === 'string' && x.subject.startsWith('dom.'), 15_000);
        out.set(unb64(f.body).replace(/-\d+$/, ''), f.seq as number);
      }
      return out;
    };
    const atHub = await seen(subHub);
    const atLeaf = await seen(subLeaf);
    assert.deepEqual([...atLeaf].sort(), [...atHub].sort(), 'the same message has the same seq on both sides');

    // Resume on the leaf's node from before the hub's message: exactly it, with its seq.
    const since = atHub.get('from-leaf')!;
    const resumer = await TestClient.connect(onLeaf);
    resumer.send({ op: 'sub', subject: 'dom.>', since, id: 'r' });
    const replayed = await resumer.next((f) => f.subject === 'dom.b', 15_000);
    assert.equal(replayed.seq, atHub.get('from-hub'));
    assert.equal((await resumer.next((f) => f.id === 'r' && f.op === 'ok', 15_000)).op, 'ok');
    resumer.close();

    // One stream, in the hub's domain; the leaf's own domain holds none.
    const nc = await connect({ servers: leaf.url });
    try {
      const inHub = await jetstreamManager(nc, { domain: 'hub' });
      assert.equal((await inHub.streams.info(onLeaf.bus.historyStream)).config.num_replicas, 3);
      const inLeaf = await jetstreamManager(nc, { domain: 'leaf' });
      await assert.rejects(inLeaf.streams.info(onLeaf.bus.historyStream), /not found/);
    } finally {
      await nc.close();
    }

    // Presence: the hub's node lists the leaf's session and reaches it.
    const target = subLeaf.welcome.session as string;
    const listed = await bounded((async () => {
      for (;;) {
        const r = (await (await api(onHub, '/api/sessions')).json()) as { sessions: Array<{ id: string; node?: string }> };
        const s = r.sessions.find((x) => x.id === target);
        if (s) return s;
        await new Promise((r2) => setTimeout(r2, 100)); // polling presence, bounded above
      }
    })(), 'the leaf\'s session in the hub\'s list', 15_000);
    assert.equal(listed.node, onLeaf.bus.nodeId);
    const sent = await api(onHub, `/api/sessions/${target}/messages`, { method: 'POST', body: JSON.stringify({ subject: 'note.direct', text: 'across the edge' }) });
    assert.equal(sent.status, 202);
    const direct = await subLeaf.next((f) => f.subject === 'note.direct', 10_000);
    assert.equal(unb64(direct.body), 'across the edge');
  } finally {
    for (const c of [subHub, subLeaf, pubLeaf, pubHub]) c.close();
  }
});

test('without NATS_JS_DOMAIN a node on the leaf uses the leaf\'s own domain (a second history), and its log line says so', async () => {
  const l = captureLog();
  const stray = await node(leaf.url, { NATS_PREFIX: 'stray.' }, l.log);
  assert.equal(placedDomain(l.lines), 'leaf');
  const nc = await connect({ servers: leaf.url });
  try {
    await assert.rejects((await jetstreamManager(nc, { domain: 'hub' })).streams.info(stray.bus.historyStream), /not found/);
    assert.equal((await (await jetstreamManager(nc, { domain: 'leaf' })).streams.info(stray.bus.historyStream)).config.num_replicas, 1);
  } finally {
    await nc.close();
  }
});

test('NATS_JS_API_PREFIX=$JS.hub.API on the leaf reaches the hub\'s JetStream like NATS_JS_DOMAIN=hub', async () => {
  const l = captureLog();
  const viaPrefix = await node(leaf.url, { NATS_JS_API_PREFIX: '$JS.hub.API', NATS_PREFIX: 'pfx.' }, l.log);
  assert.equal(placedDomain(l.lines), 'hub');
  assert.equal(viaPrefix.bus.placement.replicas, 3);
});

test('a NATS_JS_DOMAIN no server serves: history setup fails naming the domain and the setting, presence warns alike', async () => {
  const l = captureLog();
  await assert.rejects(
    node(leaf.url, { NATS_JS_DOMAIN: 'nowhere', NATS_PREFIX: 'nowhere.' }, l.log),
    (e: Error) => e instanceof NatsUnavailableError && /cannot set up history \(HISTORY_SUBJECTS\) in JetStream domain nowhere \(NATS_JS_DOMAIN\): /.test(e.message),
  );
  assert.ok(l.lines.some((x) => x.level === 40 && /JetStream domain nowhere \(NATS_JS_DOMAIN\) did not answer/.test(String(x.msg))), JSON.stringify(l.lines));
  const noHistory = captureLog();
  await node(leaf.url, { NATS_JS_DOMAIN: 'nowhere', NATS_PREFIX: 'nowhere.', HISTORY_SUBJECTS: '' }, noHistory.log);
  assert.ok(noHistory.lines.some((x) => x.level === 40 && /cluster presence unavailable in JetStream domain nowhere \(NATS_JS_DOMAIN\)/.test(String(x.msg))), JSON.stringify(noHistory.lines));
});
