// The live side of history and presence under JetStream trouble: a live consumer that goes away
// is made again within seconds from the next sequence (nothing skipped, nothing twice); listing
// sessions leaves no consumer behind; a node that started without JetStream starts presence once
// JetStream is there.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnCli, TestClient, unb64 } from './helpers.ts';
import { startNats, startNatsWithConfig, freePort } from './nats-helpers.ts';

const TOKEN = 'live-admin';
async function node(natsUrl: string, env: Record<string, string> = {}) {
  const n = await spawnCli(['serve', '--listen', '127.0.0.1:0', '--nats', natsUrl, '--admin-token', TOKEN], { PRESENCE_TTL_SEC: '3', ...env });
  const url = n.match![1]!;
  const http = url.replace('ws://', 'http://').replace(/\/ws$/, '');
  after(async () => {
    if (n.proc.exitCode === null && n.proc.signalCode === null) {
      n.proc.kill('SIGKILL');
      await n.exit;
    }
  });
  return { ...n, url, http };
}
async function until<T>(what: string, f: () => Promise<T | undefined>, ms = 20_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await f().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100)); // polling an external state with a bound
  }
}

test('a live history consumer that goes away is made again from the next sequence: nothing skipped, nothing twice', async () => {
  const nats = await startNats();
  after(() => nats.stop());
  const a = await node(nats.url, { HISTORY_SUBJECTS: 'live.>' });
  const b = await node(nats.url, { HISTORY_SUBJECTS: 'live.>' });
  const reader = await TestClient.connect(a.url);
  await reader.call({ op: 'sub', subject: 'live.>', id: 's' });
  const writer = await TestClient.connect(b.url);
  const { connect } = await import('@nats-io/transport-node');
  const { jetstreamManager } = await import('@nats-io/jetstream');
  const nc = await connect({ servers: nats.url });
  after(() => nc.close());
  const jsm = await jetstreamManager(nc);
  const sent: string[] = [];
  const publish = async (k: number) => {
    for (let i = 0; i < k; i++) {
      const t = `m${sent.length + 1}`;
      assert.equal((await writer.call({ subject: 'live.x', text: t, id: t })).op, 'ok');
      sent.push(t);
    }
  };
  await publish(5);
  // Every live consumer (both nodes') goes away, as when the server holding them restarts.
  for (let round = 0; round < 3; round++) {
    // Both nodes' consumers are there (made again after the previous round).
    const names = await until('a live consumer per node', async () => {
      const n: string[] = [];
      for await (const ci of await jsm.consumers.list('WSBRIDGE_HISTORY')) if (ci.name.startsWith('wsb_live_')) n.push(ci.name);
      return n.length >= 2 ? n : undefined;
    });
    for (const name of names) await jsm.consumers.delete('WSBRIDGE_HISTORY', name);
    await publish(5); // stored while the consumers are being made again
  }
  const got: string[] = [];
  while (got.length < sent.length) {
    const f = await reader.next((x) => x.subject === 'live.x', 15_000);
    got.push(unb64(f.body));
  }
  assert.deepEqual(got, sent, 'in order, none skipped, none twice');
  await writer.call({ subject: 'live.x', text: 'marker', id: 'marker' });
  assert.equal(unb64((await reader.next((x) => x.subject === 'live.x', 15_000)).body), 'marker');
  const m = await (await fetch(`${a.http}/metrics`)).text();
  assert.match(m, /^wsbridge_history_live_consumers_recreated_total [1-9]/m);
  assert.match(m, /^wsbridge_history_live_consumers 1$/m);
  reader.close();
  writer.close();
});

test('listing sessions leaves no consumer on the presence buckets', async () => {
  const nats = await startNats();
  after(() => nats.stop());
  const a = await node(nats.url);
  const c = await TestClient.connect(a.url);
  for (let i = 0; i < 30; i++) {
    const r = await fetch(`${a.http}/api/sessions`, { headers: { authorization: `Bearer ${TOKEN}` } });
    assert.equal(r.status, 200);
    await r.arrayBuffer();
  }
  const { connect } = await import('@nats-io/transport-node');
  const { jetstreamManager } = await import('@nats-io/jetstream');
  const nc = await connect({ servers: nats.url });
  try {
    const jsm = await jetstreamManager(nc);
    for (const stream of ['KV_wsbridge_sessions', 'KV_wsbridge_nodes']) assert.equal((await jsm.streams.info(stream)).state.consumer_count, 0, stream);
  } finally {
    await nc.close();
  }
  c.close();
});

test('a node that started without JetStream starts presence once JetStream is there', async () => {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'wsbridge-nojs-'));
  const conf = join(dir, 'nats.conf');
  writeFileSync(conf, `listen: "127.0.0.1:${port}"\n`);
  let nats = await startNatsWithConfig(port, conf);
  after(() => nats.stop());
  const a = await node(nats.url);
  const readyz = async () => {
    const r = await fetch(`${a.http}/readyz`);
    return { status: r.status, body: (await r.json()) as { checks: Record<string, string> } };
  };
  const r = await until('the missing JetStream to show', async () => {
    const x = await readyz();
    return x.status === 503 ? x : undefined;
  });
  assert.notEqual(r.body.checks.jetstream, 'ok');
  assert.notEqual(r.body.checks.presence, 'ok');
  const c = await TestClient.connect(a.url);
  const listed = (await (await fetch(`${a.http}/api/sessions`, { headers: { authorization: `Bearer ${TOKEN}` } })).json()) as { partial: boolean };
  assert.equal(listed.partial, true, 'the list says it may be missing other nodes');
  // JetStream arrives (the server restarts with it).
  writeFileSync(conf, `listen: "127.0.0.1:${port}"\njetstream { store_dir: "${join(dir, 'js')}" }\n`);
  await nats.stop();
  nats = await startNatsWithConfig(port, conf);
  await until('ready with presence', async () => ((await readyz()).status === 200 ? true : undefined), 30_000);
  await until('the session listed from presence', async () => {
    const l = (await (await fetch(`${a.http}/api/sessions`, { headers: { authorization: `Bearer ${TOKEN}` } })).json()) as { sessions: Array<{ id: string }>; partial: boolean };
    return !l.partial && l.sessions.some((s) => s.id === c.welcome.session) ? true : undefined;
  });
  c.close();
});
