// forwarder: subscribed to `fwd.>`, on the guest kit (wsbridge/guest). For fwd.<subject>, sends the
// body as a request to <subject> and answers the message's reply-to with the answer, or with
// "error: <reason>" when the request fails (timeout, no responders). The request is an async host
// import: the instance is suspended (JSPI) until the answer arrives.
import { messageHandler, request, reply } from 'wsbridge/guest';

const TIMEOUT_MS = 5000;

export const handler = messageHandler(async (msg) => {
  const target = msg.subject.slice('fwd.'.length);
  if (!msg.subject.startsWith('fwd.') || target.length === 0) throw new Error(`forwarder: unexpected subject ${msg.subject}`);
  let answer;
  try {
    answer = (await request(target, msg.body, { timeoutMs: TIMEOUT_MS })).body;
  } catch (e) {
    answer = `error: ${e.message}`;
  }
  if (msg.replyTo !== undefined) reply(msg, answer);
});
