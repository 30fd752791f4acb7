// taken: a wsbridge component, subscribed to `taken.>`. It answers every message that has a
// reply-to (a WebSocket client's request, or its plain publish) with a JSON object.
//
// The kit (wsbridge/guest) is bundled in by `npm run build:components`: messageHandler, reply,
// publish, request and WebSocket; see docs/components.md, "Write your own component".
import { messageHandler } from 'wsbridge/guest';

export const handler = messageHandler(async (msg) => {
  // msg.subject, msg.replyTo, msg.body (bytes), msg.text, msg.json().
  // What this returns answers the message; whatever it throws fails it (the instance carries on).
  return { component: 'taken', subject: msg.subject, text: msg.text };
});
