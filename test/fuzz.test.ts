// Property tests (fast-check): the frame decoders, the subject rules and matcher, and config
// parsing never crash on arbitrary input; they accept or refuse with a documented error.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { pack } from 'msgpackr';
import { jsonCodec, msgpackCodec, CloseError } from '../src/protocol/codec.ts';
import { ProtocolError, ErrorCodes } from '../src/protocol/errors.ts';
import { patternsIntersect, subjectError, subjectMatches } from '../src/protocol/subject.ts';
import { SubjectTrie } from '../src/bus/subject-trie.ts';
import { loadConfig, ConfigError } from '../src/config/load.ts';
import { SETTINGS } from '../src/config/settings.ts';

const documented = new Set(Object.keys(ErrorCodes));

function decodesOrRefuses(decode: () => unknown): void {
  try {
    decode();
  } catch (e) {
    if (e instanceof ProtocolError) {
      assert.ok(documented.has(e.code), `undocumented code ${e.code}`);
      return;
    }
    if (e instanceof CloseError) {
      assert.equal(e.closeCode, 1007);
      return;
    }
    throw e;
  }
}

const frameLike = fc.dictionary(
  fc.constantFrom('op', 'subject', 'body', 'text', 'reply_to', 'id', 'queue', 'timeout_ms', 'since', 'ack', 'durable', 'ack_wait_ms', 'seq', 'token', 'x'),
  fc.oneof(fc.string(), fc.integer(), fc.double(), fc.boolean(), fc.constant(null), fc.constantFrom('pub', 'sub', 'unsub', 'req', 'ping', 'ack', 'auth', 'a.b', 'a.*', '>', 'aGk=')),
);

test('JSON decoder: arbitrary text and arbitrary frame-shaped objects', () => {
  fc.assert(fc.property(fc.string(), (s) => decodesOrRefuses(() => jsonCodec.decode(Buffer.from(s), false))), { numRuns: 2000 });
  fc.assert(fc.property(frameLike, (o) => decodesOrRefuses(() => jsonCodec.decode(Buffer.from(JSON.stringify(o)), false))), { numRuns: 3000 });
  fc.assert(fc.property(fc.uint8Array({ maxLength: 200 }), (b) => decodesOrRefuses(() => jsonCodec.decode(Buffer.from(b), true))), { numRuns: 2000 });
});

test('MessagePack decoder: arbitrary bytes and frame-shaped maps', () => {
  fc.assert(fc.property(fc.uint8Array({ maxLength: 300 }), (b) => decodesOrRefuses(() => msgpackCodec.decode(Buffer.from(b), true))), { numRuns: 3000 });
  fc.assert(fc.property(frameLike, (o) => decodesOrRefuses(() => msgpackCodec.decode(pack(o), true))), { numRuns: 3000 });
});

test('JSON message encoder: the same text as JSON.stringify of the documented shape, for any message', () => {
  const msg = fc.record({
    subject: fc.string(),
    body: fc.uint8Array({ maxLength: 300 }),
    replyTo: fc.option(fc.string(), { nil: undefined }),
    seq: fc.option(fc.nat(), { nil: undefined }),
    redelivered: fc.option(fc.integer({ min: 1, max: 50 }), { nil: undefined }),
  });
  fc.assert(fc.property(msg, (m) => {
    const expected: Record<string, unknown> = { subject: m.subject, body: Buffer.from(m.body).toString('base64'), reply_to: m.replyTo ?? null };
    const seq = m.redelivered !== undefined ? (m.seq ?? 0) : m.seq;
    if (seq !== undefined) expected.seq = seq;
    if (m.redelivered !== undefined) expected.redelivered = m.redelivered;
    const text = jsonCodec.encodeMessage({ subject: m.subject, body: m.body, replyTo: m.replyTo, seq, redelivered: m.redelivered });
    assert.equal(text, JSON.stringify(expected));
  }), { numRuns: 3000 });
});

test('JSON res encoder: the same text as JSON.stringify of {op, id, subject, body, reply_to}', () => {
  fc.assert(fc.property(fc.string(), fc.string(), fc.uint8Array({ maxLength: 300 }), fc.option(fc.string(), { nil: null }), (id, subject, body, replyTo) => {
    const text = jsonCodec.encode({ op: 'res', id, msg: { subject, body, replyTo } });
    assert.equal(text, JSON.stringify({ op: 'res', id, subject, body: Buffer.from(body).toString('base64'), reply_to: replyTo }));
  }), { numRuns: 3000 });
});

test('a decoded publish always has a valid literal subject', () => {
  fc.assert(fc.property(frameLike, (o) => {
    try {
      const f = jsonCodec.decode(Buffer.from(JSON.stringify(o)), false);
      if (f.op === 'pub') assert.equal(subjectError(f.msg.subject, false), null);
      if (f.op === 'sub') assert.equal(subjectError(f.subject, true), null);
    } catch (e) {
      if (!(e instanceof ProtocolError)) throw e;
    }
  }), { numRuns: 3000 });
});

const token = fc.oneof(fc.constantFrom('a', 'b', 'c', '*', '>'), fc.string({ minLength: 0, maxLength: 3 }));
const subjectish = fc.array(token, { minLength: 1, maxLength: 5 }).map((t) => t.join('.'));

test('subject rules never throw; the trie agrees with a reference matcher', () => {
  fc.assert(fc.property(fc.string(), fc.boolean(), (s, w) => {
    const r = subjectError(s, w);
    assert.ok(r === null || typeof r === 'string');
  }), { numRuns: 3000 });
  // The reference: the plain token-by-token matcher (subjectMatches), not the trie.
  const reference = subjectMatches;
  fc.assert(fc.property(fc.array(subjectish, { maxLength: 8 }), subjectish, (patterns, subject) => {
    const valid = patterns.filter((p) => subjectError(p, true) === null);
    if (subjectError(subject, false) !== null) return;
    const trie = new SubjectTrie<string>();
    valid.forEach((p) => trie.insert(p, p));
    const got = new Set(trie.match(subject));
    const want = new Set(valid.filter((p) => reference(p, subject)));
    assert.deepEqual(got, want);
  }), { numRuns: 3000 });
});

test('two patterns intersect exactly when some subject matches both', () => {
  // The reference: every subject of up to five tokens over a, b and one token neither names.
  const tokens = ['a', 'b', 'z'];
  const subjects: string[] = [];
  const grow = (prefix: string[]) => {
    if (prefix.length > 0) subjects.push(prefix.join('.'));
    if (prefix.length < 5) for (const t of tokens) grow([...prefix, t]);
  };
  grow([]);
  const pattern = fc.array(fc.constantFrom('a', 'b', '*', '>'), { minLength: 1, maxLength: 4 }).map((t) => t.join('.')).filter((p) => subjectError(p, true) === null);
  fc.assert(fc.property(pattern, pattern, (x, y) => {
    const want = subjects.some((s) => subjectMatches(x, s) && subjectMatches(y, s));
    assert.equal(patternsIntersect(x, y), want, `${x} and ${y}`);
    assert.equal(patternsIntersect(y, x), want);
  }), { numRuns: 2000 });
});

test('config parsing: arbitrary values for every setting give a value or a ConfigError naming the key', () => {
  const keys = SETTINGS.map((s) => s.key).filter((k) => k !== 'MODE');
  fc.assert(fc.property(fc.constantFrom(...keys), fc.string({ maxLength: 30 }), (key, value) => {
    try {
      loadConfig({ env: {}, flags: { MODE: 'server', [key]: value } });
    } catch (e) {
      assert.ok(e instanceof ConfigError, `${key}=${JSON.stringify(value)} threw ${String(e)}`);
      assert.ok(e.message.includes(key) || /NATS_URL|TLS_|JWT_|HISTORY_SUBJECTS|REQUEST_TIMEOUT|RECONNECT/.test(e.message), e.message);
    }
  }), { numRuns: 3000 });
});
