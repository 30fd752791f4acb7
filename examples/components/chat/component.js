// chat: rooms with a member count, on the guest kit (wsbridge/guest). Subscribed to `chat.>`:
//   chat.<room>.join   → members + 1, announces {"event":"join","name":<body>,"members":n} on room.<room>
//   chat.<room>.leave  → members - 1, announces {"event":"leave","name":<body>,"members":n}
//   chat.<room>.send   → re-publishes {"event":"message","text":<body as text>,"members":n}
//   chat.<room>        → the same as chat.<room>.send (so `wsbridge pub chat.lobby hi` chats)
// join and leave answer their reply-to with {"members":n}. Counts live in this instance's memory, so
// run chat with a pool of 1 (or keep counts elsewhere) for one consistent count. The npm package
// ships it built with QuickJS: the kit's messaging half needs no event loop and no TextEncoder.
import { messageHandler, publish, reply } from 'wsbridge/guest';

const members = new Map();

export const handler = messageHandler((msg) => {
  const parts = msg.subject.split('.');
  if ((parts.length !== 2 && parts.length !== 3) || parts[0] !== 'chat') throw new Error(`chat: unexpected subject ${msg.subject}`);
  const [, room, action = 'send'] = parts;
  let n = members.get(room) ?? 0;
  if (action === 'join') members.set(room, ++n);
  else if (action === 'leave') members.set(room, (n = Math.max(0, n - 1)));
  else if (action !== 'send') throw new Error(`chat: unknown action ${action}`);
  publish(`room.${room}`, action === 'send' ? { event: 'message', text: msg.text, members: n } : { event: action, name: msg.text.slice(0, 64), members: n });
  if (action !== 'send' && msg.replyTo !== undefined) reply(msg, { members: n });
});
