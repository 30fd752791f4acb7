// wsbridge/guest: the authoring kit component sources import. `npm run build:components` bundles
// it into the component (with the WIT interfaces the world imports bound in; see bindings.js).
//
//   import { messageHandler, reply, publish, request, WebSocket } from 'wsbridge/guest';
export { messageHandler, publish, reply, request, Message, MessagingError } from './messaging.js';
export { WebSocket, MessageEvent, CloseEvent, ErrorEvent } from './websocket.js';
export { encodeUtf8, decodeUtf8 } from './utf8.js';
export { describeThrown } from './bodies.js';
