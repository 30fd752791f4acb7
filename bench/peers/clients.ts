// One client adapter per system under benchmark, all on the same `ws` client library so that the
// load generator's own cost is alike for every target. An adapter opens a connection and gives the
// scenarios three things: echo (send a payload, get it back), subscribe to the fan-out subject,
// and publish to it. Payloads are strings; each adapter frames them as its system expects.
import WebSocket from 'ws';
import { io } from 'socket.io-client';
import { wsconnect } from '@nats-io/nats-core';
import { Packr } from 'msgpackr';

export interface Conn {
  /** Sends `payload` to the echo service; `onEcho` gets it back. */
  echo(payload: string): void;
  onEcho: (payload: string) => void;
  /** Subscribes to the fan-out subject; resolves once the server has confirmed it. */
  subscribe(): Promise<void>;
  /**
   * Called for every fan-out delivery. Deliveries are counted, not decoded: one message is in
   * flight during latency rounds, and decoding would add the generator's cost to the figure.
   */
  onDelivery: () => void;
  publish(payload: string): void;
  /** Closes gracefully (the server ends TCP first, so TIME_WAIT stays off the client's ports). */
  close(): Promise<void>;
}

export interface Target {
  name: string;
  connect(url: string, localAddress?: string): Promise<Conn>;
}

function openWs(url: string, localAddress?: string): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { perMessageDeflate: false, localAddress });
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
  });
}

function closeWs(ws: WebSocket): Promise<void> {
  if (ws.readyState === WebSocket.CLOSED) return Promise.resolve();
  return new Promise((resolve) => {
    ws.once('close', () => resolve());
    ws.close();
  });
}

function base(): Pick<Conn, 'onEcho' | 'onDelivery'> {
  return { onEcho: () => {}, onDelivery: () => {} };
}

/** Raw ws: text frames echoed as-is; "B…" is broadcast to everyone else. */
export const rawWs: Target = {
  name: 'raw ws',
  async connect(url, localAddress) {
    const ws = await openWs(url, localAddress);
    const c: Conn = {
      ...base(),
      echo: (p) => ws.send(p),
      subscribe: async () => {},
      publish: (p) => ws.send(`B${p}`),
      close: () => closeWs(ws),
    };
    ws.on('message', (d: Buffer) => {
      if (d[0] === 0x42) c.onDelivery();
      else c.onEcho(d.toString());
    });
    return c;
  },
};

/**
 * Opens a wsbridge session and reads its welcome. The welcome can arrive in the same read as the
 * handshake response, so it is listened for from the start rather than after 'open'.
 */
async function openWsbridge(url: string, protocol: string | undefined, localAddress: string | undefined, decode: (d: Buffer) => unknown): Promise<{ ws: WebSocket; replyTo: string }> {
  const ws = new WebSocket(url, protocol, { perMessageDeflate: false, localAddress });
  const replyTo = await new Promise<string>((resolve, reject) => {
    ws.once('error', reject);
    ws.once('message', (d: Buffer) => resolve((decode(d) as { reply_to: string }).reply_to));
  });
  return { ws, replyTo };
}

/**
 * wsbridge, protocol v1 JSON: echo is a publish to `echo.bench` with the session's reply_to (the
 * handler answers there); fan-out is a `sub` to `fan` and publishes to it.
 */
export const wsbridge: Target = {
  name: 'wsbridge',
  async connect(url, localAddress) {
    const { ws, replyTo } = await openWsbridge(url, undefined, localAddress, (d) => JSON.parse(d.toString()));
    let subscribed: () => void = () => {};
    const c: Conn = {
      ...base(),
      echo: (p) => ws.send(`{"subject":"echo.bench","reply_to":"${replyTo}","text":${JSON.stringify(p)}}`),
      subscribe: () => new Promise<void>((resolve) => {
        subscribed = resolve;
        ws.send('{"op":"sub","subject":"fan","id":"s"}');
      }),
      publish: (p) => ws.send(`{"subject":"fan","text":${JSON.stringify(p)}}`),
      close: () => closeWs(ws),
    };
    ws.on('message', (d: Buffer) => {
      // Deliveries on `fan` start with {"subject":"fan", (the encoder's fixed key order).
      if (d[12] === 0x66 /* f */ && d.toString('latin1', 0, 17) === '{"subject":"fan",') return c.onDelivery();
      const f = JSON.parse(d.toString()) as { op?: string; body?: string; id?: string };
      if (f.op === 'ok' && f.id === 's') return subscribed();
      if (f.op === undefined && f.body !== undefined) c.onEcho(Buffer.from(f.body, 'base64').toString());
    });
    return c;
  },
};

/**
 * wsbridge `req`/`res` (what the SDK's request() uses): each echo is a request to `echo.bench`
 * through the node's inbox; the handler answers the inbox, the client gets `res`.
 */
export const wsbridgeReq: Target = {
  name: 'wsbridge req/res',
  async connect(url, localAddress) {
    const { ws } = await openWsbridge(url, undefined, localAddress, (d) => JSON.parse(d.toString()));
    let n = 0;
    const c: Conn = {
      ...base(),
      echo: (p) => ws.send(`{"op":"req","id":"${(n++).toString(36)}","subject":"echo.bench","timeout_ms":60000,"text":${JSON.stringify(p)}}`),
      subscribe: async () => { throw new Error('echo only'); },
      publish: () => { throw new Error('echo only'); },
      close: () => closeWs(ws),
    };
    ws.on('message', (d: Buffer) => {
      const f = JSON.parse(d.toString()) as { op?: string; body?: string };
      if (f.op === 'res' && f.body !== undefined) c.onEcho(Buffer.from(f.body, 'base64').toString());
    });
    return c;
  },
};

/** wsbridge with the MessagePack subprotocol: binary frames, bodies as bytes (no base64). */
const packr = new Packr({ useRecords: false, mapsAsObjects: true, variableMapSize: true });
export const wsbridgeMsgpack: Target = {
  name: 'wsbridge (MessagePack)',
  async connect(url, localAddress) {
    const { ws, replyTo } = await openWsbridge(url, 'wsbridge.v1.msgpack', localAddress, (d) => packr.unpack(d));
    const c: Conn = {
      ...base(),
      echo: (p) => ws.send(packr.pack({ subject: 'echo.bench', reply_to: replyTo, body: Buffer.from(p) })),
      subscribe: async () => { throw new Error('echo only'); },
      publish: () => { throw new Error('echo only'); },
      close: () => closeWs(ws),
    };
    ws.on('message', (d: Buffer) => {
      const f = packr.unpack(d) as { op?: string; body?: Uint8Array };
      if (f.op === undefined && f.body !== undefined) c.onEcho(Buffer.from(f.body.buffer, f.body.byteOffset, f.body.byteLength).toString());
    });
    return c;
  },
};

/** Socket.IO over its WebSocket transport: echo with an ack, fan-out by broadcast. */
export const socketIo: Target = {
  name: 'Socket.IO',
  connect(url, localAddress) {
    return new Promise((resolve, reject) => {
      const s = io(url, { transports: ['websocket'], reconnection: false, localAddress } as unknown as Parameters<typeof io>[1]);
      s.once('connect_error', reject);
      s.once('connect', () => {
        const c: Conn = {
          ...base(),
          echo: (p) => s.emit('echo', p, (back: string) => c.onEcho(back)),
          subscribe: async () => {},
          publish: (p) => s.emit('B', p),
          close: async () => { s.disconnect(); },
        };
        s.on('fan', () => c.onDelivery());
        resolve(c);
      });
    });
  },
};

/** nats-server's WebSocket listener with the NATS JS client: request/reply echo, subject fan-out. */
export const natsWs: Target = {
  name: 'NATS (WebSocket)',
  async connect(url, localAddress) {
    const nc = await wsconnect({
      servers: url,
      // The same `ws` client as the other targets (and its localAddress), not Node's WebSocket.
      wsFactory: (u: string) => Promise.resolve({ socket: new WebSocket(u, { perMessageDeflate: false, localAddress }) as unknown as globalThis.WebSocket, encrypted: false }),
      maxReconnectAttempts: 0,
      noEcho: true,
    });
    const enc = new TextEncoder();
    const dec = new TextDecoder();
    const c: Conn = {
      ...base(),
      echo: (p) => void nc.request('echo.bench', enc.encode(p), { timeout: 60_000 }).then((m) => c.onEcho(dec.decode(m.data))),
      subscribe: async () => {
        nc.subscribe('fan', { callback: () => c.onDelivery() });
        await nc.flush();
      },
      publish: (p) => nc.publish('fan', enc.encode(p)),
      close: () => nc.close(),
    };
    return c;
  },
};
