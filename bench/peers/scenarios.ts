// The scenarios of the peers benchmark, each against any target through its client adapter.
// Latencies go into HDR histograms (µs). Every wait is bounded by a deadline.
import * as hdr from 'hdr-histogram-js';
import type { Conn, Target } from './clients.ts';
import { deadline, pooled, progress, type Running } from './harness.ts';

const LOCAL_ADDRESSES = ['127.0.0.1', '127.0.0.2', '127.0.0.3', '127.0.0.4'];
const DEADLINE_MS = 120_000;

export interface Latency { p50_us: number; p99_us: number; p999_us: number; max_us: number; cdf: Array<[number, number]> }

function histogram() {
  return hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 120_000_000, numberOfSignificantValueDigits: 3 });
}

/** Percentiles and a CDF sampled at HDR-plot points (0 … 99.99 %). */
function summarize(h: ReturnType<typeof histogram>): Latency {
  const points = [0, 25, 50, 75, 90, 95, 99, 99.5, 99.9, 99.95, 99.99];
  const r = { p50_us: h.getValueAtPercentile(50), p99_us: h.getValueAtPercentile(99), p999_us: h.getValueAtPercentile(99.9), max_us: h.maxValue, cdf: points.map((p) => [p, h.getValueAtPercentile(p)] as [number, number]) };
  h.destroy();
  return r;
}

/**
 * Connects `n` clients, at most 256 handshakes in flight, spread over several 127.x source
 * addresses so that large counts do not run out of ephemeral ports.
 */
export async function connectMany(target: Target, url: string, n: number, label: string): Promise<Conn[]> {
  return pooled(n, 256, (i) => target.connect(url, LOCAL_ADDRESSES[i % LOCAL_ADDRESSES.length]), (d) => { if (d % 500 === 0 || d === n) progress(`${label}: connected ${d}/${n}`); });
}

/** Payloads carry their sequence number in the first 10 characters. */
const payload = (seq: number, pad: string) => `${String(seq).padStart(10, '0')}${pad}`;
const seqOf = (p: string) => Number(p.slice(0, 10));

export interface EchoResult extends Latency { msgs_per_s: number; server_cpu_us_per_msg: number }

/**
 * Closed-loop echo: `clients` connections each keep `window` messages in flight until `messages`
 * have come back in all; latency from send to echo.
 */
export async function echo(target: Target, sut: Running, o: { clients: number; window: number; messages: number; size: number; label: string }): Promise<EchoResult> {
  const conns = await connectMany(target, sut.url, o.clients, o.label);
  const pad = 'x'.repeat(Math.max(0, o.size - 10));
  const run = async (messages: number, record: boolean) => {
    const h = histogram();
    const perClient = Math.ceil(messages / conns.length);
    const total = perClient * conns.length;
    const sentAt = new Float64Array(total);
    let done = 0;
    const finished = deadline(DEADLINE_MS, `${o.label} echoes`);
    conns.forEach((c, ci) => {
      let next = 0;
      const send = () => {
        const seq = ci * perClient + next++;
        sentAt[seq] = performance.now();
        c.echo(payload(seq, pad));
      };
      c.onEcho = (p) => {
        h.recordValue(Math.max(1, Math.round((performance.now() - sentAt[seqOf(p)]!) * 1000)));
        if (++done === total) finished.resolve();
        else if (record && done % 5000 === 0) progress(`${o.label}: ${done}/${total}`);
        if (next < perClient) send();
      };
      for (let i = 0; i < o.window && next < perClient; i++) send();
    });
    const t0 = performance.now();
    const cpu0 = record ? (await sut.stats()).cpuUs : 0;
    await finished.promise;
    const secs = (performance.now() - t0) / 1000;
    const cpu = record ? (await sut.stats()).cpuUs - cpu0 : 0;
    return { ...summarize(h), msgs_per_s: Math.round(total / secs), server_cpu_us_per_msg: Math.round((cpu / total) * 10) / 10 };
  };
  // Warm-up as long as the measured run: the first tens of thousands of messages through a fresh
  // process run visibly slower (JIT tiers, buffer pools), and every system gets the same.
  await run(o.messages, false);
  const r = await run(o.messages, true);
  await Promise.all(conns.map((c) => c.close()));
  return r;
}

/**
 * Open-loop echo at a fixed rate (messages/s) for `seconds`. Messages go out on schedule whatever
 * the answers do (so a stalled server cannot slow the sender down and hide its queueing); latency
 * is from when each message was sent. How late the sender itself was against the schedule (timer
 * resolution, its own CPU) is reported separately as send lag.
 */
export async function pacedEcho(target: Target, sut: Running, o: { clients: number; rate: number; seconds: number; size: number; label: string }): Promise<Latency & { rate: number; send_lag_p99_us: number }> {
  const conns = await connectMany(target, sut.url, o.clients, o.label);
  const pad = 'x'.repeat(Math.max(0, o.size - 10));
  const total = Math.max(1, Math.round(o.rate * o.seconds));
  const sentAt = new Float64Array(total);
  const h = histogram();
  const lag = histogram();
  let done = 0;
  const finished = deadline(DEADLINE_MS, `${o.label} paced echoes`);
  for (const c of conns) {
    c.onEcho = (p) => {
      h.recordValue(Math.max(1, Math.round((performance.now() - sentAt[seqOf(p)]!) * 1000)));
      if (++done === total) finished.resolve();
    };
  }
  const t0 = performance.now();
  let sent = 0;
  const tick = () => {
    const now = performance.now();
    const due = Math.min(total, Math.floor(((now - t0) / 1000) * o.rate) + 1);
    for (; sent < due; sent++) {
      const at = performance.now();
      lag.recordValue(Math.max(1, Math.round((at - t0 - (sent / o.rate) * 1000) * 1000)));
      sentAt[sent] = at;
      conns[sent % conns.length]!.echo(payload(sent, pad));
    }
    if (sent < total) setTimeout(tick, 1);
    progress(`${o.label}: ${done}/${total} at ${o.rate}/s`);
  };
  tick();
  await finished.promise;
  await Promise.all(conns.map((c) => c.close()));
  const sendLag = lag.getValueAtPercentile(99);
  lag.destroy();
  return { ...summarize(h), rate: o.rate, send_lag_p99_us: sendLag };
}

export interface FanoutResult {
  subscribers: number;
  deliveries_per_s: number;
  server_cpu_us_per_delivery: number;
  /** Of server_cpu_us_per_delivery, in the kernel (sending). */
  server_sys_us_per_delivery: number;
  /** Bytes the server wrote per delivery (frame and protocol envelope; 0 where unknown). */
  bytes_per_delivery: number;
  /** From publish to the last subscriber having the message, one message at a time. */
  time_to_last_p50_ms: number;
  time_to_last_max_ms: number;
}

/**
 * Fan-out: `subscribers` sessions on the fan-out subject, one publisher, 64-byte payloads. First
 * `latencyRounds` messages one at a time (time until the last subscriber has it), then
 * `messages` back to back twice, a warm-up and the measured burst (deliveries per second until
 * every subscriber has all of them, and server CPU per delivery).
 */
export async function fanout(target: Target, sut: Running, o: { subscribers: number; messages: number; latencyRounds: number; label: string }): Promise<FanoutResult> {
  const subs = await connectMany(target, sut.url, o.subscribers, o.label);
  await pooled(subs.length, 256, (i) => subs[i]!.subscribe());
  const [publisher] = await connectMany(target, sut.url, 1, o.label);
  const pad = 'x'.repeat(54);
  let delivered = 0;
  let expected = 0;
  let finished = { resolve: () => {} };
  for (const s of subs) s.onDelivery = () => { if (++delivered === expected) finished.resolve(); };
  const round = async (count: number) => {
    delivered = 0;
    expected = count * subs.length;
    const d = deadline(DEADLINE_MS, `${o.label} deliveries`);
    finished = d;
    const t0 = performance.now();
    for (let i = 0; i < count; i++) publisher!.publish(payload(i, pad));
    await d.promise;
    return performance.now() - t0;
  };
  await round(1); // warm-up, and every subscription is in place
  const lat: number[] = [];
  for (let i = 0; i < o.latencyRounds; i++) {
    lat.push(await round(1));
    progress(`${o.label}: time to last ${i + 1}/${o.latencyRounds}`);
  }
  // A warm-up burst as long as the measured one (JIT tiers, buffer pools, every system alike).
  progress(`${o.label}: ${o.messages} × ${subs.length} deliveries (warm-up)`);
  await round(o.messages);
  progress(`${o.label}: ${o.messages} × ${subs.length} deliveries`);
  const s0 = await sut.stats();
  const ms = await round(o.messages);
  const s1 = await sut.stats();
  const cpu = s1.cpuUs - s0.cpuUs;
  await Promise.all([...subs, publisher!].map((c) => c.close()));
  lat.sort((a, b) => a - b);
  const total = o.messages * subs.length;
  return {
    subscribers: subs.length,
    deliveries_per_s: Math.round(total / (ms / 1000)),
    server_cpu_us_per_delivery: Math.round((cpu / total) * 100) / 100,
    server_sys_us_per_delivery: Math.round(((s1.sysUs - s0.sysUs) / total) * 100) / 100,
    bytes_per_delivery: Math.round((s1.writtenBytes - s0.writtenBytes) / total),
    time_to_last_p50_ms: Math.round(lat[Math.floor(lat.length / 2)]! * 100) / 100,
    time_to_last_max_ms: Math.round(lat[lat.length - 1]! * 100) / 100,
  };
}

export interface IdleResult { sessions: number; connect_s: number; rss_kib_per_session: number; heap_kib_per_session: number }

/** Idle sessions: server memory per session (after a full GC) and time to connect them all. */
export async function idle(target: Target, sut: Running, o: { sessions: number; label: string }): Promise<IdleResult> {
  const snapshot = `idle-${o.sessions}-${o.label.split(' · ')[0]!.replace(/[^\w]+/g, '-')}`;
  const before = await sut.stats(true);
  await sut.heapSnapshot(`${snapshot}-before`);
  const t0 = performance.now();
  const conns = await connectMany(target, sut.url, o.sessions, o.label);
  const connect = (performance.now() - t0) / 1000;
  const after = await sut.stats(true);
  await sut.heapSnapshot(`${snapshot}-after`);
  await Promise.all(conns.map((c) => c.close()));
  const kib = (b: number) => Math.round((b / o.sessions / 1024) * 10) / 10;
  return { sessions: o.sessions, connect_s: Math.round(connect * 100) / 100, rss_kib_per_session: kib(after.rss - before.rss), heap_kib_per_session: kib(after.heapUsed - before.heapUsed) };
}
