// Host side of wasmcloud:websocket/client@0.1.1-draft (wit/wasmcloud-websocket-0.1.1-draft.wit):
// every config field and method honoured. `connect` is an async import (the instance suspends
// while dialling); `receive` never waits, as the WIT says: none when nothing is queued.
import { OutboundSocket } from './socket.ts';
import type { ConnectFailure, Inbound } from './socket.ts';
import type { OutboundContext } from './context.ts';

type WsError = { tag: string; val?: string };
type Message =
  | { tag: 'text'; val: string }
  | { tag: 'binary' | 'ping' | 'pong'; val: Uint8Array }
  | { tag: 'close'; val: { code: number; reason?: string | undefined } };

interface ClientConfig {
  url: string;
  subprotocols?: string[] | undefined;
  headers?: Array<{ name: string; value: string }> | undefined;
  timeoutMs?: number | undefined;
  maxMessageSize?: number | undefined;
  enableKeepalive?: boolean | undefined;
  keepaliveIntervalMs?: number | undefined;
}

const fail = (e: WsError): never => {
  throw { payload: e };
};

function toMessage(m: Inbound): Message {
  switch (m.kind) {
    case 'text': return { tag: 'text', val: m.data };
    case 'binary': return { tag: 'binary', val: m.data };
    case 'ping': return { tag: 'ping', val: m.data };
    case 'pong': return { tag: 'pong', val: m.data };
    case 'close': return { tag: 'close', val: { code: m.code, reason: m.reason === '' ? undefined : m.reason } };
  }
}

export function wasmcloudWebsocketImports(ctx: OutboundContext): Record<string, unknown> {
  class Connection {
    #sock: OutboundSocket;
    constructor(sock: OutboundSocket) {
      this.#sock = sock;
    }
    send(message: Message): void {
      const s = this.#sock;
      if (s.state !== 'open') fail({ tag: 'connection-closed' });
      switch (message.tag) {
        case 'text': s.sendText(message.val); return;
        case 'binary': s.sendBinary(message.val); return;
        case 'ping':
        case 'pong':
          // A control frame carries at most 125 bytes (RFC 6455 §5.5); ws would throw.
          if (message.val.length > 125) fail({ tag: 'invalid-message', val: `${message.tag} payload of ${message.val.length} bytes: at most 125` });
          if (message.tag === 'ping') s.ping(message.val);
          else s.pong(message.val);
          return;
        case 'close': {
          const invalid = closeFrameError(message.val.code, message.val.reason);
          if (invalid) fail({ tag: 'protocol-error', val: invalid });
          s.close(message.val.code, message.val.reason);
          return;
        }
      }
    }
    receive(): Message | undefined {
      const m = this.#sock.take();
      if (m) return toMessage(m);
      if (this.#sock.state === 'closed') {
        const why = this.#sock.failure;
        if (why?.startsWith('message larger')) fail({ tag: 'invalid-message', val: why });
        fail({ tag: 'connection-closed' });
      }
      return undefined;
    }
    close(code?: number, reason?: string): void {
      const invalid = closeFrameError(code, reason);
      if (invalid) fail({ tag: 'protocol-error', val: invalid });
      this.#sock.close(code, reason);
    }
    /** The guest dropped its handle: the connection goes with it (jco calls this on drop). */
    [Symbol.dispose](): void {
      this.#sock.destroy();
    }
    getState(): string {
      return this.#sock.state;
    }
    getUrl(): string {
      return this.#sock.url;
    }
    getSubprotocol(): string | undefined {
      return this.#sock.protocol;
    }
  }

  async function connect(config: ClientConfig): Promise<Connection> {
    let url: URL;
    try {
      url = new URL(config.url);
    } catch {
      return fail({ tag: 'invalid-url', val: `not a URL: ${config.url}` });
    }
    if (url.protocol !== 'ws:' && url.protocol !== 'wss:') fail({ tag: 'invalid-url', val: `expected ws:// or wss://, got ${url.protocol}` });
    const refused = ctx.refusal(url);
    if (refused) fail({ tag: 'connection-failed', val: refused });
    const headers: Record<string, string> = {};
    for (const h of config.headers ?? []) headers[h.name] = h.value;
    try {
      const sock = await ctx.open({
        url: config.url,
        headers,
        subprotocols: config.subprotocols ?? [],
        timeoutMs: config.timeoutMs ?? ctx.defaults.timeoutMs,
        maxMessageBytes: config.maxMessageSize ?? ctx.defaults.maxMessageBytes,
        keepaliveMs: config.enableKeepalive ? config.keepaliveIntervalMs ?? 30_000 : 0,
        receiveQueue: ctx.policy.receiveQueue,
        surfaceControlFrames: true,
      });
      return new Connection(sock);
    } catch (e) {
      if (typeof e === 'object' && e !== null && 'payload' in e) throw e;
      const f = e as ConnectFailure;
      if (f.kind === 'timeout') return fail({ tag: 'timeout' });
      if (f.kind === 'auth') return fail({ tag: 'authentication-failed', val: f.message });
      return fail({ tag: 'connection-failed', val: f.message });
    }
  }

  const client = { Connection, connect };
  return {
    'wasmcloud:websocket/client': client,
    'wasmcloud:websocket/client@0.1.1-draft': client,
    'wasmcloud:websocket/types': {},
    'wasmcloud:websocket/types@0.1.1-draft': {},
  };
}

/** Why a close frame with this code and reason may not be sent, or null when it may. */
export function closeFrameError(code: number | undefined, reason: string | undefined): string | null {
  if (code !== undefined && !validCloseCode(code)) return `close code ${code} may not be sent (RFC 6455 §7.4)`;
  if (reason !== undefined && Buffer.byteLength(reason) > 123) return `close reason of ${Buffer.byteLength(reason)} bytes: at most 123 (RFC 6455 §5.5)`;
  return null;
}

/** Close codes an endpoint may send: 1000–1003, 1007–1014, 3000–4999. */
export function validCloseCode(code: number): boolean {
  return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) || (code >= 3000 && code <= 4999);
}
