// Periodic work over all connections, one timer each for all of them: server pings (a peer that
// has not answered the previous ping is dropped), the idle timeout, and forgetting stale per-IP
// throttle state.
import type { Session } from '../sessions/session.ts';
import type { HubStats } from '../sessions/hub.ts';
import type { Config } from '../config/load.ts';
import { CloseCodes } from '../protocol/errors.ts';
import type { HandshakeThrottle } from './handshake-throttle.ts';

/** Starts the sweepers; returns the function that stops them. */
export function startSweepers(open: ReadonlySet<Session>, stats: HubStats, limits: Config['limits'], throttle: HandshakeThrottle): () => void {
  const { pingIntervalSec, idleTimeoutSec } = limits;
  const timers: NodeJS.Timeout[] = [];
  if (pingIntervalSec > 0) {
    timers.push(setInterval(() => {
      for (const s of open) {
        const ws = s.socket;
        if (!s.alive) {
          stats.deadPeers++;
          ws.terminate(); // no close handshake: the peer is not answering
          continue;
        }
        s.alive = false;
        ws.ping();
      }
    }, pingIntervalSec * 1000));
  }
  if (idleTimeoutSec > 0) {
    timers.push(setInterval(() => {
      const cutoff = Date.now() - idleTimeoutSec * 1000;
      for (const s of open) {
        if (!s.closed && s.lastActivity < cutoff) {
          stats.idleCloses++;
          s.close(CloseCodes.normal, 'idle timeout');
        }
      }
    }, Math.max(100, Math.min(5000, (idleTimeoutSec * 1000) / 4))));
  }
  if (throttle.enabled) timers.push(setInterval(() => throttle.sweep(), 60_000));
  for (const t of timers) t.unref();
  return () => {
    for (const t of timers) clearInterval(t);
  };
}
