// The WebSocket class's transport over golem:websocket/client@1.5.0. Connecting suspends the
// instance (an async host import); waiting for messages is one wasi:io/poll over every open
// connection's pollable and, when the component has a timer pending, a clock pollable due with
// it: the instance suspends until a message arrives or the timer is due, without spinning.
import { describeThrown } from './bodies.js';

export function golemTransport(client, poll, clock) {
  return {
    name: 'golem:websocket/client@1.5.0',
    /** golem's connect takes no subprotocols. */
    subprotocols: false,
    connect(url) {
      let c;
      try {
        c = client.WebsocketConnection.connect(url, undefined);
      } catch (e) {
        throw new Error(describeThrown(e));
      }
      return new GolemConnection(c);
    },
    /** Suspends until a connection has something to read, or `timeoutMs` (if given) has passed. */
    wait(connections, timeoutMs) {
      const list = connections.map((c) => c.pollable);
      let timer;
      if (timeoutMs !== undefined) {
        timer = clock.subscribeDuration(BigInt(Math.max(0, Math.ceil(timeoutMs * 1e6))));
        list.push(timer);
      }
      try {
        poll.poll(list);
      } finally {
        timer?.[Symbol.dispose]?.();
      }
    },
  };
}

class GolemConnection {
  constructor(c) {
    this.c = c;
    this.pollable = c.subscribe();
    this.protocol = '';
  }

  /** The next event without waiting, or undefined. */
  next() {
    if (!this.pollable.ready()) return undefined;
    try {
      // Ready: a message is queued or the connection has ended, so this returns at once.
      const m = this.c.receive();
      return m.tag === 'text' ? { kind: 'text', data: m.val } : { kind: 'binary', data: m.val };
    } catch (e) {
      const p = e?.payload;
      if (p?.tag === 'closed' && p.val) return { kind: 'close', code: p.val.code, reason: p.val.reason };
      // The TCP connection ended without a close frame (wsbridge's host says "connection lost"):
      // a browser fires close (1006) without an error event. Anything else (a protocol error, an
      // oversized message) fails the connection: error, then close (1006).
      if ((p?.tag === 'receive-failure' && p.val === 'connection lost') || p?.tag === 'closed') return { kind: 'lost' };
      return { kind: 'fail', message: describeThrown(e) };
    }
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
    this.pollable[Symbol.dispose]?.();
    this.c[Symbol.dispose]?.();
  }
}
