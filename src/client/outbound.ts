// What a link holds for its remote, with one bound on memory: frames written to the socket and not
// yet sent (queuedBytes: their bytes plus WRITE_OVERHEAD_BYTES per waiting write, as for
// sessions), and frames kept while the link is down (the offline queue). Past MAX_BUFFERED_BYTES:
//   - connected, SLOW_CONSUMER_POLICY=drop: the new frame is dropped (counted as droppedSlow);
//   - connected, close: the connection is closed with 1013 and the link reconnects; the frame
//     waits in the offline queue like everything published while it is down;
//   - offline: the oldest queued frames are dropped (counted as droppedOffline), as they are past
//     OFFLINE_QUEUE_MAX frames.
import WebSocket from 'ws';
import { queuedBytes, WRITE_OVERHEAD_BYTES } from '../sessions/preframed.ts';

export interface OutFrame {
  data: string | Buffer;
  binary: boolean;
  /** Bytes of `data` on the wire (UTF-8 length for text). */
  bytes: number;
}

export function outFrame(data: string | Buffer, binary: boolean): OutFrame {
  return { data, binary, bytes: typeof data === 'string' ? Buffer.byteLength(data) : data.length };
}

export interface OutboundLimits {
  maxBufferedBytes: number;
  policy: 'close' | 'drop';
  offlineQueueMax: number;
}

export interface OutboundStats {
  sent: number;
  bytesOut: number;
  droppedOffline: number;
  droppedSlow: number;
  slowCloses: number;
}

export class LinkOutbound {
  #limits: OutboundLimits;
  #stats: OutboundStats;
  #ws: WebSocket | undefined;
  #offline: OutFrame[] = [];
  #offlineBytes = 0;
  #onSlowClose: () => void;

  constructor(limits: OutboundLimits, stats: OutboundStats, onSlowClose: () => void) {
    this.#limits = limits;
    this.#stats = stats;
    this.#onSlowClose = onSlowClose;
  }

  /** Bytes held for the remote now: in the socket, and in the offline queue. */
  get heldBytes(): number {
    return (this.#ws ? queuedBytes(this.#ws) : 0) + this.#offlineBytes;
  }

  get offlineFrames(): number {
    return this.#offline.length;
  }

  /** The connection is open: `first` (login frames) go out, then what waited offline. */
  attach(ws: WebSocket, first: OutFrame[]): void {
    this.#ws = ws;
    for (const f of first) this.#write(f);
    const queued = this.#offline;
    this.#offline = [];
    this.#offlineBytes = 0;
    for (const f of queued) this.send(f);
  }

  detach(): void {
    this.#ws = undefined;
  }

  send(f: OutFrame): void {
    const ws = this.#ws;
    if (ws?.readyState === WebSocket.OPEN) {
      if (queuedBytes(ws) + f.bytes + WRITE_OVERHEAD_BYTES <= this.#limits.maxBufferedBytes) {
        this.#write(f);
        return;
      }
      if (this.#limits.policy === 'drop') {
        this.#stats.droppedSlow++;
        return;
      }
      this.#stats.slowCloses++;
      this.#ws = undefined;
      this.#onSlowClose();
    }
    this.#queue(f);
  }

  #queue(f: OutFrame): void {
    const l = this.#limits;
    if (l.offlineQueueMax === 0 || f.bytes + WRITE_OVERHEAD_BYTES > l.maxBufferedBytes) {
      this.#stats.droppedOffline++;
      return;
    }
    this.#offline.push(f);
    this.#offlineBytes += f.bytes + WRITE_OVERHEAD_BYTES;
    while (this.#offline.length > l.offlineQueueMax || this.#offlineBytes > l.maxBufferedBytes) {
      const old = this.#offline.shift()!;
      this.#offlineBytes -= old.bytes + WRITE_OVERHEAD_BYTES;
      this.#stats.droppedOffline++;
    }
  }

  #write(f: OutFrame): void {
    this.#ws!.send(f.data, { binary: f.binary });
    this.#stats.sent++;
    this.#stats.bytesOut += f.bytes;
  }

  clear(): void {
    this.#offline = [];
    this.#offlineBytes = 0;
    this.#ws = undefined;
  }
}
