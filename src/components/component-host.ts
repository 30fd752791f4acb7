// Runs configured components inside a gateway: loads each one (cached transpile, contract check),
// starts its instance pool (one worker thread per instance), and links it as both target (its
// consumer imports, proxied from the workers) and source (its subscriptions call handle-message
// through the pool). A failed call answers the message's reply-to with an error, so a requester
// hears `handler_failed` at once instead of waiting out its timeout.
import { loadComponent } from './loader.ts';
import { InstancePool } from './pool.ts';
import { ComponentLoadError } from './component-config.ts';
import type { Gateway } from '../gateway/gateway.ts';
import { isReplySubject } from '../security/subject-policy.ts';
import type { ComponentConfig } from './component-config.ts';
import type { BrokerMessage, Result } from '../gateway/messaging.ts';

export interface RunningComponent {
  id: string;
  config: ComponentConfig;
  pool: InstancePool;
  cached: boolean;
}

/** The reply a requester gets when the handler failed: no body, the reason stays in the log. */
export const HANDLER_FAILED = 'handler_failed';

/** Loads a component and links it to the gateway. Throws ComponentLoadError when it cannot run. */
export async function startComponent(gw: Gateway, cfg: ComponentConfig, cacheDir: string): Promise<RunningComponent> {
  const publishAcked = gw.bus.publishAcked !== undefined;
  const loaded = await loadComponent(cfg.path, cacheDir, { publishAcked });
  const consumer = gw.linkTarget(cfg.id);
  const c = gw.config;
  const pool = new InstancePool(loaded, {
    publish: (m) => {
      const r = consumer.publish(m);
      if (r.tag === 'err') gw.log.warn({ component: cfg.id, subject: m.subject, reason: r.val }, 'component publish failed');
    },
    // The component publishes as itself (subject policy: user subjects, and the reply subjects it
    // was handed), acknowledged when the bus acknowledges (NATS).
    publishAcked: publishAcked ? (m: BrokerMessage) => consumer.publishAcked(m) : undefined,
    request: (subject, body, timeoutMs) => consumer.request(subject, body, timeoutMs),
    outbound: gw.stats.outbound,
    grants: { env: cfg.env, preopens: cfg.preopens },
    policy: { allow: c.outboundAllow, maxConnections: c.outboundMaxConnections, receiveQueue: c.outboundReceiveQueue },
    defaults: { timeoutMs: c.outboundTimeoutMs, maxMessageBytes: c.maxMessageBytes },
    onWorkerError: (message) => gw.log.warn({ component: cfg.id, reason: message }, 'component instance replaced'),
  }, {
    size: cfg.poolSize,
    timeoutMs: cfg.timeoutMs,
    maxQueue: cfg.maxQueue,
  });
  try {
    await pool.warm();
  } catch (e) {
    throw new ComponentLoadError(`component ${cfg.path}: cannot start an instance (${(e as Error).message.split('\n')[0]})`);
  }
  gw.linkSource(cfg.id, {
    handleMessage: (msg) => {
      const started = performance.now();
      return pool.call(msg).then((r: Result<void, string>) => {
        const result = r.tag === 'ok' ? 'ok' : r.val.startsWith('trap') ? 'trap' : r.val.includes('deadline') ? 'timeout' : 'err';
        gw.onComponentCall(cfg.id, (performance.now() - started) / 1000, result);
        // Only to reply subjects (an inbox, a NATS requester's): a failure is never published to a
        // user subject someone named as reply_to.
        if (r.tag === 'err' && msg.replyTo && isReplySubject(msg.replyTo)) {
          try {
            gw.bus.publish({ subject: msg.replyTo, body: new Uint8Array(0), replyTo: null, errorCode: HANDLER_FAILED });
          } catch {
            // the bus is closing: the requester hears bus_unavailable or its timeout
          }
        }
        return r;
      });
    },
  }, cfg.subscriptions);
  gw.log.info({ component: cfg.id, path: cfg.path, subscriptions: cfg.subscriptions, pool: cfg.poolSize, cached: loaded.cached }, 'component linked');
  return { id: cfg.id, config: cfg, pool, cached: loaded.cached };
}
