// Every command a reader can copy from the README or docs/ runs as written: the `wsbridge` bin is
// reached through `npx` (it is not on PATH in a clone or a project that depends on wsbridge).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { ROOT } from './helpers.ts';

const files = ['README.md', ...readdirSync(`${ROOT}docs`).filter((f) => f.endsWith('.md')).map((f) => `docs/${f}`)];

test('shell blocks and command tables call the CLI as `npx wsbridge`, never bare `wsbridge`', () => {
  const bare: string[] = [];
  for (const f of files) {
    const lines = readFileSync(ROOT + f, 'utf8').split('\n');
    let block: string | undefined; // the language of the fenced block we are in
    lines.forEach((line, i) => {
      const fence = /^```(\w*)/.exec(line);
      if (fence) {
        block = block === undefined ? fence[1] : undefined;
        return;
      }
      const inShell = block === 'sh' || block === 'bash' || block === 'shell';
      const commands = inShell ? [line] : [...line.matchAll(/^\|\s*`([^`]*)`/g)].map((m) => m[1]!);
      for (const c of commands) if (/(^|[\s;&|(])wsbridge (serve|connect|pub|sub|req|sessions|--)/.test(c) && !/npx wsbridge/.test(c)) bare.push(`${f}:${i + 1}: ${c.trim()}`);
    });
  }
  assert.deepEqual(bare, []);
});
