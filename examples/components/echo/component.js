// echo: answers every message that has a reply-to with the same body.
// A thrown string becomes handle-message's err(string). (Under StarlingMonkey a thrown Error
// object cannot be turned into the string and traps the instance instead: throw strings.)
import { publish } from 'wasmcloud:messaging/consumer@0.2.0';

export const handler = {
  handleMessage(msg) {
    if (msg.replyTo === undefined) throw `echo: ${msg.subject} has no reply-to`;
    publish({ subject: msg.replyTo, body: msg.body, replyTo: undefined });
  },
};
