import { test } from 'node:test';
import assert from 'node:assert/strict';
import { subjectError, MAX_SUBJECT_LENGTH } from '../src/protocol/subject.ts';
import { SubjectTrie } from '../src/bus/subject-trie.ts';

test('subject rules: valid and invalid subjects', () => {
  for (const s of ['a', 'orders.new', 'a.b.c', '_INBOX.x', 'a-b_c.D9']) assert.equal(subjectError(s, false), null, s);
  for (const s of ['a.*', 'a.>', '*', '>', '*.b.>']) assert.equal(subjectError(s, true), null, s);
  const bad: Array<[unknown, boolean]> = [
    ['', false], ['a..b', false], ['.a', false], ['a.', false], ['a b', false], ['a\tb', false],
    ['a.*', false], ['a.>', false], ['a.>.b', true], ['a*', true], ['a.b*', true], ['>a', true],
    [42, false], [null, true], ['x'.repeat(MAX_SUBJECT_LENGTH + 1), false],
  ];
  for (const [s, wild] of bad) assert.notEqual(subjectError(s, wild), null, String(s));
  assert.equal(subjectError('x'.repeat(MAX_SUBJECT_LENGTH), false), null);
});

test('trie matches literals, * and > like NATS', () => {
  const t = new SubjectTrie<string>();
  t.insert('a.b', 'lit');
  t.insert('a.*', 'star');
  t.insert('a.>', 'tail');
  t.insert('>', 'all');
  t.insert('*.b.*', 'mid');
  const m = (s: string) => [...t.match(s)].sort();
  assert.deepEqual(m('a.b'), ['all', 'lit', 'star', 'tail']);
  assert.deepEqual(m('a.c'), ['all', 'star', 'tail']);
  assert.deepEqual(m('a.b.c'), ['all', 'mid', 'tail']);
  assert.deepEqual(m('a'), ['all']); // `a.>` needs at least one more token
  assert.deepEqual(m('x.y'), ['all']);
  assert.equal(t.size, 5);
  assert.equal(t.remove('a.>', 'tail'), true);
  assert.equal(t.remove('a.>', 'tail'), false);
  assert.deepEqual(m('a.b.c'), ['all', 'mid']); // the cache was invalidated
  t.remove('>', 'all');
  t.remove('a.b', 'lit');
  t.remove('a.*', 'star');
  t.remove('*.b.*', 'mid');
  assert.equal(t.size, 0);
  assert.deepEqual(m('a.b'), []);
});
