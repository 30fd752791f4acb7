// Self-healing and honest readiness with real nats-server processes: a frozen server (SIGSTOP)
// makes /readyz fail within seconds; a server that comes back without its JetStream state (a
// fresh store directory) gets its history stream and presence buckets made again by the running
// nodes, and every history subscriber is told history_lost instead of silence; nodes whose
// history configurations differ are found out, logged at error and not ready.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnCli, TestClient, unb64, bounded } from './helpers.ts';
import { startNats, freePort } from './nats-helpers.ts';
import type { NatsServer } from './nats-helpers.ts';
import type { Message } from '../src/sdk/client.ts';

const port = await freePort();
let nats: NatsServer = await startNats(port);
after(async () => {
  if (nats.proc.signalCode === null && nats.proc.exitCode === null) nats.proc.kill('SIGCONT');
  await nats.stop();
});

const TOKEN = 'heal-admin';
const ENV = { HISTORY_SUBJECTS: 'heal.>', PRESENCE_TTL_SEC: '2' };
async function node(env: Record<string, string> = ENV) {
  const n = await spawnCli(['serve', '--listen', '127.0.0.1:0', '--nats', nats.url, '--admin-token', TOKEN], env);
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
const readyz = async (http: string) => {
  const r = await fetch(`${http}/readyz`, { signal: AbortSignal.timeout(5000) });
  return { status: r.status, body: (await r.json()) as { status: string; nats: string; checks: Record<string, string> } };
};
async function until<T>(what: string, f: () => Promise<T | undefined>, ms = 20_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await f().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100)); // polling an external state with a bound
  }
}

const a = await node();
const b = await node();

test('a frozen nats-server (SIGSTOP) fails /readyz within seconds; SIGCONT brings it back', async () => {
  assert.equal((await readyz(a.http)).status, 200);
  assert.deepEqual((await readyz(a.http)).body.checks, { nats: 'ok', jetstream: 'ok', history: 'ok', presence: 'ok' });
  nats.proc.kill('SIGSTOP');
  const t0 = Date.now();
  try {
    const r = await until('/readyz to fail', async () => {
      const x = await readyz(a.http);
      return x.status === 503 ? x : undefined;
    });
    assert.ok(Date.now() - t0 < 5000, `noticed in ${Date.now() - t0} ms`);
    assert.match(r.body.checks.nats!, /not responding/);
  } finally {
    nats.proc.kill('SIGCONT');
  }
  await until('/readyz after SIGCONT', async () => ((await readyz(a.http)).status === 200 ? true : undefined));
});

test('idempotent publish: the id is the JetStream message id, scoped by principal; a timeout says unconfirmed, and the retry is stored once', async () => {
  const reader = await TestClient.connect(b.url);
  await reader.call({ op: 'sub', subject: 'heal.>', id: 's' });
  const w = await TestClient.connect(a.url);
  const first = await w.call({ subject: 'heal.idem', text: 'once', id: 'order-1' });
  assert.equal(first.op, 'ok');
  assert.equal(typeof first.seq, 'number');
  const again = await w.call({ subject: 'heal.idem', text: 'once', id: 'order-1' });
  assert.deepEqual([again.op, again.seq, again.duplicate], ['ok', first.seq, true]);
  // Another principal (another anonymous session) with the same id is not suppressed.
  const other = await TestClient.connect(a.url);
  const theirs = await other.call({ subject: 'heal.idem', text: 'theirs', id: 'order-1' });
  assert.equal(theirs.op, 'ok');
  assert.equal(theirs.duplicate, undefined);
  assert.ok((theirs.seq as number) > (first.seq as number));
  await reader.next((f) => f.subject === 'heal.idem' && unb64(f.body) === 'theirs');
  assert.equal(reader.frames.filter((f) => f.subject === 'heal.idem').map((f) => unb64(f.body)).join(','), 'once', 'the duplicate was not delivered');

  // A frozen server: the publish gets no acknowledgement. It may be stored: "unconfirmed", not "not stored".
  nats.proc.kill('SIGSTOP');
  let resumed = false;
  try {
    const t0 = Date.now();
    w.send({ subject: 'heal.idem', text: 'maybe', id: 'order-2' });
    w.send({ subject: 'plain.subject', text: 'maybe', id: 'plain-1' });
    const plain = await w.next((f) => f.id === 'plain-1', 5000);
    assert.deepEqual([plain.op, plain.code], ['error', 'unconfirmed']);
    assert.ok(Date.now() - t0 < 3000, `a plain publish is unconfirmed within about a second (${Date.now() - t0} ms)`);
    const stored = await w.next((f) => f.id === 'order-2', 10_000);
    assert.deepEqual([stored.op, stored.code], ['error', 'unconfirmed']);
    assert.match(String(stored.message), /same id is safe/);
    nats.proc.kill('SIGCONT');
    resumed = true;
    // It was stored once the server woke up: the retry with the same id is a duplicate, delivered once.
    const retry = await until('the retry to be answered', async () => {
      const r = await w.call({ subject: 'heal.idem', text: 'maybe', id: 'order-2' });
      return r.op === 'ok' ? r : undefined;
    });
    assert.equal(retry.duplicate, true);
    await reader.next((f) => f.subject === 'heal.idem' && unb64(f.body) === 'maybe');
    await w.call({ subject: 'heal.idem', text: 'marker', id: 'order-3' });
    await reader.next((f) => f.subject === 'heal.idem' && unb64(f.body) === 'marker');
    assert.equal(reader.frames.filter((f) => f.subject === 'heal.idem' && unb64(f.body) === 'maybe').length, 0, 'stored and delivered once');
  } finally {
    if (!resumed) nats.proc.kill('SIGCONT');
  }
  const m = await (await fetch(`${a.http}/metrics`)).text();
  assert.match(m, /^wsbridge_history_publish_timeouts_total [1-9]/m);
  for (const c of [reader, w, other]) c.close();
  await until('/readyz after SIGCONT', async () => ((await readyz(a.http)).status === 200 ? true : undefined));
});

test('outages: every remote operation fails within about a second with a specific code; broadcast reports partial reach', async () => {
  const api = (path: string, init: RequestInit = {}) => fetch(a.http + path, { ...init, headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' }, signal: AbortSignal.timeout(10_000) });
  const onB = await TestClient.connect(b.url);
  await until('the session on B in presence', async () => {
    const l = (await (await api('/api/sessions')).json()) as { sessions: Array<{ id: string }> };
    return l.sessions.some((x) => x.id === onB.welcome.session) ? true : undefined;
  });
  const local = await TestClient.connect(a.url);
  const timed = async <T>(f: () => Promise<T>): Promise<[T, number]> => {
    const t0 = Date.now();
    const v = await f();
    return [v, Date.now() - t0];
  };
  const check = async (phase: string, remoteCodes: string[]) => {
    const [msg, t1] = await timed(() => api(`/api/sessions/${onB.welcome.session}/messages`, { method: 'POST', body: JSON.stringify({ subject: 'd', text: 'x' }) }));
    assert.equal(msg.status, 503, phase);
    // Frozen NATS: presence_unavailable when the presence read times out, node_unreachable when
    // presence answered (docs/protocol.md, Outages) but the node holding the session does not.
    const code = ((await msg.json()) as { error: { code: string } }).error.code;
    assert.ok(remoteCodes.includes(code), `${phase}: ${code}`);
    assert.ok(t1 < 2500, `${phase}: send-to-session answered in ${t1} ms`);
    const [del, t2] = await timed(() => api(`/api/sessions/${onB.welcome.session}`, { method: 'DELETE' }));
    assert.equal(del.status, 503, phase);
    assert.ok(t2 < 2500, `${phase}: close answered in ${t2} ms`);
    const [bc, t3] = await timed(async () => (await (await api('/api/broadcast', { method: 'POST', body: JSON.stringify({ subject: 'all', text: 'x' }) })).json()) as { partial: boolean; sessions: number });
    assert.equal(bc.partial, true, phase);
    assert.ok(t3 < 2500, `${phase}: broadcast answered in ${t3} ms`);
    const list = (await (await api('/api/sessions')).json()) as { partial: boolean };
    assert.equal(list.partial, true, phase);
    for (const [frame, what] of [
      [{ op: 'sub', subject: 'heal.>', since: 1, id: `r-${phase}` }, 'resume'],
      [{ op: 'sub', subject: 'heal.>', ack: true, durable: 'outage', id: `k-${phase}` }, 'acked sub'],
    ] as const) {
      const [r, t] = await timed(() => local.call(frame));
      assert.deepEqual([r.op, r.code], ['error', 'bus_unavailable'], `${phase}: ${what}`);
      assert.ok(t < 2500, `${phase}: ${what} failed in ${t} ms`);
    }
  };
  // NATS gone: nothing remote can be known.
  await nats.stop();
  try {
    await until('A to notice', async () => ((await readyz(a.http)).body.nats === 'disconnected' ? true : undefined));
    await check('nats down', ['bus_unavailable']);
    assert.equal((await local.call({ subject: 'heal.x', text: 'x', id: 'p' })).code, 'bus_unavailable', 'a history publish is known not stored');
  } finally {
    await nats.restart();
  }
  await until('ready again', async () => ((await readyz(a.http)).status === 200 && (await readyz(b.http)).status === 200 ? true : undefined), 30_000);
  // NATS frozen: the connection looks up, but nothing answers.
  nats.proc.kill('SIGSTOP');
  try {
    await check('nats frozen', ['presence_unavailable', 'node_unreachable']);
  } finally {
    nats.proc.kill('SIGCONT');
  }
  await until('ready after SIGCONT', async () => ((await readyz(a.http)).status === 200 ? true : undefined));
  local.close();
  onB.close();
});

test('nats-server back on a fresh store: stream and buckets made again, subscribers told history_lost, acked and resumed delivery go on', async () => {
  const { connect } = await import('../src/sdk/client.ts');
  // Before: a raw subscriber on A with its position, an SDK acked subscriber on B, a session on B.
  const raw = await TestClient.connect(a.url);
  const pos = await raw.call({ op: 'sub', subject: 'heal.>', id: 's' });
  const sdk = connect(b.url, { reconnect: { baseMs: 50, maxMs: 300 } });
  await sdk.ready();
  const acked: string[] = [];
  const sub = sdk.subscribe('heal.>', (m: Message) => { acked.push(m.text()); }, { ack: { durable: 'heal-worker', ackWaitMs: 2000 } });
  await sub.ready;
  const w = await TestClient.connect(a.url);
  assert.equal((await w.call({ subject: 'heal.x', text: 'before', id: 'b1' })).op, 'ok');
  await raw.next((f) => f.subject === 'heal.x');
  await until('the acked subscriber to get "before"', async () => (acked.includes('before') ? true : undefined));
  w.close();

  // The server goes and comes back with nothing: no stream, no buckets, no durables.
  await nats.stop();
  nats = await startNats(port, mkdtempSync(join(tmpdir(), 'wsbridge-fresh-')));
  await until('both nodes ready again', async () => ((await readyz(a.http)).status === 200 && (await readyz(b.http)).status === 200 ? true : undefined), 30_000);

  // The live subscriber hears that the stream is another one.
  const lost = await raw.next((f) => f.op === 'history_lost', 10_000);
  assert.equal(lost.reason, 'epoch');
  assert.notEqual(lost.epoch, pos.epoch);
  // History works again, live, to the old subscriber and to the acked one (its durable made again).
  const w2 = await until('a stored publish after the reset', async () => {
    const c = await TestClient.connect(a.url);
    const r = await c.call({ subject: 'heal.x', text: 'after', id: 'a1' });
    if (r.op === 'ok') return c;
    c.close();
    return undefined;
  });
  assert.equal(unb64((await raw.next((f) => f.subject === 'heal.x', 10_000)).body), 'after');
  await until('the acked subscriber to get "after"', async () => (acked.includes('after') ? true : undefined), 30_000);
  // A client resuming with the old position and epoch is told, and gets what the new stream holds.
  const back = await TestClient.connect(b.url);
  back.send({ op: 'sub', subject: 'heal.>', since: pos.seq, epoch: pos.epoch, id: 'r' });
  assert.equal((await back.next((f) => f.op === 'history_lost')).reason, 'epoch');
  await back.next((f) => f.op === 'ok' && f.id === 'r');
  assert.ok(back.frames.some((f) => f.subject === 'heal.x' && unb64(f.body) === 'after'));
  // Presence: both nodes' sessions are listed again.
  await until('presence rebuilt', async () => {
    const r = await fetch(`${a.http}/api/sessions`, { headers: { authorization: `Bearer ${TOKEN}` } });
    const l = (await r.json()) as { sessions: Array<{ id: string }>; partial: boolean };
    return !l.partial && l.sessions.some((s) => s.id === back.welcome.session) && l.sessions.some((s) => s.id === raw.welcome.session) ? true : undefined;
  }, 45_000); // seen once past 20 s in a clean-clone CI run on this 2-core machine (not root-caused)
  const metrics = await (await fetch(`${a.http}/metrics`)).text();
  assert.match(metrics, /^wsbridge_history_epoch_changes_total [1-9]/m);
  for (const c of [raw, w2, back]) c.close();
  sdk.close();
});

test('nodes with different history configurations: the odd one is not ready and says why at error; the stream is not overwritten', async () => {
  const odd = await node({ HISTORY_SUBJECTS: 'heal.>,other.>', PRESENCE_TTL_SEC: '2' });
  const r = await until('the odd node to report the mismatch', async () => {
    const x = await readyz(odd.http);
    return x.status === 503 && /differs/.test(x.body.checks.history ?? '') ? x : undefined;
  });
  assert.match(r.body.checks.history!, /HISTORY_SUBJECTS=heal\.>,other\.>/);
  assert.match(odd.output(), /"level":50[^\n]*history configuration differs/);
  assert.equal((await readyz(a.http)).status, 200, 'the nodes that agree with the stream stay ready');
  const { connect } = await import('@nats-io/transport-node');
  const { jetstreamManager } = await import('@nats-io/jetstream');
  const nc = await connect({ servers: nats.url });
  try {
    assert.deepEqual((await (await jetstreamManager(nc)).streams.info('WSBRIDGE_HISTORY')).config.subjects, ['heal.>']);
  } finally {
    await nc.close();
  }
  odd.proc.kill('SIGTERM');
  await odd.exit;
});

test('with no live node on the old configuration, a node with a new one changes the stream (a whole-cluster restart)', async () => {
  for (const n of [a, b]) {
    n.proc.kill('SIGTERM');
    await n.exit;
  }
  const next = await node({ HISTORY_SUBJECTS: 'heal.>,other.>', PRESENCE_TTL_SEC: '2' });
  await until('the new node ready', async () => ((await readyz(next.http)).status === 200 ? true : undefined));
  assert.match(next.output(), /history stream reconfigured/);
  const { connect } = await import('@nats-io/transport-node');
  const { jetstreamManager } = await import('@nats-io/jetstream');
  const nc = await connect({ servers: nats.url });
  try {
    assert.deepEqual((await (await jetstreamManager(nc)).streams.info('WSBRIDGE_HISTORY')).config.subjects, ['heal.>', 'other.>']);
  } finally {
    await nc.close();
  }
});
