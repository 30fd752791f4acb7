// Cluster presence at scale and operations that another node answers: per-session entries (no
// value that grows with sessions), node identity, write failures counted and logged, sends and
// closes that are confirmed by the node holding the session (404 for a SIGKILLed node's sessions,
// 503 for a frozen node's), broadcasts that report their reach.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { spawnCli, TestClient, unb64 } from './helpers.ts';
import { startNats } from './nats-helpers.ts';

const nats = await startNats();
after(() => nats.stop());

const TOKEN = 'presence-admin';
async function node(extra: Record<string, string> = {}) {
  const n = await spawnCli(['serve', '--listen', '127.0.0.1:0', '--nats', nats.url, '--admin-token', TOKEN], { PRESENCE_TTL_SEC: '3', ...extra });
  const url = n.match![1]!;
  const http = url.replace('ws://', 'http://').replace(/\/ws$/, '');
  after(async () => {
    if (n.proc.signalCode === 'SIGSTOP' || n.proc.exitCode === null) n.proc.kill('SIGCONT');
    if (n.proc.exitCode === null && n.proc.signalCode === null) {
      n.proc.kill('SIGKILL');
      await n.exit;
    }
  });
  return { ...n, url, http };
}
const api = (base: string, path: string, init: RequestInit = {}) => fetch(base + path, { ...init, headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' }, signal: AbortSignal.timeout(10_000) });
const json = async <T>(r: Response | Promise<Response>): Promise<T> => (await (await r).json()) as T;

async function until<T>(what: string, f: () => Promise<T | undefined>, ms = 15_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100)); // polling external state (presence, NATS) with a bound
  }
}

interface Listed { sessions: Array<{ id: string; node: string; subscriptions: string[] }>; nodes: Array<{ node: string; host: string; listen: string; started_at: string; pid: number }> | null; partial: boolean }

async function kvEntries(bucket: string): Promise<Map<string, Uint8Array>> {
  const { connect } = await import('@nats-io/transport-node');
  const { jetstream } = await import('@nats-io/jetstream');
  const { Kvm } = await import('@nats-io/kv');
  const nc = await connect({ servers: nats.url });
  try {
    const kv = await new Kvm(jetstream(nc)).open(bucket);
    const out = new Map<string, Uint8Array>();
    for await (const k of await kv.keys()) {
      const e = await kv.get(k);
      if (e && e.operation === 'PUT') out.set(k, e.value);
    }
    return out;
  } finally {
    await nc.close();
  }
}

/** Opens `n` raw sessions (welcome read), 200 at a time. */
async function openMany(url: string, n: number): Promise<Array<{ ws: WebSocket; id: string }>> {
  const out: Array<{ ws: WebSocket; id: string }> = [];
  for (let i = 0; i < n; i += 200) {
    out.push(...(await Promise.all(Array.from({ length: Math.min(200, n - i) }, () => new Promise<{ ws: WebSocket; id: string }>((resolve, reject) => {
      const ws = new WebSocket(url);
      ws.once('error', reject);
      ws.once('message', (d) => resolve({ ws, id: (JSON.parse(d.toString()) as { session: string }).session }));
    })))));
  }
  return out;
}

const a = await node();
const b = await node();

test('presence: one small entry per session, a node entry an operator can read, incremental updates', async () => {
  const onA = await TestClient.connect(a.url);
  const onB = await TestClient.connect(b.url);
  await onB.call({ op: 'sub', subject: 'room.1', id: 's' });
  const listed = await until('both sessions in presence', async () => {
    const l = await json<Listed>(api(a.http, '/api/sessions'));
    const mine = l.sessions.find((s) => s.id === onB.welcome.session);
    return mine && mine.subscriptions.includes('room.1') && l.sessions.some((s) => s.id === onA.welcome.session) ? l : undefined;
  });
  assert.equal(listed.partial, false);
  const nodes = listed.nodes!;
  assert.equal(nodes.length, 2);
  for (const n of nodes) {
    assert.equal(typeof n.host, 'string');
    assert.ok(n.host.length > 0);
    assert.match(n.listen, /^ws:\/\/127\.0\.0\.1:\d+\/ws$/);
    assert.ok(!Number.isNaN(Date.parse(n.started_at)));
    assert.equal(typeof n.pid, 'number');
  }
  assert.deepEqual(new Set(nodes.map((n) => n.listen)), new Set([a.url, b.url]));
  assert.deepEqual((await json<{ nodes: Array<{ node: string }> }>(api(b.http, '/api/nodes'))).nodes.map((n) => n.node).sort(), nodes.map((n) => n.node).sort());
  // In the bucket: one entry per session (keyed by its id), one per node.
  const sessions = await kvEntries('wsbridge_sessions');
  assert.ok(sessions.has(String(onA.welcome.session)) && sessions.has(String(onB.welcome.session)));
  for (const v of sessions.values()) assert.ok(v.length < 4096, `a session entry is small (${v.length} bytes)`);
  assert.equal((await kvEntries('wsbridge_nodes')).size, 2);
  // A session that closes leaves its entry (purged: no tombstone), and the list, at once.
  onB.close();
  await onB.closed;
  await until('the closed session to leave the bucket', async () => ((await kvEntries('wsbridge_sessions')).has(String(onB.welcome.session)) ? undefined : true));
  assert.ok(!(await json<Listed>(api(a.http, '/api/sessions'))).sessions.some((s) => s.id === onB.welcome.session));
  onA.close();
});

test('presence past the old 1 MiB ceiling: 4,000 sessions on one node are listed and reachable from another', async () => {
  const many = await openMany(b.url, 4000);
  try {
    const listed = await until('4,000 sessions listed from the other node', async () => {
      const l = await json<Listed>(api(a.http, '/api/sessions'));
      return l.sessions.filter((s) => s.node !== undefined).length >= 4000 ? l : undefined;
    }, 60_000);
    const ids = new Set(listed.sessions.map((s) => s.id));
    assert.ok(many.every((m) => ids.has(m.id)), 'every session listed');
    // Send-to-session from node A to the last session opened on B.
    const target = many[many.length - 1]!;
    const got = new Promise<string>((resolve) => target.ws.on('message', (d) => {
      const f = JSON.parse(d.toString()) as { subject?: string; body?: string };
      if (f.subject === 'direct') resolve(unb64(f.body));
    }));
    const sent = await api(a.http, `/api/sessions/${target.id}/messages`, { method: 'POST', body: JSON.stringify({ subject: 'direct', text: 'found you' }) });
    assert.equal(sent.status, 202);
    assert.deepEqual(await sent.json(), { delivered: 1 });
    assert.equal(await got, 'found you');
  } finally {
    for (const m of many) m.ws.terminate();
  }
  await until('the 4,000 sessions to leave presence', async () => ((await json<Listed>(api(a.http, '/api/sessions'))).sessions.length < 100 ? true : undefined), 60_000);
});

test('a failing presence write is counted in a metric, logged at warn, and retried', async () => {
  const { connect } = await import('@nats-io/transport-node');
  const { jetstreamManager } = await import('@nats-io/jetstream');
  const nc = await connect({ servers: nats.url });
  const jsm = await jetstreamManager(nc);
  const before = (await jsm.streams.info('KV_wsbridge_sessions')).config;
  const failures = async () => Number(/^wsbridge_presence_write_failures_total (\d+)/m.exec(await (await fetch(`${a.http}/metrics`)).text())?.[1] ?? 'NaN');
  const start = await failures();
  assert.equal(start, 0);
  // Entries can no longer be stored: any write fails.
  await jsm.streams.update('KV_wsbridge_sessions', { ...before, max_msg_size: 16 });
  const c = await TestClient.connect(a.url);
  try {
    await until('the failure to be counted', async () => ((await failures()) > start ? true : undefined));
    assert.match(a.output(), /"level":40[^\n]*presence write failed/, 'logged at warn');
    await jsm.streams.update('KV_wsbridge_sessions', before);
    // The heartbeat retries: the session appears once writes work again.
    await until('the retried write', async () => ((await kvEntries('wsbridge_sessions')).has(String(c.welcome.session)) ? true : undefined));
  } finally {
    await jsm.streams.update('KV_wsbridge_sessions', before).catch(() => {});
    c.close();
    await nc.close();
  }
});

test('send-to-session and close are confirmed by the node holding the session: 404 for a SIGKILLed node, 503 for a frozen one', async () => {
  const c = await node();
  const onC = await TestClient.connect(c.url);
  await until('the new session in presence', async () => ((await json<Listed>(api(a.http, '/api/sessions'))).sessions.some((s) => s.id === onC.welcome.session) ? true : undefined));
  // Frozen (SIGSTOP): the answer is unknown → 503 node_unreachable within about a second.
  c.proc.kill('SIGSTOP');
  try {
    const t0 = Date.now();
    const r = await api(a.http, `/api/sessions/${onC.welcome.session}/messages`, { method: 'POST', body: JSON.stringify({ subject: 'direct', text: 'x' }) });
    assert.equal(r.status, 503);
    assert.equal((await json<{ error: { code: string } }>(r)).error.code, 'node_unreachable');
    assert.ok(Date.now() - t0 < 3000, `failed fast (${Date.now() - t0} ms)`);
    const del = await api(a.http, `/api/sessions/${onC.welcome.session}`, { method: 'DELETE' });
    assert.equal(del.status, 503);
    // A broadcast says it did not reach the frozen node.
    const bc = await json<{ sessions: number; nodes: { reached: number; expected: number }; unreached: string[]; partial: boolean }>(api(a.http, '/api/broadcast', { method: 'POST', body: JSON.stringify({ subject: 'all', text: 'hello' }) }));
    assert.equal(bc.partial, true);
    assert.equal(bc.nodes.expected, 3);
    assert.equal(bc.nodes.reached, 2);
    assert.equal(bc.unreached.length, 1);
  } finally {
    c.proc.kill('SIGCONT');
  }
  // Killed (SIGKILL): at once, well within the presence TTL, its sessions are not found; never "delivered".
  c.proc.kill('SIGKILL');
  await c.exit;
  const r = await api(a.http, `/api/sessions/${onC.welcome.session}/messages`, { method: 'POST', body: JSON.stringify({ subject: 'direct', text: 'x' }) });
  assert.equal(r.status, 404);
  assert.equal((await api(a.http, `/api/sessions/${onC.welcome.session}`, { method: 'DELETE' })).status, 404);
  const m = await (await fetch(`${a.http}/metrics`)).text();
  assert.match(m, /^wsbridge_node_requests_total\{op="send",result="node_unreachable"\} 1$/m);
  assert.match(m, /^wsbridge_node_requests_total\{op="send",result="not_found"\} [1-9]/m);
  assert.match(m, /^wsbridge_node_requests_total\{op="broadcast",result="partial"\} 1$/m);
});

test('a broadcast reports how many sessions on how many nodes it reached', async () => {
  const onA = await TestClient.connect(a.url);
  const onB = await TestClient.connect(b.url);
  await until('both nodes live and the sessions listed', async () => {
    const l = await json<Listed>(api(a.http, '/api/sessions'));
    return l.nodes?.length === 2 && l.sessions.some((s) => s.id === onB.welcome.session) ? true : undefined;
  });
  const r = await api(a.http, '/api/broadcast', { method: 'POST', body: JSON.stringify({ subject: 'all', text: 'everyone' }) });
  assert.equal(r.status, 202);
  const reach = await json<{ sessions: number; nodes: { reached: number; expected: number }; unreached: string[]; partial: boolean }>(r);
  assert.deepEqual(reach.nodes, { reached: 2, expected: 2 });
  assert.equal(reach.partial, false);
  assert.deepEqual(reach.unreached, []);
  assert.ok(reach.sessions >= 2);
  await onA.next((f) => f.subject === 'all');
  await onB.next((f) => f.subject === 'all');
  onA.close();
  onB.close();
});
