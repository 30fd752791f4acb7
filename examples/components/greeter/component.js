// greeter: the component that docs/components.md, "Write your own component", builds. Subscribe
// it to `greeter.>` (pool size 1 keeps one count):
//   greeter.hello  {"name": "Ada"} → {"greeting": "Hello, Ada!", "times": 1}; publishes
//                  {"name", "times"} to events.greeted
//   greeter.time   asks clock.now (a request) and answers with what it heard
//   greeter.ping   [url] opens a WebSocket to a wsbridge gateway (default: this one's, on
//                  127.0.0.1:8080), pings it, answers with the ops it saw: ["welcome", "pong"]
import { messageHandler, publish, request, WebSocket } from 'wsbridge/guest';

const greeted = new Map(); // name → times, in this instance's memory

export const handler = messageHandler(async (msg) => {
  if (msg.subject === 'greeter.hello') {
    const { name } = msg.json();
    if (typeof name !== 'string' || name === '') throw new Error('expected {"name": "…"}');
    const times = (greeted.get(name) ?? 0) + 1;
    greeted.set(name, times);
    publish('events.greeted', { name, times });
    return { greeting: `Hello, ${name}!`, times };
  }
  if (msg.subject === 'greeter.time') {
    const now = await request('clock.now', '', { timeoutMs: 1000 });
    return `the clock says ${now.text}`;
  }
  if (msg.subject === 'greeter.ping') {
    const url = msg.text || 'ws://127.0.0.1:8080/ws';
    const ws = new WebSocket(url);
    const ops = [];
    await new Promise((resolve, reject) => {
      ws.onerror = (e) => reject(new Error(`cannot reach ${url}: ${e.message}`));
      ws.onmessage = (e) => {
        ops.push(JSON.parse(e.data).op);
        if (ops.length === 1) ws.send(JSON.stringify({ op: 'ping', id: 'greeter' }));
        else ws.close(1000, 'thanks');
      };
      ws.onclose = resolve;
    });
    return ops;
  }
  throw new Error(`nothing here answers ${msg.subject}`);
});
