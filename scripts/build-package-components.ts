// Part of `npm pack`: builds the echo and chat examples for the npm package, with the QuickJS
// engine (about 1.6 MB each, against 12 MB for StarlingMonkey), into components/. A consumer
// serves them without any build toolchain:
//   npx wsbridge serve --component node_modules/wsbridge/components/echo.wasm --subscribe 'echo.>' \
//                      --component node_modules/wsbridge/components/chat.wasm --subscribe 'chat.>' --pool-size 1
import { copyFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { buildComponent, ROOT } from './build-components.ts';

const out = join(ROOT, 'components');
mkdirSync(out, { recursive: true });
for (const name of ['echo', 'chat']) {
  const r = await buildComponent(join(ROOT, 'examples/components', name), { engine: 'quickjs', outDir: join(ROOT, 'build/package-components') });
  copyFileSync(r.path, join(out, `${name}.wasm`));
  console.log(`${r.cached ? 'cached ' : 'built  '} components/${name}.wasm (QuickJS)`);
}
