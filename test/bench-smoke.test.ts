// The peers benchmark's harness, run for a few seconds with tiny counts: every system starts,
// every scenario completes, and the report holds a figure for each. Not a speed test: it only
// keeps `npm run bench` from rotting.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT } from './helpers.ts';
import { spawn } from 'node:child_process';
import type { Results } from '../bench/peers/report.ts';

test('bench/peers.ts --smoke runs every target and scenario and writes its report', async () => {
  const out = mkdtempSync(join(tmpdir(), 'wsbridge-bench-'));
  const proc = spawn(process.execPath, [join(ROOT, 'bench/peers.ts'), '--smoke', '--out', out], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  proc.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const code = await new Promise((r) => proc.once('exit', r));
  assert.equal(code, 0, stderr);
  const r = JSON.parse(readFileSync(join(out, 'peers.json'), 'utf8')) as Results;
  // Bun is a devDependency with a binary for this platform: a missing Bun is a failure here.
  assert.equal(r.skipped, undefined, JSON.stringify(r.skipped));
  assert.match(r.machine.versions.bun ?? '', /^\d+\.\d+/);
  for (const name of ['raw ws', 'raw ws, corked', 'Bun', 'wsbridge', 'Socket.IO', 'NATS (WebSocket)']) {
    const t = r.targets[name]!;
    assert.ok(t.echo_64!.msgs_per_s > 0, `${name} echo`);
    assert.ok(t.echo_4k!.msgs_per_s > 0, `${name} echo 4 KiB`);
    assert.ok(t.paced_64!.p99_us > 0, `${name} echo at half load`);
    assert.ok(t.fanout![0]!.deliveries_per_s > 0, `${name} fan-out`);
    assert.ok(t.fanout![0]!.server_cpu_us_per_delivery > 0, `${name} fan-out CPU`);
    assert.equal(t.idle!.sessions, 50, `${name} idle`);
  }
  for (const name of ['wsbridge, MessagePack protocol', 'wsbridge + echo component (StarlingMonkey)', 'wsbridge + echo component (QuickJS)', 'wsbridge, 2 nodes over NATS']) {
    assert.ok(r.targets[name]!.echo_64!.msgs_per_s > 0, name);
  }
  const md = readFileSync(join(out, 'peers.md'), 'utf8');
  // Six systems, then wsbridge's ratio to each of the five others.
  assert.match(md, /\| scenario \| wsbridge \| raw ws, corked \| Bun \| raw ws \| Socket\.IO \| NATS \(WebSocket\) \| wsbridge \/ raw ws, corked \| wsbridge \/ Bun \|/);
  assert.match(md, /\| echo 64 B, msgs\/s \|( [\d,]+ \|){6}( [\d.]+× \|){5}$/m);
  assert.match(md, /\| fan-out to 20, server CPU µs\/delivery \|( [\d.]+ \|){6}( [\d.]+× \|){5}$/m);
  // The targets are checked in every run, against the peers they name.
  assert.match(md, /^- [✅❌] fan-out to 20, server CPU per delivery ≤ 1\.0× raw ws, corked: /m);
  assert.match(md, /^- [✅❌] fan-out to 20, server CPU per delivery ≤ 1\.3× Bun: /m);
  assert.match(md, /^- [✅❌] memory per idle session ≤ 1\.1× raw ws, RSS: /m);
  assert.match(md, /^- [✅❌] memory per idle session ≤ 1\.1× raw ws, JS heap: /m);
  for (const svg of ['echo-latency.svg', 'fanout.svg', 'fanout-cpu.svg', 'idle-memory.svg']) {
    assert.ok(existsSync(join(out, svg)));
    const text = readFileSync(join(out, svg), 'utf8');
    assert.match(text, /^<svg [^>]*>[\s\S]*<\/svg>$/);
    for (const name of ['wsbridge', 'raw ws, corked', 'Bun']) assert.ok(text.includes(`>${name}</text>`), `${svg} shows ${name}`);
  }
});
