// What every benchmark server process shares: it reports its URL to the driver over the IPC
// channel, and answers "stats" with its memory and CPU time ("stats-gc": after a full GC), so the driver can
// compute per-session memory and server CPU per message without trusting the load generator.
export function serveStats(url: string, onStop: () => Promise<void> | void = () => {}): void {
  process.on('message', (m: unknown) => {
    if (m === 'stats' || m === 'stats-gc') {
      if (m === 'stats-gc') (globalThis as { gc?: () => void }).gc?.();
      const mem = process.memoryUsage();
      const cpu = process.cpuUsage();
      process.send!({ stats: { rss: mem.rss, heapUsed: mem.heapUsed, external: mem.external, cpuUs: cpu.user + cpu.system } });
    }
  });
  process.on('SIGTERM', () => void Promise.resolve(onStop()).finally(() => process.exit(0)));
  process.on('disconnect', () => process.exit(0));
  process.send!({ ready: url });
}
