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

/** Per component: its open connections, across all its instances. */
export class ComponentSockets {
  readonly open = new Set<OutboundSocket>();
  pending = 0;
  readonly policy: OutboundPolicy;
  readonly stats: OutboundStats;
  readonly defaults: { timeoutMs: number; maxMessageBytes: number };
  constructor(policy: OutboundPolicy, stats: OutboundStats, defaults: { timeoutMs: number; maxMessageBytes: number }) {
    this.policy = policy;
    this.stats = stats;
    this.defaults = defaults;
  }

  /** A context for one instance; `owned` collects its sockets so they close with it. */
  forInstance(owned: Set<{ destroy(): void }>): OutboundContext {
    return {
      policy: this.policy,
      defaults: this.defaults,
      refusal: (url) => outboundRefusal(url, this.policy),
      open: async (opts) => {
        if (this.open.size + this.pending >= this.policy.maxConnections) {
          throw { kind: 'failed', message: `connection limit reached: ${this.policy.maxConnections} per component (OUTBOUND_MAX_CONNECTIONS)` };
        }
        this.pending++;
        let sock: OutboundSocket;
        const ended = () => {
          this.open.delete(sock);
          owned.delete(sock);
        };
        try {
          sock = await OutboundSocket.open(opts, this.stats, ended);
        } finally {
          this.pending--;
        }
        this.open.add(sock);
        owned.add(sock);
        return sock;
      },
    };
  }
}
