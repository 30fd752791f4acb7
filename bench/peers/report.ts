// Turns the peers benchmark's results into the markdown table (every figure, with wsbridge's
// ratio to each baseline), the target checks, and the SVG plots.
import type { EchoResult, FanoutResult, IdleResult, Latency } from './scenarios.ts';
import { barChart, latencyPlot } from './svg.ts';

export interface TargetResults {
  idle?: IdleResult;
  echo_64?: EchoResult;
  echo_4k?: EchoResult;
  paced_64?: Latency & { rate: number; send_lag_p99_us: number };
  fanout?: FanoutResult[];
}
export interface Results {
  date: string;
  machine: { cpu: string; memory_gib: number; os: string; node: string; versions: Record<string, string> };
  config: Record<string, unknown>;
  targets: Record<string, TargetResults>;
  /** Systems that could not run here, with the reason (Bun without its platform binary). */
  skipped?: Record<string, string>;
}

/** The peers wsbridge is compared with, strongest first; each gets a column and a ratio column. */
export const BASELINES = ['raw ws, corked', 'Bun', 'raw ws', 'Socket.IO', 'NATS (WebSocket)'];
const int = (n: number | undefined) => (n === undefined ? '–' : Math.round(n).toLocaleString('en-US'));
const ms = (us: number | undefined) => (us === undefined ? '–' : `${(us / 1000).toFixed(2)}`);
const ratio = (a: number | undefined, b: number | undefined) => (a === undefined || b === undefined || b === 0 ? '–' : `${(a / b).toFixed(2)}×`);

interface Row { label: string; get(t: TargetResults): number | undefined; fmt(v: number | undefined): string; ratios: boolean }

export function report(r: Results): { markdown: string; files: Record<string, string> } {
  const names = Object.keys(r.targets);
  const peers = ['wsbridge', ...BASELINES].filter((n) => names.includes(n));
  const fanNs = r.targets.wsbridge?.fanout?.map((f) => f.subscribers) ?? [];
  const rows: Row[] = [
    { label: 'echo 64 B, msgs/s', get: (t) => t.echo_64?.msgs_per_s, fmt: int, ratios: true },
    { label: 'echo 64 B, p50 / p99 / p99.9 ms', get: () => undefined, fmt: () => '', ratios: false },
    { label: 'echo 64 B, server CPU µs/msg', get: (t) => t.echo_64?.server_cpu_us_per_msg, fmt: (v) => (v === undefined ? '–' : v.toFixed(1)), ratios: true },
    { label: 'echo 4 KiB, msgs/s', get: (t) => t.echo_4k?.msgs_per_s, fmt: int, ratios: true },
    { label: 'echo 4 KiB, server CPU µs/msg', get: (t) => t.echo_4k?.server_cpu_us_per_msg, fmt: (v) => (v === undefined ? '–' : v.toFixed(1)), ratios: true },
    { label: 'echo 4 KiB, p50 / p99 / p99.9 ms', get: () => undefined, fmt: () => '', ratios: false },
    { label: 'echo 64 B at half load, p50 / p99 / p99.9 ms', get: () => undefined, fmt: () => '', ratios: false },
    ...fanNs.flatMap((n, i): Row[] => [
      { label: `fan-out to ${int(n)}, deliveries/s`, get: (t) => t.fanout?.[i]?.deliveries_per_s, fmt: int, ratios: true },
      { label: `fan-out to ${int(n)}, server CPU µs/delivery`, get: (t) => t.fanout?.[i]?.server_cpu_us_per_delivery, fmt: (v) => (v === undefined ? '–' : v.toFixed(2)), ratios: true },
      { label: `fan-out to ${int(n)}, of which kernel µs/delivery`, get: (t) => t.fanout?.[i]?.server_sys_us_per_delivery, fmt: (v) => (v === undefined ? '–' : v.toFixed(2)), ratios: true },
      { label: `fan-out to ${int(n)}, bytes written/delivery`, get: (t) => t.fanout?.[i]?.bytes_per_delivery || undefined, fmt: int, ratios: true },
      { label: `fan-out to ${int(n)}, time to last p50 / max ms`, get: () => undefined, fmt: () => '', ratios: false },
    ]),
    { label: `idle sessions (${int(r.targets.wsbridge?.idle?.sessions)}), RSS KiB/session`, get: (t) => t.idle?.rss_kib_per_session, fmt: (v) => (v === undefined ? '–' : v.toFixed(1)), ratios: true },
    { label: 'idle sessions, JS heap KiB/session', get: (t) => t.idle?.heap_kib_per_session, fmt: (v) => (v === undefined ? '–' : v.toFixed(1)), ratios: true },
    { label: 'idle sessions, seconds to connect all', get: (t) => t.idle?.connect_s, fmt: (v) => (v === undefined ? '–' : v.toFixed(2)), ratios: true },
  ];
  const triple = (l: Latency | undefined) => (l ? `${ms(l.p50_us)} / ${ms(l.p99_us)} / ${ms(l.p999_us)}` : '–');
  const cell = (row: Row, t: TargetResults): string => {
    if (row.label.startsWith('echo 64 B, p50')) return triple(t.echo_64);
    if (row.label.startsWith('echo 4 KiB, p50')) return triple(t.echo_4k);
    if (row.label.startsWith('echo 64 B at half')) return triple(t.paced_64);
    const fan = /fan-out to ([\d,]+), time to last/.exec(row.label);
    if (fan) {
      const f = t.fanout?.find((x) => x.subscribers === Number(fan[1]!.replace(/,/g, '')));
      return f ? `${f.time_to_last_p50_ms.toFixed(2)} / ${f.time_to_last_max_ms.toFixed(2)}` : '–';
    }
    return row.fmt(row.get(t));
  };
  const w = r.targets.wsbridge ?? {};
  const others = peers.filter((p) => p !== 'wsbridge');
  const lines = [
    `Run ${r.date} on ${r.machine.cpu}, ${r.machine.memory_gib} GiB, ${r.machine.os}, Node ${r.machine.node}; ` +
      Object.entries(r.machine.versions).map(([k, v]) => `${k} ${v}`).join(', ') + '.',
    '',
    `| scenario | ${peers.join(' | ')} | ${others.map((o) => `wsbridge / ${o}`).join(' | ')} |`,
    `|---|${peers.map(() => '---:').join('|')}|${others.map(() => '---:').join('|')}|`,
    ...rows.map((row) => `| ${row.label} | ${peers.map((p) => cell(row, r.targets[p]!)).join(' | ')} | ${others.map((o) => (row.ratios ? ratio(row.get(w), row.get(r.targets[o]!)) : '')).join(' | ')} |`),
  ];
  const extra = names.filter((n) => !peers.includes(n));
  if (extra.length) {
    lines.push('', '| wsbridge path | echo 64 B msgs/s | p50 / p99 / p99.9 ms | at half load p50 / p99 / p99.9 ms | server CPU µs/msg | vs wsbridge (JSON, TS handler) | echo 4 KiB msgs/s | 4 KiB server CPU µs/msg |', '|---|---:|---:|---:|---:|---:|---:|---:|');
    for (const n of extra) {
      const t = r.targets[n]!;
      lines.push(`| ${n} | ${int(t.echo_64?.msgs_per_s)} | ${triple(t.echo_64)} | ${triple(t.paced_64)} | ${t.echo_64?.server_cpu_us_per_msg.toFixed(1) ?? '–'} | ${ratio(t.echo_64?.msgs_per_s, w.echo_64?.msgs_per_s)} | ${int(t.echo_4k?.msgs_per_s)} | ${t.echo_4k?.server_cpu_us_per_msg.toFixed(1) ?? '–'} |`);
    }
  }
  for (const [name, why] of Object.entries(r.skipped ?? {})) lines.push('', `Not run: **${name}**: ${why}.`);
  lines.push('', ...targets(r).map((t) => `- ${t.met ? '✅' : '❌'} ${t.text}`));
  const files: Record<string, string> = {};
  const withPaced = names.filter((n) => r.targets[n]!.paced_64);
  if (withPaced.length) files['echo-latency.svg'] = latencyPlot('Echo 64 B at half of each system\'s max load: latency by percentile', peers.filter((n) => withPaced.includes(n)).map((n) => ({ name: n, color: peers.indexOf(n), cdf: r.targets[n]!.paced_64!.cdf })));
  const fanGroups = fanNs.map((n) => `${int(n)} subscribers`);
  const fanSeries = (get: (f: FanoutResult) => number) => peers.map((p, color) => ({ name: p, color, values: fanNs.map((_, i) => { const f = r.targets[p]!.fanout?.[i]; return f ? get(f) : 0; }) }));
  if (fanNs.length) {
    files['fanout.svg'] = barChart('Fan-out: deliveries per second by number of subscribers', 'deliveries/s', fanGroups, fanSeries((f) => f.deliveries_per_s), (v) => (v >= 1000 ? `${Math.round(v / 1000)}k` : String(v)));
    // Only the sub-microsecond systems: next to raw ws and Socket.IO (4-6 µs) their bars vanish.
    const strong = new Set(['wsbridge', 'raw ws, corked', 'Bun', 'NATS (WebSocket)']);
    files['fanout-cpu.svg'] = barChart('Fan-out: server CPU per delivery, strongest peers (lower is better)', 'µs per delivery', fanGroups, fanSeries((f) => f.server_cpu_us_per_delivery).filter((x) => strong.has(x.name)), (v) => `${+v.toFixed(2)} µs`);
  }
  const withIdle = peers.filter((p) => r.targets[p]!.idle);
  if (withIdle.length) files['idle-memory.svg'] = barChart(`Idle sessions (${int(r.targets[withIdle[0]!]!.idle!.sessions)}): server memory per session (lower is better)`, 'KiB per session', ['RSS', 'JS heap'], withIdle.map((p) => ({ name: p, color: peers.indexOf(p), values: [r.targets[p]!.idle!.rss_kib_per_session, r.targets[p]!.idle!.heap_kib_per_session] })), (v) => `${+v.toFixed(1)} KiB`);
  return { markdown: lines.join('\n'), files };
}

/** The benchmarks issue's targets, checked against this run. */
export function targets(r: Results): Array<{ met: boolean; text: string }> {
  const w = r.targets.wsbridge;
  const raw = r.targets['raw ws'];
  const sio = r.targets['Socket.IO'];
  const out: Array<{ met: boolean; text: string }> = [];
  if (!w) return out;
  if (raw?.echo_64 && w.echo_64) {
    for (const k of ['echo_64', 'echo_4k'] as const) {
      const a = w[k]?.msgs_per_s;
      const b = raw[k]?.msgs_per_s;
      if (a && b) out.push({ met: a >= 0.8 * b, text: `${k.replace('_', ' ')} msgs/s ≥ 0.8× raw ws: ${(a / b).toFixed(2)}×` });
    }
  }
  // The request path (req → inbox → res), against raw ws echo in the same run.
  const req = r.targets['wsbridge, req/res']?.echo_64;
  if (req && raw?.echo_64) {
    const rr = raw.echo_64;
    out.push({ met: req.msgs_per_s >= 0.9 * rr.msgs_per_s, text: `req echo msgs/s ≥ 0.9× raw ws: ${(req.msgs_per_s / rr.msgs_per_s).toFixed(2)}× (${int(req.msgs_per_s)} vs ${int(rr.msgs_per_s)})` });
    out.push({ met: req.server_cpu_us_per_msg <= 1.2 * rr.server_cpu_us_per_msg, text: `req echo server CPU/msg ≤ 1.2× raw ws: ${(req.server_cpu_us_per_msg / rr.server_cpu_us_per_msg).toFixed(2)}× (${req.server_cpu_us_per_msg.toFixed(1)} vs ${rr.server_cpu_us_per_msg.toFixed(1)} µs)` });
    out.push({ met: req.p99_us <= 1.5 * rr.p99_us, text: `req echo p99 ≤ 1.5× raw ws p99: ${ms(req.p99_us)} vs ${ms(rr.p99_us)} ms` });
  }
  if (w.paced_64) out.push({ met: w.paced_64.p99_us <= 2000, text: `echo p99 at half of max load (${int(w.paced_64.rate)}/s) ≤ 2 ms: ${ms(w.paced_64.p99_us)} ms` });
  const corked = r.targets['raw ws, corked'];
  const bun = r.targets.Bun;
  for (const f of w.fanout ?? []) {
    const n = int(f.subscribers);
    const rf = raw?.fanout?.find((x) => x.subscribers === f.subscribers);
    const sf = sio?.fanout?.find((x) => x.subscribers === f.subscribers);
    if (rf) out.push({ met: f.deliveries_per_s >= 0.9 * rf.deliveries_per_s, text: `fan-out to ${n} ≥ 0.9× raw ws pre-framed broadcast: ${(f.deliveries_per_s / rf.deliveries_per_s).toFixed(2)}×` });
    if (sf) out.push({ met: f.deliveries_per_s >= 2 * sf.deliveries_per_s, text: `fan-out to ${n} ≥ 2× Socket.IO: ${(f.deliveries_per_s / sf.deliveries_per_s).toFixed(2)}×` });
    // Server CPU per delivery, against the strongest peers.
    for (const [peer, t, bound] of [['raw ws, corked', corked, 1.0], ['Bun', bun, 1.3]] as const) {
      const pf = t?.fanout?.find((x) => x.subscribers === f.subscribers);
      if (!pf) continue;
      const q = f.server_cpu_us_per_delivery / pf.server_cpu_us_per_delivery;
      out.push({ met: q <= bound, text: `fan-out to ${n}, server CPU per delivery ≤ ${bound.toFixed(1)}× ${peer}: ${q.toFixed(2)}× (${f.server_cpu_us_per_delivery.toFixed(2)} vs ${pf.server_cpu_us_per_delivery.toFixed(2)} µs)` });
    }
  }
  if (w.idle && raw?.idle) {
    for (const [what, k] of [['RSS', 'rss_kib_per_session'], ['JS heap', 'heap_kib_per_session']] as const) {
      const q = w.idle[k] / raw.idle[k];
      out.push({ met: q <= 1.1, text: `memory per idle session ≤ 1.1× raw ws, ${what}: ${w.idle[k].toFixed(1)} KiB vs ${raw.idle[k].toFixed(1)} KiB (${q.toFixed(2)}×)` });
    }
  }
  for (const [name, t] of Object.entries(r.targets)) {
    if (!name.includes('component') || !t.echo_64) continue;
    out.push({ met: t.echo_64.msgs_per_s >= 25_000, text: `component echo ≥ 25k msgs/s per instance, ${name}: ${int(t.echo_64.msgs_per_s)}` });
  }
  return out;
}
