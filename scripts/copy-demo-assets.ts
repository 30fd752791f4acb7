// Part of `npm run build`: the demo and admin pages' files (HTML, CSS, browser JS) are not
// TypeScript, so tsc does not emit them; copy them next to the compiled server (dist/demo/,
// dist/admin/).
import { cpSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
cpSync(`${root}src/demo`, `${root}dist/demo`, { recursive: true });
cpSync(`${root}src/admin`, `${root}dist/admin`, { recursive: true });
