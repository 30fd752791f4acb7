// chat: rooms with a member count. Subscribed to `chat.>`:
//   chat.<room>.join   → members + 1, announces {"event":"join","name":<body>,"members":n} on room.<room>
//   chat.<room>.leave  → members - 1, announces {"event":"leave","name":<body>,"members":n}
//   chat.<room>.send   → re-publishes {"event":"message","text":<body as text>,"members":n}
//   chat.<room>        → the same as chat.<room>.send (so `wsbridge pub chat.lobby hi` chats)
// join and leave answer their reply-to with {"members":n}. Counts live in this instance's memory, so
// run chat with a pool of 1 (or keep counts elsewhere) for one consistent count.
import { publish } from 'wasmcloud:messaging/consumer@0.2.0';

const members = new Map();

// UTF-8 by hand: QuickJS-built guests (the npm package ships chat built that way) have no
// TextEncoder/TextDecoder. encodeURIComponent/decodeURIComponent do the UTF-8 work.
function encode(text) {
  const bin = unescape(encodeURIComponent(text));
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}
function decode(bytes) {
  let bin = '';
  for (let i = 0; i < bytes.length; i++) bin += String.fromCharCode(bytes[i]);
  try {
    return decodeURIComponent(escape(bin));
  } catch {
    return bin; // not valid UTF-8: keep the bytes as Latin-1 rather than fail the message
  }
}

function send(subject, value) {
  publish({ subject, body: encode(JSON.stringify(value)), replyTo: undefined });
}

export const handler = {
  handleMessage(msg) {
    const parts = msg.subject.split('.');
    if ((parts.length !== 2 && parts.length !== 3) || parts[0] !== 'chat') throw `chat: unexpected subject ${msg.subject}`;
    const [, room, action = 'send'] = parts;
    let n = members.get(room) ?? 0;
    if (action === 'join') members.set(room, ++n);
    else if (action === 'leave') members.set(room, (n = Math.max(0, n - 1)));
    else if (action !== 'send') throw `chat: unknown action ${action}`;
    const text = decode(msg.body);
    const event = action === 'send' ? { event: 'message', text, members: n } : { event: action, name: text.slice(0, 64), members: n };
    send(`room.${room}`, event);
    if (action !== 'send' && msg.replyTo !== undefined) send(msg.replyTo, { members: n });
  },
};
