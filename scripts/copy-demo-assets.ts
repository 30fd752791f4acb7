// Part of `npm run build`: the demo page's files (HTML, browser JS) are not TypeScript, so tsc
// does not emit them; copy them next to the compiled server (dist/demo/).
import { cpSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
cpSync(`${root}src/demo`, `${root}dist/demo`, { recursive: true });
