// wsbridge under benchmark, configured as a user would run it, in its own process.
//   node bench/peers/servers/wsbridge.ts [--echo ts|component:PATH|none] [--nats URL]
// --echo ts (default): a TypeScript handler on `echo.>` publishes each message back to its
// reply_to (client → subject → handler → reply-to). component:PATH: the same through a
// WebAssembly component. none: no handler (a cluster node whose peer answers).
import { Gateway } from '../../../src/gateway/gateway.ts';
import { loadConfig } from '../../../src/config/load.ts';
import { serveStats } from './ipc.ts';

const flag = (name: string) => { const i = process.argv.indexOf(name); return i > 0 ? process.argv[i + 1] : undefined; };
const echo = flag('--echo') ?? 'ts';
const nats = flag('--nats');
const gw = await Gateway.start(loadConfig({
  env: {},
  flags: {
    MODE: 'server', LISTEN: '127.0.0.1:0', DEMO_PAGE: 'false', LOG_LEVEL: 'error',
    // Benchmarks measure delivery, not the slow-consumer policy: a generous buffer.
    MAX_BUFFERED_BYTES: String(256 << 20),
    COMPONENT_CACHE_DIR: 'build/cache',
    ...(nats ? { NATS_URL: nats } : {}),
  },
}));
if (echo === 'ts') {
  const consumer = gw.linkTarget('echo');
  gw.linkSource('echo', { handleMessage: (m) => consumer.publish({ subject: m.replyTo!, body: m.body, replyTo: null }) }, ['echo.>']);
} else if (echo.startsWith('component:')) {
  await gw.addComponent({ id: 'echo', path: echo.slice('component:'.length), subscriptions: [{ subject: 'echo.>', queue: undefined }], poolSize: 1, timeoutMs: 30_000, maxQueue: 100_000, env: {}, preopens: {} });
}
serveStats(gw.server!.url, () => gw.shutdown());
