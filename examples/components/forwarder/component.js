// forwarder: subscribed to `fwd.>`. For fwd.<subject>, calls consumer.request(<subject>, body)
// and publishes the answer (or the error text) to the message's reply-to. The request is an
// async host import: the instance is suspended (JSPI) until the answer arrives.
import { request, publish } from 'wasmcloud:messaging/consumer@0.2.0';

const TIMEOUT_MS = 5000;

export const handler = {
  handleMessage(msg) {
    const target = msg.subject.slice('fwd.'.length);
    if (!msg.subject.startsWith('fwd.') || target.length === 0) throw `forwarder: unexpected subject ${msg.subject}`;
    let answer;
    try {
      answer = request(target, msg.body, TIMEOUT_MS).body;
    } catch (e) {
      // A failed request (timeout, no responders) comes back as the error text.
      answer = new TextEncoder().encode(`error: ${e?.payload ?? e}`);
    }
    if (msg.replyTo !== undefined) publish({ subject: msg.replyTo, body: answer, replyTo: undefined });
  },
};
