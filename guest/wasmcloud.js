// The WebSocket class's transport over wasmcloud:websocket/client@0.1.1-draft. Connecting
// suspends the instance (an async host import); `receive` never waits, so the WebSocket pump polls
// it from the guest's event loop with a short timer backoff (websocket.js). Ping and pong frames
// are the host's business: a browser's WebSocket never shows them either.
import { describeThrown } from './bodies.js';

/** Control frames skipped in one look before yielding to the event loop. */
const MAX_SKIPPED = 64;

export function wasmcloudTransport(client) {
  return {
    name: 'wasmcloud:websocket/client@0.1.1-draft',
    subprotocols: true,
    connect(url, protocols) {
      let c;
      try {
        c = client.connect({
          url,
          subprotocols: protocols.length > 0 ? protocols : undefined,
          headers: undefined,
          timeoutMs: undefined,
          maxMessageSize: undefined,
          enableKeepalive: undefined,
          keepaliveIntervalMs: undefined,
        });
      } catch (e) {
        throw new Error(describeThrown(e));
      }
      return new WasmcloudConnection(c);
    },
  };
}

class WasmcloudConnection {
  constructor(c) {
    this.c = c;
    this.protocol = c.getSubprotocol() ?? '';
  }

  next() {
    for (let i = 0; i < MAX_SKIPPED; i++) {
      let m;
      try {
        m = this.c.receive();
      } catch (e) {
        // Closed without a close frame: close (1006) without an error event, as in a browser. An
        // oversized or invalid message fails the connection: error, then close (1006).
        if (e?.payload?.tag === 'connection-closed') return { kind: 'lost' };
        return { kind: 'fail', message: describeThrown(e) };
      }
      if (m === undefined) return undefined;
      switch (m.tag) {
        case 'text': return { kind: 'text', data: m.val };
        case 'binary': return { kind: 'binary', data: m.val };
        case 'close': return { kind: 'close', code: m.val.code, reason: m.val.reason ?? '' };
        default: continue; // ping, pong
      }
    }
    return { kind: 'skipped' }; // more may be queued: look again in the next task
  }

  sendText(text) {
    this.c.send({ tag: 'text', val: text });
  }

  sendBinary(bytes) {
    this.c.send({ tag: 'binary', val: bytes });
  }

  close(code, reason) {
    this.c.close(code, reason);
  }

  dispose() {
    this.c[Symbol.dispose]?.();
  }
}
