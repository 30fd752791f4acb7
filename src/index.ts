// Public programmatic API: start a gateway node, link handlers and consumers, and use the
// wasmcloud:messaging contract from TypeScript.
export { Gateway, resolveLink } from './gateway/gateway.ts';
export type { GatewayStats } from './gateway/gateway.ts';
export { ok, err } from './gateway/messaging.ts';
export type { BrokerMessage, Consumer, Handler, Result, Subscription } from './gateway/messaging.ts';
export { loadConfig, ConfigError } from './config/load.ts';
export type { Config, LinkConfig } from './config/load.ts';
export { MemoryBus } from './bus/memory-bus.ts';
export type { Bus, BusMessage, BusSubscription } from './bus/bus.ts';
export { createLogger } from './observability/logger.ts';
