// Runs configured components inside a gateway: loads each one (cached transpile, import check),
// warms its instance pool, and links it as both target (its consumer imports) and source (its
// subscriptions call handle-message through the pool).
import { loadComponent } from './loader.ts';
import { InstancePool } from './pool.ts';
import { consumerImports } from './host-imports.ts';
import { wasiImports } from './wasi.ts';
import { ComponentSockets } from './outbound/context.ts';
import { wasmcloudWebsocketImports } from './outbound/wasmcloud-websocket.ts';
import { golemWebsocketImports } from './outbound/golem-websocket.ts';
import { unversioned } from './loader.ts';
import type { Gateway } from '../gateway/gateway.ts';
import type { ComponentConfig } from './component-config.ts';

export interface RunningComponent {
  id: string;
  config: ComponentConfig;
  pool: InstancePool;
  cached: boolean;
}

/** Loads a component and links it to the gateway. Throws ComponentLoadError when it cannot run. */
export async function startComponent(gw: Gateway, cfg: ComponentConfig, cacheDir: string): Promise<RunningComponent> {
  const loaded = await loadComponent(cfg.path, cacheDir);
  // The component's consumer publishes as the component (subject policy: user subjects, and the
  // reply subjects it was handed).
  const consumer = gw.linkTarget(cfg.id);
  // With a bus that acknowledges (NATS), consumer.publish reports whether NATS took the message.
  const host = gw.bus.publishAcked ? consumer : { publish: consumer.publish, request: consumer.request };
  const c = gw.config;
  const sockets = new ComponentSockets(
    { allow: c.outboundAllow, maxConnections: c.outboundMaxConnections, receiveQueue: c.outboundReceiveQueue },
    gw.stats.outbound,
    { timeoutMs: c.outboundTimeoutMs, maxMessageBytes: c.maxMessageBytes },
  );
  const imports = new Set(loaded.imports.map(unversioned));
  const pool = new InstancePool(loaded, (guard) => {
    const outbound = sockets.forInstance(guard.resources);
    return {
      ...wasiImports({ env: cfg.env, preopens: cfg.preopens }),
      ...consumerImports(host, guard),
      ...(imports.has('wasmcloud:websocket/client') ? wasmcloudWebsocketImports(outbound) : {}),
      // golem's pollables are wsbridge's, so it brings its own wasi:io/poll.
      ...(imports.has('golem:websocket/client') ? golemWebsocketImports(outbound) : {}),
    };
  }, {
    size: cfg.poolSize,
    timeoutMs: cfg.timeoutMs,
    maxQueue: cfg.maxQueue,
  });
  await pool.warm();
  gw.linkSource(cfg.id, {
    handleMessage: (msg) => {
      const started = performance.now();
      return pool.call(msg).then((r) => {
        const result = r.tag === 'ok' ? 'ok' : r.val.startsWith('trap') ? 'trap' : r.val.includes('deadline') ? 'timeout' : 'err';
        gw.onComponentCall(cfg.id, (performance.now() - started) / 1000, result);
        return r;
      });
    },
  }, cfg.subscriptions);
  gw.log.info({ component: cfg.id, path: cfg.path, subscriptions: cfg.subscriptions, pool: cfg.poolSize, cached: loaded.cached }, 'component linked');
  return { id: cfg.id, config: cfg, pool, cached: loaded.cached };
}
