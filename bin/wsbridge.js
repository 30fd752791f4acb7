#!/usr/bin/env node
// The installed `wsbridge` command. Plain JavaScript that any Node can parse, so that an old Node
// gets a clear answer instead of a crash deep in a dependency; then the compiled CLI.
const major = Number(process.versions.node.split('.')[0]);
if (major < 24) {
  process.stderr.write(
    `wsbridge needs Node.js 24 or newer; this is Node ${process.version} (${process.execPath}).\n` +
      'Install Node 24 (https://nodejs.org/, or `nvm install 24`), or run it with a Node 24 from npm:\n' +
      '  npx -p node@24 -p wsbridge wsbridge --help\n',
  );
  process.exit(1);
}
const { main } = await import('../dist/cli/main.js');
await main(process.argv.slice(2));
