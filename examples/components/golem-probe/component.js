// golem-probe: drives one outbound WebSocket through golem:websocket/client, one step per
// message, answering each on reply-to with a JSON report. Subscribe it to `golemprobe.>` with
// pool size 1. `receive` blocks (the instance suspends until a message arrives).
//   golemprobe.roundtrip  body: {"url", "text", "headers"?: [[name, value]]}
//                         → connect, send, receive, close: {"received"} or {"error"}
//   golemprobe.connect    body: {"url", "headers"?} → {"connected": true}
//   golemprobe.send       body: {"text"} | {"binary": [bytes]}
//   golemprobe.receive    → {"message"} (blocks)
//   golemprobe.receive-with-timeout  body: {"ms"} → {"message": null | …}
//   golemprobe.close      body: {"code"?, "reason"?}
//   golemprobe.wait       → subscribe(), pollable.block() until a message is queued, then
//                           {"ready": pollable.ready(), "message"} (the instance suspends meanwhile)
import { publish } from 'wasmcloud:messaging/consumer@0.2.0';
import { WebsocketConnection } from 'golem:websocket/client@1.5.0';

const encoder = new TextEncoder();
const decoder = new TextDecoder();
let conn;

function describe(m) {
  if (m === undefined) return null;
  return m.tag === 'text' ? { text: m.val } : { binary: [...m.val] };
}

function errorOf(e) {
  const p = e?.payload ?? e;
  return p && typeof p === 'object' && 'tag' in p ? { tag: p.tag, val: p.val ?? null } : { tag: 'other', val: String(p) };
}

const message = (args) => (args.text !== undefined ? { tag: 'text', val: args.text } : { tag: 'binary', val: new Uint8Array(args.binary) });

const steps = {
  roundtrip(args) {
    const c = WebsocketConnection.connect(args.url, args.headers);
    c.send(message(args));
    const received = describe(c.receive());
    c.close(1000, 'done');
    return { received };
  },
  connect(args) {
    conn = WebsocketConnection.connect(args.url, args.headers);
    return { connected: true };
  },
  send(args) {
    conn.send(message(args));
    return { sent: true };
  },
  receive() {
    return { message: describe(conn.receive()) };
  },
  'receive-with-timeout'(args) {
    return { message: describe(conn.receiveWithTimeout(BigInt(args.ms))) };
  },
  close(args) {
    conn.close(args.code, args.reason);
    return { closed: true };
  },
  wait() {
    const pollable = conn.subscribe();
    pollable.block();
    const ready = pollable.ready();
    return { ready, message: describe(conn.receive()) };
  },
};

export const handler = {
  handleMessage(msg) {
    const step = steps[msg.subject.slice('golemprobe.'.length)];
    if (step === undefined) throw `golem-probe: unknown step ${msg.subject}`;
    const args = msg.body.length > 0 ? JSON.parse(decoder.decode(msg.body)) : {};
    let result;
    try {
      result = step(args);
    } catch (e) {
      result = { error: errorOf(e) };
    }
    if (msg.replyTo !== undefined) publish({ subject: msg.replyTo, body: encoder.encode(JSON.stringify(result)), replyTo: undefined });
  },
};
