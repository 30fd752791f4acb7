// Types of wsbridge/guest, the component authoring kit (docs/components.md, "Write your own
// component"). The kit exists only inside a component built by `npm run build:components`, which
// binds it to the WIT interfaces the component's world imports.

/** A body: a string is sent as UTF-8 text, bytes as they are, undefined as an empty body, anything else as JSON. */
export type Body = string | Uint8Array | ArrayBuffer | ArrayBufferView | undefined | null | number | boolean | object;

/** A message: the one being handled, or the answer to a request. */
export declare class Message<T = unknown> {
  constructor(subject: string, body: Uint8Array, replyTo?: string);
  /** The subject it was published to. */
  readonly subject: string;
  /** The body, as bytes. */
  readonly body: Uint8Array;
  /** Where answers go, if anywhere. */
  readonly replyTo: string | undefined;
  /** The body as UTF-8 text (ill-formed bytes become U+FFFD). */
  readonly text: string;
  /** The body parsed as JSON; throws a SyntaxError naming the subject when it is not JSON. */
  json(): T;
}

/** A failed publish or request. */
export declare class MessagingError extends Error {
  /** The gateway's code: timeout, no_responders, handler_failed, invalid_subject, permission_denied, bus_unavailable, not_imported, no_event_loop, … */
  readonly code: string;
}

/** What handle-message receives (the WIT record as jco gives it). */
export interface BrokerMessage {
  subject: string;
  body: Uint8Array;
  replyTo?: string;
}

/**
 * The `handler` export, from a function called with each message. It may be async; a value it
 * returns (other than undefined) answers the message as reply() would; anything it throws or
 * rejects with becomes handle-message's err(string), and the instance carries on.
 */
export declare function messageHandler(fn: (msg: Message) => Body | void | Promise<Body | void>): {
  handleMessage(msg: BrokerMessage): void | Promise<void>;
};

/** Publishes a body to a subject; throws a MessagingError the gateway refused. */
export declare function publish(subject: string, body?: Body, options?: { replyTo?: string }): void;

/** Answers a message on its reply-to; throws a TypeError when it has none. */
export declare function reply(msg: Message, body?: Body): void;

/**
 * Sends a request; resolves with the first answer. `timeoutMs` 0 (the default) is the gateway's
 * REQUEST_TIMEOUT_MS. Rejects with a MessagingError (code timeout, no_responders, …).
 */
export declare function request<T = unknown>(subject: string, body?: Body, options?: { timeoutMs?: number }): Promise<Message<T>>;

/** The text handed back for a thrown value: "Name: message" for an Error; never throws. */
export declare function describeThrown(value: unknown): string;

export declare function encodeUtf8(text: string): Uint8Array;
export declare function decodeUtf8(bytes: Uint8Array): string;

export declare class MessageEvent<T = unknown> extends Event {
  constructor(type: string, init?: EventInit & { data?: T; origin?: string; lastEventId?: string });
  readonly data: T;
  readonly origin: string;
  readonly lastEventId: string;
  readonly source: null;
  readonly ports: readonly never[];
}

export declare class CloseEvent extends Event {
  constructor(type: string, init?: EventInit & { wasClean?: boolean; code?: number; reason?: string });
  readonly wasClean: boolean;
  readonly code: number;
  readonly reason: string;
}

/** The `error` event: a browser's plain Event, plus why in `message`. */
export declare class ErrorEvent extends Event {
  constructor(type: string, init?: EventInit & { message?: string; error?: unknown });
  readonly message: string;
  readonly error: unknown;
}

interface WebSocketEventMap {
  open: Event;
  message: MessageEvent<string | ArrayBuffer | Blob>;
  error: ErrorEvent;
  close: CloseEvent;
}

/**
 * The WHATWG WebSocket, over golem:websocket/client@1.5.0 or wasmcloud:websocket/client@0.1.1-draft
 * (whichever the world imports). Subprotocols need wasmcloud's.
 */
export declare class WebSocket extends EventTarget {
  constructor(url: string | URL, protocols?: string | string[]);
  static readonly CONNECTING: 0;
  static readonly OPEN: 1;
  static readonly CLOSING: 2;
  static readonly CLOSED: 3;
  readonly CONNECTING: 0;
  readonly OPEN: 1;
  readonly CLOSING: 2;
  readonly CLOSED: 3;
  readonly url: string;
  readonly readyState: 0 | 1 | 2 | 3;
  readonly bufferedAmount: number;
  readonly extensions: string;
  readonly protocol: string;
  binaryType: 'blob' | 'arraybuffer';
  send(data: string | ArrayBuffer | ArrayBufferView | Blob): void;
  close(code?: number, reason?: string): void;
  onopen: ((this: WebSocket, ev: Event) => unknown) | null;
  onmessage: ((this: WebSocket, ev: MessageEvent<string | ArrayBuffer | Blob>) => unknown) | null;
  onerror: ((this: WebSocket, ev: ErrorEvent) => unknown) | null;
  onclose: ((this: WebSocket, ev: CloseEvent) => unknown) | null;
  addEventListener<K extends keyof WebSocketEventMap>(type: K, listener: (this: WebSocket, ev: WebSocketEventMap[K]) => unknown, options?: boolean | AddEventListenerOptions): void;
  addEventListener(type: string, listener: EventListenerOrEventListenerObject | null, options?: boolean | AddEventListenerOptions): void;
  removeEventListener<K extends keyof WebSocketEventMap>(type: K, listener: (this: WebSocket, ev: WebSocketEventMap[K]) => unknown, options?: boolean | EventListenerOptions): void;
  removeEventListener(type: string, listener: EventListenerOrEventListenerObject | null, options?: boolean | EventListenerOptions): void;
}
