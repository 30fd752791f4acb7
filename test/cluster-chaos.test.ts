// Chaos with a real nats-server and three node processes, while SDK clients (each given all three
// URLs) publish with acknowledgement and read with resume and with acked delivery: a node is
// SIGKILLed and comes back, the nats-server is frozen (SIGSTOP/SIGCONT), then it comes back on a
// fresh store directory. Every acknowledged publish must reach both readers, except those the
// reset took, and for those the readers must have been told history_lost: never silent loss.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnCli, bounded } from './helpers.ts';
import { startNats, freePort } from './nats-helpers.ts';
import type { NatsServer } from './nats-helpers.ts';
import type { Client, HistoryLost, Message } from '../src/sdk/client.ts';

const natsPort = await freePort();
let nats: NatsServer = await startNats(natsPort);
after(async () => {
  nats.proc.kill('SIGCONT');
  await nats.stop();
});

const SECRET = 'cluster-chaos-secret-of-32-bytes!';
const ENV = { HISTORY_SUBJECTS: 'chaos.>', JWT_SECRET: SECRET, PRESENCE_TTL_SEC: '3', LOG_LEVEL: 'warn' };
const ports = [await freePort(), await freePort(), await freePort()];
const urls = ports.map((p) => `ws://127.0.0.1:${p}/ws`);
type Node = Awaited<ReturnType<typeof spawnCli>>;
const nodes: Node[] = [];
async function start(i: number): Promise<Node> {
  const n = await spawnCli(['serve', '--listen', `127.0.0.1:${ports[i]}`, '--nats', nats.url], ENV);
  nodes[i] = n;
  return n;
}
after(async () => {
  for (const n of nodes) {
    if (n.proc.exitCode === null && n.proc.signalCode === null) {
      n.proc.kill('SIGKILL');
      await n.exit;
    }
  }
});
for (let i = 0; i < 3; i++) await start(i);

const waitFor = (what: string, cond: () => boolean, ms = 60_000) => bounded((async () => { while (!cond()) await new Promise((r) => setTimeout(r, 25)); })(), what, ms);

test('chaos: SIGKILLed node, frozen nats-server, nats-server on a fresh store: no acknowledged publish lost without history_lost', async () => {
  const { connect } = await import('../src/sdk/client.ts');
  const { SignJWT } = await import('jose');
  const token = await new SignJWT({ sub: 'chaos' }).setProtectedHeader({ alg: 'HS256' }).setExpirationTime('10m').sign(new TextEncoder().encode(SECRET));
  const opts = { token, reconnect: { baseMs: 50, maxMs: 500 }, requestTimeoutMs: 3000, onHandlerError: () => {} };
  const clients: Client[] = [];
  after(() => { for (const c of clients) c.close(); });

  // The resuming reader.
  const resumed = new Set<string>();
  const resumeLost: HistoryLost[] = [];
  const reader = connect(urls, { ...opts, onHistoryLost: (l) => resumeLost.push(l) });
  clients.push(reader);
  await reader.ready();
  await reader.subscribe('chaos.>', (m: Message) => { resumed.add(m.text()); }).ready;
  // The acked reader (a durable shared by its sessions, on any node).
  const worked = new Set<string>();
  const ackedLost: HistoryLost[] = [];
  const worker = connect(urls, { ...opts, onHistoryLost: (l) => ackedLost.push(l) });
  clients.push(worker);
  await worker.ready();
  await worker.subscribe('chaos.>', (m: Message) => { worked.add(m.text()); }, { ack: { durable: 'chaos-worker', ackWaitMs: 2000 } }).ready;

  // The publisher: one message at a time, retried with the same id until acknowledged.
  const writer = connect(urls, opts);
  clients.push(writer);
  await writer.ready();
  const acked: Array<{ text: string; at: number }> = [];
  let phase = 'start';
  let running = true;
  let n = 0;
  const publishing = (async () => {
    while (running) {
      const text = `${phase}-${++n}`;
      const id = `pub-${n}`;
      for (let attempt = 0; running; attempt++) {
        try {
          await writer.publishAck('chaos.x', text, { id, timeoutMs: 6000 });
          acked.push({ text, at: Date.now() });
          break;
        } catch {
          await new Promise((r) => setTimeout(r, Math.min(500, 50 * 2 ** attempt))); // retry backoff
        }
      }
    }
  })();
  const progress = async (what: string, count: number) => {
    const target = acked.length + count;
    await waitFor(`${count} more acknowledged publishes (${what})`, () => acked.length >= target);
  };
  // Everything acknowledged so far reaches both readers.
  const allArrive = async (what: string, since = 0) => {
    const due = acked.filter((a) => a.at >= since).map((a) => a.text);
    await waitFor(`every acknowledged publish at the readers (${what})`, () => due.every((t) => resumed.has(t) && worked.has(t))).catch((e: Error) => {
      throw new Error(`${e.message}; missing resumed: ${due.filter((t) => !resumed.has(t)).join(',')}; worked: ${due.filter((t) => !worked.has(t)).join(',')}; lost: ${JSON.stringify([resumeLost, ackedLost])}\n${nodes.map((x) => x.output().slice(-4000)).join('\n----\n')}`);
    });
  };

  await progress('warm-up', 20);

  // 1. The node each client is on is killed in turn, and comes back.
  phase = 'kill';
  for (const i of [0, 1, 2]) {
    nodes[i]!.proc.kill('SIGKILL');
    await nodes[i]!.exit;
    await progress(`node ${i} down`, 10);
    await start(i);
    await progress(`node ${i} back`, 10);
  }
  await allArrive('after the SIGKILLs');
  assert.equal(resumeLost.length + ackedLost.length, 0, 'nothing was lost: no history_lost');

  // 2. The nats-server freezes for a while, then thaws.
  phase = 'freeze';
  nats.proc.kill('SIGSTOP');
  await new Promise((r) => setTimeout(r, 3000)); // the outage itself: a fixed length of frozen time
  nats.proc.kill('SIGCONT');
  await progress('after the freeze', 20);
  await allArrive('after the freeze');
  assert.equal(resumeLost.length + ackedLost.length, 0, 'nothing was lost: no history_lost');

  // 3. The nats-server comes back without its state: what was stored is gone, and readers are told.
  phase = 'reset';
  await nats.stop();
  // Acknowledged from here on: stored in the new stream (the old server is gone). Before it, an
  // acknowledged message may have been stored in the old one and lost with it: history_lost says so.
  const resetAt = Date.now();
  nats = await startNats(natsPort, mkdtempSync(join(tmpdir(), 'wsbridge-chaos-fresh-')));
  await progress('after the reset', 30);
  running = false;
  await publishing;
  await waitFor('history_lost at the resuming reader', () => resumeLost.some((l) => l.reason === 'epoch'));
  await waitFor('history_lost at the acked reader', () => ackedLost.some((l) => l.reason === 'epoch'));
  // Published after the new stream began: all of it arrives.
  const afterReset = acked.filter((a) => a.at > resetAt);
  assert.ok(afterReset.length >= 30);
  await allArrive('after the reset', resetAt + 1);
});
