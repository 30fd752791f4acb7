// The plain HTTP side of the listener: /healthz, /readyz, /metrics, the operator API under /api/,
// the admin page (/admin) and the demo page's assets.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Registry } from 'prom-client';
import { handleOperatorApi, unauthorized } from './operator-api.ts';
import { serveDemoAsset } from './demo-assets.ts';
import { isAdminPath, serveAdminAsset } from './admin-assets.ts';
import { bearerMatches } from '../auth/secret.ts';
import type { Config } from '../config/load.ts';
import type { Gateway } from '../gateway/gateway.ts';

export class HttpRoutes {
  #gw: Gateway;
  #config: Config;
  #closing: () => boolean;
  #registry: Registry | undefined;

  constructor(gw: Gateway, config: Config, closing: () => boolean) {
    this.#gw = gw;
    this.#config = config;
    this.#closing = closing;
  }

  handle(req: IncomingMessage, res: ServerResponse): void {
    const path = (req.url ?? '/').split('?')[0]!;
    if (path === '/healthz') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ status: 'ok', sessions: this.#gw.hub.sessions.size }));
      return;
    }
    if (path === '/metrics') {
      this.#metrics(req, res).catch((err: unknown) => this.#failed(res, err, 'metrics failed'));
      return;
    }
    if (path === '/readyz') {
      // Client-mode links count too: a gateway whose link is down cannot serve its feed.
      const links = this.#gw.links;
      const closing = this.#closing();
      const ready = !closing && this.#gw.ready && this.#gw.linksReady;
      const checks = this.#gw.readinessChecks;
      res.writeHead(ready ? 200 : 503, { 'content-type': 'application/json' });
      res.end(JSON.stringify({
        status: ready ? 'ready' : 'not_ready',
        nats: this.#config.nats ? (this.#gw.natsConnected ? 'connected' : 'disconnected') : 'not_configured',
        ...(this.#config.nats ? { checks } : {}),
        ...(links.length > 0 ? { links: Object.fromEntries(links.map((l) => [l.id, l.state])) } : {}),
        ...(closing ? { closing: true } : {}),
      }));
      return;
    }
    if (path === '/api' || path.startsWith('/api/')) {
      handleOperatorApi(this.#gw, this.#config, req, res, path).catch((err: unknown) => this.#failed(res, err, 'operator API failed'));
      return;
    }
    const notFound = () => {
      res.writeHead(404, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: { code: 'not_found', message: `no route for ${path}` } }));
    };
    if (isAdminPath(path)) {
      // No ADMIN_TOKEN, no operator API: the page would be useless.
      if (!this.#config.adminToken || (req.method !== 'GET' && req.method !== 'HEAD') || !serveAdminAsset(path, res)) notFound();
      return;
    }
    if (!this.#config.demoPage || (req.method !== 'GET' && req.method !== 'HEAD')) return notFound();
    serveDemoAsset(path, res).then((served) => {
      if (!served) notFound();
    }, (err: unknown) => {
      this.#gw.log.error({ err }, 'demo asset failed');
      if (!res.headersSent) res.writeHead(500);
      res.end();
    });
  }

  #failed(res: ServerResponse, err: unknown, what: string): void {
    this.#gw.log.error({ err }, what);
    if (!res.headersSent) res.writeHead(500, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ error: { code: 'internal', message: 'internal error' } }));
  }

  async #metrics(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const token = this.#config.metricsToken;
    if (token && !bearerMatches(req.headers.authorization, token)) return unauthorized(res);
    if (!this.#registry) {
      const { createMetrics } = await import('../observability/metrics.ts');
      this.#registry = createMetrics(this.#gw);
    }
    res.writeHead(200, { 'content-type': this.#registry.contentType });
    res.end(await this.#registry.metrics());
  }
}
