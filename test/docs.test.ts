// The docs are part of the contract: every setting is documented, every error code is listed in
// docs/protocol.md, and the README opens with the two Quick start commands.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { SETTINGS, flagName } from '../src/config/settings.ts';
import { ErrorCodes } from '../src/protocol/errors.ts';
import { ROOT } from './helpers.ts';

const read = (p: string) => readFileSync(ROOT + p, 'utf8');

test('docs/configuration.md documents every setting with its flag', () => {
  const doc = read('docs/configuration.md');
  for (const s of SETTINGS) {
    assert.ok(doc.includes(`\`${s.key}\``), `${s.key} missing`);
    assert.ok(doc.includes(`--${flagName(s.key)}`), `--${flagName(s.key)} missing`);
  }
});

test('docs/protocol.md lists every error code', () => {
  const doc = read('docs/protocol.md');
  for (const code of Object.keys(ErrorCodes)) assert.ok(doc.includes(`| \`${code}\` |`), `${code} missing from the error table`);
});

test('README opens with the two-command Quick start', () => {
  const readme = read('README.md');
  const quick = readme.slice(readme.indexOf('## Quick start'));
  assert.ok(quick.includes('npm install && npm start'));
  assert.ok(quick.includes('npm test'));
});

test('vendored WIT is byte-identical to shared/wit when shared/ is beside the repo', async (t) => {
  const { existsSync, readdirSync, statSync } = await import('node:fs');
  const shared = `${ROOT}../shared/wit/`;
  if (!existsSync(shared)) return t.skip('shared/ not present');
  const walk = (dir: string): string[] => readdirSync(dir).flatMap((f) => (statSync(dir + f).isDirectory() ? walk(`${dir}${f}/`).map((x) => `${f}/${x}`) : [f]));
  for (const f of walk(shared)) assert.ok(readFileSync(shared + f).equals(readFileSync(`${ROOT}wit/${f}`)), `wit/${f} differs`);
});
