// What every benchmark server process shares: it reports its URL to the driver over the IPC
// channel, and answers "stats" with its memory and CPU time ("stats-gc": after a full GC), so the driver can
// compute per-session memory and server CPU per message without trusting the load generator.
// {heapSnapshot: path} writes a V8 heap snapshot there (Node only) and answers with the path.
// Runs under Node and under Bun (bun.ts), which speaks Node's IPC channel and has the same
// process.memoryUsage() and process.cpuUsage().

/** A full, synchronous GC: Node's --expose-gc `gc()`, or Bun's `Bun.gc(true)`. */
function fullGc(): void {
  const g = globalThis as { gc?: () => void; Bun?: { gc(force: boolean): void } };
  if (g.Bun) g.Bun.gc(true);
  else g.gc?.();
}

export function serveStats(url: string, onStop: () => Promise<void> | void = () => {}): void {
  process.on('message', (m: unknown) => {
    if (m === 'stats' || m === 'stats-gc') {
      if (m === 'stats-gc') fullGc();
      const mem = process.memoryUsage();
      const cpu = process.cpuUsage();
      process.send!({ stats: { rss: mem.rss, heapUsed: mem.heapUsed, external: mem.external, cpuUs: cpu.user + cpu.system, sysUs: cpu.system } });
    } else if (typeof m === 'object' && m !== null && 'heapSnapshot' in m) {
      const path = (m as { heapSnapshot: string }).heapSnapshot;
      if ('Bun' in globalThis) process.send!({ snapshot: null });
      else void import('node:v8').then((v8) => process.send!({ snapshot: v8.writeHeapSnapshot(path) }));
    }
  });
  process.on('SIGTERM', () => void Promise.resolve(onStop()).finally(() => process.exit(0)));
  process.on('disconnect', () => process.exit(0));
  process.send!({ ready: url });
}
