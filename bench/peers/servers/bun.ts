// Baseline: Bun's built-in WebSocket server (uWebSockets underneath), run by the `bun` binary
// from the `bun` devDependency, written as its documentation shows: text frames are echoed as
// they came; every connection joins the topic `fan` when it opens, and a frame starting with "B"
// is published to it (`ws.publish`: uWebSockets frames it once and queues it to every other
// subscriber, corking per socket). Same wire behaviour as raw-ws.ts, so the same client adapter.
//   bun bench/peers/servers/bun.ts
import { serveStats } from './ipc.ts';

interface BunWs {
  send(data: string | Uint8Array): number;
  publish(topic: string, data: string | Uint8Array): number;
  subscribe(topic: string): void;
}
interface BunServer {
  port: number;
  upgrade(req: Request): boolean;
  stop(closeActive?: boolean): void;
}
declare const Bun: {
  serve(o: {
    hostname: string;
    port: number;
    fetch(req: Request, server: BunServer): Response | undefined;
    websocket: {
      perMessageDeflate: boolean;
      idleTimeout: number;
      maxPayloadLength: number;
      backpressureLimit: number;
      closeOnBackpressureLimit: boolean;
      open(ws: BunWs): void;
      message(ws: BunWs, data: string | Uint8Array): void;
    };
  }): BunServer;
};

const server = Bun.serve({
  hostname: '127.0.0.1',
  port: 0,
  fetch(req, srv) {
    return srv.upgrade(req) ? undefined : new Response('WebSocket only', { status: 426 });
  },
  websocket: {
    perMessageDeflate: false,
    // No idle timeout (raw ws has none; an idle-sessions run must not lose sessions to it) and,
    // like the other servers, a generous backpressure bound: this measures delivery, not policy.
    idleTimeout: 0,
    maxPayloadLength: 1 << 20,
    backpressureLimit: 256 << 20,
    closeOnBackpressureLimit: false,
    open(ws) {
      ws.subscribe('fan');
    },
    message(ws, data) {
      if (typeof data === 'string' && data.charCodeAt(0) === 0x42 /* B */) ws.publish('fan', data);
      else ws.send(data);
    },
  },
});
serveStats(`ws://127.0.0.1:${server.port}`, () => server.stop(true));
