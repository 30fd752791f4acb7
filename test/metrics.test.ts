// /metrics in Prometheus text format: counters move with real traffic, the request histogram
// sees req operations by result, and METRICS_TOKEN guards the endpoint.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { startGateway, TestClient } from './helpers.ts';

const gw = await startGateway();
after(() => gw.shutdown());
const base = `http://127.0.0.1:${gw.server!.address.port}`;

const value = (text: string, series: string): number => {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line ? Number(line.split(' ')[1]) : NaN;
};

test('metrics follow sessions, messages, requests and close codes', async () => {
  const res0 = await fetch(`${base}/metrics`);
  assert.equal(res0.status, 200);
  assert.match(res0.headers.get('content-type') ?? '', /text\/plain/);
  const before = await res0.text();
  const a = await TestClient.connect(gw);
  const b = await TestClient.connect(gw);
  await b.call({ op: 'sub', subject: 'm.x', id: '1' });
  a.send({ subject: 'm.x', text: 'hello' });
  await b.next((f) => f.subject === 'm.x');
  assert.equal((await a.call({ op: 'req', id: 'r', subject: 'nobody', text: 'x' })).code, 'no_responders');
  a.send('not json');
  await a.next((f) => f.op === 'error');
  const during = await (await fetch(`${base}/metrics`)).text();
  assert.equal(value(during, 'wsbridge_sessions'), 2);
  assert.ok(value(during, 'wsbridge_frames_in_total') >= value(before, 'wsbridge_frames_in_total') + 4);
  assert.equal(value(during, 'wsbridge_messages_in_total{kind="publish"}'), 1);
  assert.equal(value(during, 'wsbridge_messages_in_total{kind="sub"}'), 1);
  assert.ok(value(during, 'wsbridge_messages_out_total{kind="control"}') >= 2);
  assert.ok(value(during, 'wsbridge_messages_out_total{kind="message"}') >= 3, 'welcomes and the delivery');
  assert.ok(value(during, 'wsbridge_bytes_out_total') > value(before, 'wsbridge_bytes_out_total'));
  assert.equal(value(during, 'wsbridge_request_duration_seconds_count{result="no_responders"}'), 1);
  assert.ok(value(during, 'wsbridge_protocol_errors_total') >= 2);
  a.close();
  await a.closed;
  b.ws.close(4000, 'bye');
  await b.closed;
  let after1 = '';
  for (let i = 0; i < 100; i++) {
    after1 = await (await fetch(`${base}/metrics`)).text();
    if (value(after1, 'wsbridge_sessions') === 0) break;
  }
  assert.equal(value(after1, 'wsbridge_sessions'), 0);
  assert.ok(value(after1, 'wsbridge_disconnects_total{code="4000"}') >= 1);
  assert.ok(value(after1, 'wsbridge_disconnects_total{code="1005"}') >= 1);
  assert.match(after1, /^wsbridge_process_resident_memory_bytes /m);
});

test('METRICS_TOKEN guards /metrics', async () => {
  const g = await startGateway({ METRICS_TOKEN: 'scrape' });
  try {
    const url = `http://127.0.0.1:${g.server!.address.port}/metrics`;
    assert.equal((await fetch(url)).status, 401);
    assert.equal((await fetch(url, { headers: { authorization: 'Bearer scrape' } })).status, 200);
  } finally {
    await g.shutdown();
  }
});
