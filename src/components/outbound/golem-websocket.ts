// Host side of golem:websocket/client@1.5.0 (wit/golem-websocket.wit). `connect`, `receive` and
// `receive-with-timeout` are async imports: the instance suspends until a message arrives.
// `subscribe` returns a wasi:io/poll pollable that is ready while a message is queued (readiness
// never consumes a message); its pollables are the event loop's (event-loop.ts), so the guest can
// wait on sockets and timers in one wasi:io/poll call. Dropping a connection handle closes it.
import { HostPollable } from '../event-loop.ts';
import type { OutboundSocket, ConnectFailure, Inbound } from './socket.ts';
import type { OutboundContext } from './context.ts';
import { closeFrameError } from './wasmcloud-websocket.ts';

type GolemError = { tag: 'connection-failure' | 'send-failure' | 'receive-failure' | 'protocol-error' | 'other'; val: string } | { tag: 'closed'; val: { code: number; reason: string } | undefined };
type Message = { tag: 'text'; val: string } | { tag: 'binary'; val: Uint8Array };

const fail = (e: GolemError): never => {
  throw { payload: e };
};

function closedError(sock: OutboundSocket): GolemError {
  return { tag: 'closed', val: sock.closeInfo ? { code: sock.closeInfo.code, reason: sock.closeInfo.reason } : undefined };
}

/** Maps a queued inbound frame: text/binary are messages; a close frame ends with `closed`. */
function deliver(sock: OutboundSocket, m: Inbound | undefined): Message | undefined {
  if (m === undefined) {
    if (sock.state === 'closed') fail(sock.failure && !sock.closeInfo ? { tag: 'receive-failure', val: sock.failure } : closedError(sock));
    return undefined;
  }
  if (m.kind === 'text') return { tag: 'text', val: m.data };
  if (m.kind === 'binary') return { tag: 'binary', val: m.data };
  return fail({ tag: 'closed', val: m.kind === 'close' ? { code: m.code, reason: m.reason } : undefined });
}

export function golemWebsocketImports(ctx: OutboundContext): Record<string, unknown> {
  class WebsocketConnection {
    #sock: OutboundSocket;
    constructor(sock: OutboundSocket) {
      this.#sock = sock;
    }

    static async connect(url: string, headers?: Array<[string, string]>): Promise<WebsocketConnection> {
      let parsed: URL;
      try {
        parsed = new URL(url);
      } catch {
        return fail({ tag: 'connection-failure', val: `not a URL: ${url}` });
      }
      if (parsed.protocol !== 'ws:' && parsed.protocol !== 'wss:') fail({ tag: 'connection-failure', val: `expected ws:// or wss://, got ${parsed.protocol}` });
      const refused = ctx.refusal(parsed);
      if (refused) fail({ tag: 'connection-failure', val: refused });
      try {
        const sock = await ctx.open({
          url,
          headers: Object.fromEntries(headers ?? []),
          subprotocols: [],
          timeoutMs: ctx.defaults.timeoutMs,
          maxMessageBytes: ctx.defaults.maxMessageBytes,
          keepaliveMs: 0,
          receiveQueue: ctx.policy.receiveQueue,
          surfaceControlFrames: false,
        });
        return new WebsocketConnection(sock);
      } catch (e) {
        if (typeof e === 'object' && e !== null && 'payload' in e) throw e;
        return fail({ tag: 'connection-failure', val: (e as ConnectFailure).message });
      }
    }

    send(message: Message): void {
      const s = this.#sock;
      if (s.state !== 'open') fail(closedError(s));
      if (message.tag === 'text') s.sendText(message.val);
      else s.sendBinary(message.val);
    }

    async receive(): Promise<Message> {
      for (;;) {
        const m = deliver(this.#sock, this.#sock.take());
        if (m) return m;
        await this.#sock.wait();
      }
    }

    async receiveWithTimeout(timeoutMs: bigint): Promise<Message | undefined> {
      const deadline = performance.now() + Number(timeoutMs);
      for (;;) {
        const m = deliver(this.#sock, this.#sock.take());
        if (m) return m;
        const left = deadline - performance.now();
        if (left <= 0) return undefined;
        await this.#sock.wait(left);
      }
    }

    close(code?: number, reason?: string): void {
      const invalid = closeFrameError(code, reason);
      if (invalid) fail({ tag: 'protocol-error', val: invalid });
      if (this.#sock.state === 'closed') fail(closedError(this.#sock));
      this.#sock.close(code, reason);
    }

    subscribe(): HostPollable {
      const s = this.#sock;
      return new HostPollable(() => s.hasQueued || s.state === 'closed', () => s.wait());
    }

    /** The guest dropped its handle: the connection goes with it (jco calls this on drop). */
    [Symbol.dispose](): void {
      this.#sock.destroy();
    }
  }

  const client = { WebsocketConnection };
  return {
    'golem:websocket/client': client,
    'golem:websocket/client@1.5.0': client,
  };
}
