// ws-probe: drives one outbound WebSocket through wasmcloud:websocket/client, one step per
// message, and answers every step on reply-to with a JSON report. Subscribe it to `wsprobe.>`
// with pool size 1 (the connection lives in the instance):
//   wsprobe.connect  body: {"url", "subprotocols"?, "headers"?: [{name, value}], "timeout_ms"?,
//                           "max_message_size"?, "keepalive_ms"?}
//                    → {"state", "url", "subprotocol"} or {"error"}
//   wsprobe.send     body: {"text"} | {"binary": [bytes]} | {"ping": [bytes]} | {"close": {code?, reason?}}
//                    → {"state"} or {"error"}
//   wsprobe.receive  → {"message": null | {"text"} | {"binary"} | {"ping"} | {"pong"} | {"close": {code, reason}}}
//                      (non-blocking: null when nothing has arrived yet)
//   wsprobe.close    body: {"code"?, "reason"?} → {"state"}
//   wsprobe.state    → {"state"}
import { publish } from 'wasmcloud:messaging/consumer@0.2.0';
import { connect } from 'wasmcloud:websocket/client@0.1.1-draft';

const encoder = new TextEncoder();
const decoder = new TextDecoder();
let conn;

function report(msg, value) {
  if (msg.replyTo !== undefined) publish({ subject: msg.replyTo, body: encoder.encode(JSON.stringify(value)), replyTo: undefined });
}

function errorOf(e) {
  const p = e?.payload ?? e;
  return p && typeof p === 'object' && 'tag' in p ? { tag: p.tag, val: p.val ?? null } : { tag: 'other', val: String(p) };
}

function describe(m) {
  if (m === undefined) return null;
  switch (m.tag) {
    case 'text': return { text: m.val };
    case 'binary': return { binary: [...m.val] };
    case 'ping': return { ping: [...m.val] };
    case 'pong': return { pong: [...m.val] };
    case 'close': return { close: { code: m.val.code, reason: m.val.reason ?? null } };
  }
}

const steps = {
  connect(args) {
    conn = connect({
      url: args.url,
      subprotocols: args.subprotocols,
      headers: args.headers,
      timeoutMs: args.timeout_ms,
      maxMessageSize: args.max_message_size,
      enableKeepalive: args.keepalive_ms !== undefined,
      keepaliveIntervalMs: args.keepalive_ms,
    });
    return { state: conn.getState(), url: conn.getUrl(), subprotocol: conn.getSubprotocol() ?? null };
  },
  send(args) {
    if (args.text !== undefined) conn.send({ tag: 'text', val: args.text });
    else if (args.binary !== undefined) conn.send({ tag: 'binary', val: new Uint8Array(args.binary) });
    else if (args.ping !== undefined) conn.send({ tag: 'ping', val: new Uint8Array(args.ping) });
    else if (args.close !== undefined) conn.send({ tag: 'close', val: { code: args.close.code, reason: args.close.reason } });
    return { state: conn.getState() };
  },
  receive() {
    return { message: describe(conn.receive()), state: conn.getState() };
  },
  close(args) {
    conn.close(args.code, args.reason);
    return { state: conn.getState() };
  },
  state() {
    return { state: conn.getState() };
  },
};

export const handler = {
  handleMessage(msg) {
    const step = steps[msg.subject.split('.').pop()];
    if (step === undefined) throw `ws-probe: unknown step ${msg.subject}`;
    const args = msg.body.length > 0 ? JSON.parse(decoder.decode(msg.body)) : {};
    let result;
    try {
      result = step(args);
    } catch (e) {
      result = { error: errorOf(e) };
    }
    report(msg, result);
  },
};
