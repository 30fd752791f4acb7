// `npm start`: builds the echo and chat example components (cached), then runs
// `wsbridge serve --config examples/demo.json` in this same process, so a SIGTERM or SIGINT sent
// to `npm start` (npm forwards it to this process) reaches the gateway itself and stops it.
import { join } from 'node:path';
import { buildComponent, ROOT } from './build-components.ts';
import { main } from '../src/cli/main.ts';

for (const name of ['echo', 'chat']) {
  const r = await buildComponent(join(ROOT, 'examples/components', name));
  process.stdout.write(`${r.cached ? 'cached ' : 'built  '} ${r.path}${r.cached ? '' : ` (${(r.ms / 1000).toFixed(1)} s)`}\n`);
}
process.chdir(ROOT);
await main(['serve', '--config', 'examples/demo.json', ...process.argv.slice(2)]);
