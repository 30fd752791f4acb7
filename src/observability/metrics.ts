// Prometheus metrics (prom-client), all named wsbridge_*. Most are read from the counters the
// gateway keeps anyway at scrape time, so the message path pays nothing for them; only request
// and component-call durations are observed as they happen.
import { Registry, Gauge, Counter, Histogram, collectDefaultMetrics } from 'prom-client';
import type { Gateway } from '../gateway/gateway.ts';
import type { RemoteLink } from '../client/remote-link.ts';

/** A counter whose value is read from the gateway at scrape time. */
function readCounter(registry: Registry, name: string, help: string, read: () => number): void {
  new Counter({
    name, help, registers: [registry],
    collect() {
      this.reset();
      this.inc(read());
    },
  });
}

export function createMetrics(gw: Gateway): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'wsbridge_' });
  const hub = gw.hub;
  new Gauge({ name: 'wsbridge_sessions', help: 'Open WebSocket sessions on this node.', registers: [registry], collect() { this.set(hub.sessions.size); } });
  readCounter(registry, 'wsbridge_connects_total', 'Sessions opened.', () => hub.stats.sessionsOpened);
  new Counter({
    name: 'wsbridge_disconnects_total', help: 'Sessions closed, by close code.', labelNames: ['code'], registers: [registry],
    collect() {
      this.reset();
      for (const [code, n] of Object.entries(hub.stats.closeCodes)) this.inc({ code }, n);
    },
  });
  readCounter(registry, 'wsbridge_frames_in_total', 'Frames received from sessions (valid or not).', () => hub.totals.messagesIn);
  new Counter({
    name: 'wsbridge_messages_in_total', help: 'Valid frames from sessions by kind: publish (to a subject), reply (to a reply subject), sub, unsub, req, ack, auth, ping.', labelNames: ['kind'], registers: [registry],
    collect() {
      this.reset();
      for (const [kind, n] of Object.entries(hub.framesIn)) this.inc({ kind }, n);
    },
  });
  new Counter({
    name: 'wsbridge_messages_out_total', help: 'Frames sent to sessions by kind: message (deliveries) or control (answers to their ops).', labelNames: ['kind'], registers: [registry],
    collect() {
      this.reset();
      this.inc({ kind: 'message' }, hub.totals.messagesOut - hub.totals.controlOut);
      this.inc({ kind: 'control' }, hub.totals.controlOut);
    },
  });
  readCounter(registry, 'wsbridge_bytes_in_total', 'Bytes received from sessions.', () => hub.totals.bytesIn);
  readCounter(registry, 'wsbridge_bytes_out_total', 'Bytes sent to sessions.', () => hub.totals.bytesOut);
  readCounter(registry, 'wsbridge_messages_dropped_total', 'Messages dropped for slow consumers (SLOW_CONSUMER_POLICY=drop).', () => hub.totals.dropped);
  readCounter(registry, 'wsbridge_slow_consumer_closes_total', 'Sessions closed with 1013 as slow consumers.', () => hub.stats.slowConsumerCloses);
  readCounter(registry, 'wsbridge_protocol_errors_total', 'Error frames sent to sessions.', () => hub.stats.protocolErrors);
  readCounter(registry, 'wsbridge_auth_failures_total', 'Refused authentications (bad token, wrong origin, missing first-frame auth).', () => hub.stats.authFailures);
  readCounter(registry, 'wsbridge_permission_denials_total', 'Publishes and subscriptions refused by token permissions.', () => hub.stats.permissionDenials);
  readCounter(registry, 'wsbridge_rate_limited_total', 'Frames dropped by the per-session rate limit.', () => hub.stats.rateLimited);
  readCounter(registry, 'wsbridge_connections_refused_total', 'Upgrades refused by MAX_CONNECTIONS / MAX_CONNECTIONS_PER_IP.', () => hub.stats.connectionsRefused);
  new Counter({
    name: 'wsbridge_handshakes_throttled_total', help: 'Upgrades answered 429 by the per-IP throttles, by reason: rate (HANDSHAKE_RATE_PER_IP) or auth_backoff (AUTH_FAILURE_BACKOFF_MS).', labelNames: ['reason'], registers: [registry],
    collect() {
      this.reset();
      const t = gw.server?.gate.throttle.stats;
      this.inc({ reason: 'rate' }, t?.rateLimited ?? 0);
      this.inc({ reason: 'auth_backoff' }, t?.authBackoff ?? 0);
    },
  });
  readCounter(registry, 'wsbridge_dead_peers_total', 'Sessions dropped for not answering server pings.', () => hub.stats.deadPeers);
  readCounter(registry, 'wsbridge_idle_closes_total', 'Sessions closed by IDLE_TIMEOUT_SEC.', () => hub.stats.idleCloses);
  readCounter(registry, 'wsbridge_handler_calls_total', 'Calls of linked handlers and components.', () => gw.stats.handlerCalls);
  readCounter(registry, 'wsbridge_handler_errors_total', 'Handler and component calls that failed.', () => gw.stats.handlerErrors);
  new Gauge({ name: 'wsbridge_outbound_websockets', help: 'Open outbound WebSockets of components.', registers: [registry], collect() { this.set(gw.stats.outbound.open); } });
  readCounter(registry, 'wsbridge_outbound_bytes_in_total', 'Bytes components received on outbound WebSockets.', () => gw.stats.outbound.bytesIn);
  readCounter(registry, 'wsbridge_outbound_bytes_out_total', 'Bytes components sent on outbound WebSockets.', () => gw.stats.outbound.bytesOut);
  new Gauge({ name: 'wsbridge_nats_connected', help: '1 when NATS is configured and connected, 0 when disconnected (absent without NATS).', registers: [registry], collect() { if (gw.config.nats) this.set(gw.natsConnected ? 1 : 0); } });
  new Gauge({ name: 'wsbridge_ready', help: '1 when /readyz answers 200 (NATS, JetStream, history and presence checks pass), else 0.', registers: [registry], collect() { this.set(gw.ready ? 1 : 0); } });
  new Gauge({
    name: 'wsbridge_readiness_check', help: 'With NATS: 1 when a readiness check passes, 0 when it fails, by check (nats, jetstream, history, presence).', labelNames: ['check'], registers: [registry],
    collect() {
      this.reset();
      for (const [check, detail] of Object.entries(gw.readinessChecks)) this.set({ check }, detail === 'ok' ? 1 : 0);
    },
  });
  // Cluster presence (with NATS): absent without it.
  const presence = () => gw.presence;
  new Counter({ name: 'wsbridge_presence_writes_total', help: 'Presence entries written (node heartbeats, sessions added, changed, refreshed, removed).', registers: [registry], collect() { this.reset(); const p = presence(); if (p) this.inc(p.stats.writes); } });
  new Counter({ name: 'wsbridge_presence_write_failures_total', help: 'Presence writes that failed (each is retried; logged at warn).', registers: [registry], collect() { this.reset(); const p = presence(); if (p) this.inc(p.stats.writeFailures); } });
  new Counter({ name: 'wsbridge_presence_resyncs_total', help: 'Times this node wrote all its sessions to presence again (start, buckets recreated, its entry expired).', registers: [registry], collect() { this.reset(); const p = presence(); if (p) this.inc(p.stats.resyncs); } });
  new Counter({ name: 'wsbridge_presence_buckets_recreated_total', help: 'Presence buckets this node found missing (a JetStream reset) and created again.', registers: [registry], collect() { this.reset(); const p = presence(); if (p) this.inc(p.stats.bucketsRecreated); } });
  new Gauge({ name: 'wsbridge_presence_backlog', help: 'Session entries waiting to be written to presence.', registers: [registry], collect() { const p = presence(); if (p) this.set(p.backlog); } });
  // History (with HISTORY_SUBJECTS): absent without it.
  const history = () => gw.history;
  const historyCounter = (name: string, help: string, read: (h: NonNullable<ReturnType<typeof history>>) => number) =>
    new Counter({ name, help, registers: [registry], collect() { this.reset(); const h = history(); if (h) this.inc(read(h)); } });
  historyCounter('wsbridge_history_stream_recreated_total', 'Times this node found the history stream missing (JetStream lost its state) and made it again.', (h) => h.stats.streamRecreated);
  historyCounter('wsbridge_history_epoch_changes_total', 'Times the history stream became another one (new epoch) under this node; its history subscribers were told history_lost.', (h) => h.stats.epochChanges);
  historyCounter('wsbridge_history_redeliveries_total', 'Messages delivered to acknowledged subscriptions again (marked redelivered).', (h) => h.stats.redeliveries);
  historyCounter('wsbridge_history_given_back_total', 'Messages of acknowledged subscriptions given back for redelivery (their session went).', (h) => h.stats.givenBack);
  new Gauge({ name: 'wsbridge_history_acked_subscriptions', help: 'Acknowledged subscriptions open on this node.', registers: [registry], collect() { const h = history(); if (h) this.set(h.ackedSubscriptions); } });
  new Gauge({ name: 'wsbridge_history_live_consumers', help: 'Live history consumers of this node that are running (one per HISTORY_SUBJECTS pattern when all is well).', registers: [registry], collect() { const h = history(); if (h) this.set(h.liveRunning); } });
  new Gauge({ name: 'wsbridge_history_consumers', help: 'JetStream consumers on the history stream, all nodes (live, durables, replays in progress), at the last readiness check.', registers: [registry], collect() { const h = history(); if (h) this.set(h.consumerCount); } });
  historyCounter('wsbridge_history_publish_timeouts_total', 'Publishes to history subjects whose JetStream acknowledgement did not arrive in time (stored or not: unknown).', (h) => h.stats.publishTimeouts);
  historyCounter('wsbridge_history_publish_failures_total', 'Publishes to history subjects JetStream did not store (known).', (h) => h.stats.publishFailures);
  historyCounter('wsbridge_history_durables_lost_total', 'Acknowledged subscriptions ended because their durable consumer went away.', (h) => h.stats.durablesLost);
  historyCounter('wsbridge_history_live_consumers_recreated_total', 'Live history consumers of this node made again after theirs went away.', (h) => h.liveRecreated);
  new Gauge({ name: 'wsbridge_history_config_mismatch', help: '1 while this node\'s HISTORY_SUBJECTS / HISTORY_MAX_* differ from the history stream\'s (other nodes\'), else 0.', registers: [registry], collect() { const h = history(); if (h) this.set(h.mismatch ? 1 : 0); } });
  new Counter({
    name: 'wsbridge_errors_total', help: 'Error frames sent to sessions, by code (see docs/protocol.md, Errors).', labelNames: ['code'], registers: [registry],
    collect() {
      this.reset();
      for (const [code, n] of Object.entries(hub.stats.errorsByCode)) this.inc({ code }, n);
    },
  });
  new Counter({
    name: 'wsbridge_history_subscribe_failures_total', help: 'History subscriptions that could not be served now (answered bus_unavailable, nothing subscribed), by kind: position (sub), replay (sub with since), acked (sub with ack), ended (an acked subscription whose durable went away).', labelNames: ['kind'], registers: [registry],
    collect() {
      this.reset();
      for (const [kind, n] of Object.entries(hub.stats.historySubscribeFailures)) this.inc({ kind }, n);
    },
  });
  new Counter({
    name: 'wsbridge_node_requests_total', help: 'Operations another node answers, by op (send, close, broadcast) and result (delivered, dropped, not_found, closed, complete, partial, bus_unavailable, presence_unavailable, node_unreachable).', labelNames: ['op', 'result'], registers: [registry],
    collect() {
      this.reset();
      for (const [k, n] of Object.entries(gw.stats.nodeRequests)) {
        const [op, result] = k.split(':');
        this.inc({ op: op!, result: result! }, n);
      }
    },
  });
  linkMetrics(registry, gw);
  const requests = new Histogram({ name: 'wsbridge_request_duration_seconds', help: 'req operations of sessions, by result (ok, timeout, no_responders, …).', labelNames: ['result'], buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5], registers: [registry] });
  hub.onRequestDone = (seconds, result) => requests.observe({ result }, seconds);
  const calls = new Histogram({ name: 'wsbridge_component_call_duration_seconds', help: 'handle-message calls of components, by component and result (ok, err, trap, timeout).', labelNames: ['component', 'result'], buckets: [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25, 1, 5], registers: [registry] });
  gw.onComponentCall = (component, seconds, result) => calls.observe({ component, result }, seconds);
  return registry;
}

/** Client-mode links, labelled by link name (LINK_NAME or link-<n>), read at scrape time. */
function linkMetrics(registry: Registry, gw: Gateway): void {
  const perLink = (name: string, help: string, read: (s: RemoteLink['stats'], l: RemoteLink) => number, kind: 'counter' | 'gauge' = 'counter') => {
    const Metric = kind === 'counter' ? Counter : Gauge;
    new Metric({
      name, help, labelNames: ['link'], registers: [registry],
      collect(this: Counter | Gauge) {
        this.reset();
        for (const l of gw.links) (this as Gauge).inc({ link: l.id }, read(l.stats, l));
      },
    });
  };
  perLink('wsbridge_link_up', 'Client-mode links: 1 while open, 0 while connecting, reconnecting or given up.', (_s, l) => (l.state === 'open' ? 1 : 0), 'gauge');
  perLink('wsbridge_link_connects_total', 'Connections a link opened.', (s) => s.connects);
  perLink('wsbridge_link_failed_attempts_total', 'Failed attempts of a link (connections closed before RECONNECT_STABLE_SEC included).', (s) => s.failedAttempts);
  perLink('wsbridge_link_messages_in_total', 'Frames received from a link\'s remote.', (s) => s.received + s.receivedRaw);
  perLink('wsbridge_link_messages_out_total', 'Frames sent to a link\'s remote.', (s) => s.sent);
  perLink('wsbridge_link_bytes_in_total', 'Bytes received from a link\'s remote.', (s) => s.bytesIn);
  perLink('wsbridge_link_bytes_out_total', 'Bytes sent to a link\'s remote.', (s) => s.bytesOut);
  perLink('wsbridge_link_held_bytes', 'Bytes a link holds for its remote (socket and offline queue), bounded by MAX_BUFFERED_BYTES.', (_s, l) => l.heldBytes, 'gauge');
  new Counter({
    name: 'wsbridge_link_dropped_total', help: 'Frames a link dropped, by reason: offline (offline queue full), slow (SLOW_CONSUMER_POLICY=drop), not_text (RAW_OUT_FORMAT=text).', labelNames: ['link', 'reason'], registers: [registry],
    collect() {
      this.reset();
      for (const l of gw.links) {
        this.inc({ link: l.id, reason: 'offline' }, l.stats.droppedOffline);
        this.inc({ link: l.id, reason: 'slow' }, l.stats.droppedSlow);
        this.inc({ link: l.id, reason: 'not_text' }, l.stats.droppedNotText);
      }
    },
  });
}
