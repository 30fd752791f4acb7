// The echo service for the nats-server baseline: a NATS client (TCP) answering every request on
// `echo.>` with its own payload, in its own process, as a microservice behind NATS would be.
import { connect } from '@nats-io/transport-node';
import { serveStats } from './ipc.ts';

const nc = await connect({ servers: process.argv[2]! });
nc.subscribe('echo.>', { callback: (_err, m) => { m.respond(m.data); } });
await nc.flush();
serveStats(process.argv[2]!, () => nc.close());
