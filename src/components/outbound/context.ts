// What an instance's WebSocket imports need from the host: the policy, the component's connection
// cap, and cleanup when the instance is dropped.
import { OutboundSocket } from './socket.ts';
import type { OutboundStats, SocketOptions } from './socket.ts';
import { outboundRefusal } from './policy.ts';
import type { OutboundPolicy } from './policy.ts';

export interface OutboundContext {
  policy: OutboundPolicy;
  defaults: { timeoutMs: number; maxMessageBytes: number };
  refusal(url: URL): string | null;
  /** Opens a socket counted against the component's cap and owned by the instance. */
  open(opts: SocketOptions): Promise<OutboundSocket>;
}

/**
 * The component's connection budget, shared by all its instances (and so by all its worker
 * threads): a slot is taken before dialling and given back when the connection ends.
 */
export interface ConnectionCap {
  tryAcquire(): boolean;
  release(): void;
}

/** A cap for instances that share one thread. */
export function localCap(max: number): ConnectionCap {
  let used = 0;
  return {
    tryAcquire: () => (used < max ? (used++, true) : false),
    release: () => void used--,
  };
}

/** Per component (or per worker of it): its connections, counted against a shared cap. */
export class ComponentSockets {
  readonly policy: OutboundPolicy;
  readonly stats: OutboundStats;
  readonly defaults: { timeoutMs: number; maxMessageBytes: number };
  #cap: ConnectionCap;
  constructor(policy: OutboundPolicy, stats: OutboundStats, defaults: { timeoutMs: number; maxMessageBytes: number }, cap: ConnectionCap = localCap(policy.maxConnections)) {
    this.policy = policy;
    this.stats = stats;
    this.defaults = defaults;
    this.#cap = cap;
  }

  /**
   * A context for one instance; `owned` collects its sockets so they close with it, and a socket
   * that finishes its handshake after the instance was given up is closed at once.
   */
  forInstance(owned: Set<{ destroy(): void }>, retired: () => boolean = () => false): OutboundContext {
    return {
      policy: this.policy,
      defaults: this.defaults,
      refusal: (url) => outboundRefusal(url, this.policy),
      open: async (opts) => {
        if (!this.#cap.tryAcquire()) {
          throw { kind: 'failed', message: `connection limit reached: ${this.policy.maxConnections} per component (OUTBOUND_MAX_CONNECTIONS)` };
        }
        let released = false;
        let sock: OutboundSocket | undefined;
        const ended = () => {
          if (!released) {
            released = true;
            this.#cap.release();
          }
          if (sock) owned.delete(sock);
        };
        sock = await OutboundSocket.open(opts, this.stats, ended);
        if (retired()) {
          sock.destroy();
          throw { kind: 'failed', message: 'instance retired while connecting' };
        }
        owned.add(sock);
        return sock;
      },
    };
  }
}
