// `npm run new:component -- <name> [--dir DIR]`: scaffolds a component that builds and runs as it
// is: DIR/<name>/ (DIR defaults to the directory npm was run in) with
//   component.js  the source, on the guest kit (wsbridge/guest): answers every message
//   world.wit     its WIT world: exports the wasmcloud:messaging handler, imports the consumer
//   build.json    what the build leaves out of StarlingMonkey (read by build:components)
//   README.md     the commands to build, run and try it
// and prints those commands. A name must be lower-case kebab-case (it names the folder, the WIT
// package and world, the .wasm file and the subjects), not a WIT keyword; an existing folder is
// never overwritten.
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ROOT, USER_CWD } from './build-components.ts';

/** Words WIT reserves (wit-parser's lexer, as jco 1.35 ships it): a world or package named after one would need %-escaping. */
const WIT_KEYWORDS = new Set([
  'as', 'async', 'bool', 'borrow', 'char', 'constructor', 'enum', 'export', 'f32', 'f64', 'flags', 'float32', 'float64', 'from', 'func',
  'future', 'import', 'include', 'interface', 'list', 'map', 'option', 'own', 'package', 'record', 'resource', 'result', 's8', 's16', 's32',
  's64', 'static', 'stream', 'string', 'tuple', 'type', 'u8', 'u16', 'u32', 'u64', 'use', 'variant', 'with', 'world', 'error-context',
]);
const NAME = /^[a-z][a-z0-9]*(-[a-z][a-z0-9]*)*$/;
const MAX_NAME = 64;

/** Why a name cannot be a component's, or null. */
export function nameError(name: string): string | null {
  if (name.length === 0) return 'the name is empty';
  if (name.length > MAX_NAME) return `the name is ${name.length} characters long: at most ${MAX_NAME}`;
  if (!NAME.test(name)) {
    return 'a component name is lower-case kebab-case: letters and digits in words joined by single hyphens, each word starting with a letter (e.g. "greeter", "order-api")';
  }
  if (WIT_KEYWORDS.has(name)) return `"${name}" is a WIT keyword`;
  return null;
}

export interface Scaffold {
  dir: string;
  files: string[];
}

/** Writes the scaffold into parent/<name>/; throws an Error with a message for the user. */
export function scaffold(name: string, parent: string): Scaffold {
  const why = nameError(name);
  if (why) throw new Error(`cannot make a component named ${JSON.stringify(name)}: ${why}`);
  const dir = resolve(parent, name);
  const exists = () => new Error(`${dir} already exists: not overwriting it (pick another name or --dir)`);
  if (existsSync(dir)) throw exists();
  const files: Record<string, string> = {
    'component.js': componentJs(name),
    'world.wit': worldWit(name),
    'build.json': `${JSON.stringify({ disable: ['http', 'fetch-event'] })}\n`,
    'README.md': readme(name, dir),
  };
  mkdirSync(parent, { recursive: true });
  try {
    // Not recursive: a folder (or a link) that appeared meanwhile is refused, never written into.
    mkdirSync(dir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') throw exists();
    throw e;
  }
  for (const [f, text] of Object.entries(files)) writeFileSync(join(dir, f), text);
  return { dir, files: Object.keys(files) };
}

function componentJs(name: string): string {
  return `// ${name}: a wsbridge component, subscribed to \`${name}.>\`. It answers every message that has a
// reply-to (a WebSocket client's request, or its plain publish) with a JSON object.
//
// The kit (wsbridge/guest) is bundled in by \`npm run build:components\`: messageHandler, reply,
// publish, request and WebSocket; see docs/components.md, "Write your own component".
import { messageHandler } from 'wsbridge/guest';

export const handler = messageHandler(async (msg) => {
  // msg.subject, msg.replyTo, msg.body (bytes), msg.text, msg.json().
  // What this returns answers the message; whatever it throws fails it (the instance carries on).
  return { component: '${name}', subject: msg.subject, text: msg.text };
});
`;
}

function worldWit(name: string): string {
  return `package local:${name};

/// The contracts ${name} uses: wsbridge calls its handler for every message on its
/// subscriptions, and it publishes (and makes requests) through the consumer.
world ${name} {
  import wasmcloud:messaging/consumer@0.2.0;
  export wasmcloud:messaging/handler@0.2.0;

  // To open WebSockets with the kit's WebSocket class, import one of:
  //   import golem:websocket/client@1.5.0;
  //   import wasmcloud:websocket/client@0.1.1-draft;
}
`;
}

/** The folder as the repository's root sees it: relative inside it, absolute outside. */
function fromRoot(dir: string): string {
  const r = relative(ROOT, dir);
  return r.startsWith('..') || r === '' ? dir : r;
}

function readme(name: string, dir: string): string {
  return `# ${name}

A wsbridge component. In the wsbridge repository's root (${ROOT.replace(/\/$/, '')}):

\`\`\`sh
npm run build:components -- ${fromRoot(dir)}      # → build/components/${name}.wasm (10–50 s the first time)
npx wsbridge serve --component build/components/${name}.wasm --subscribe '${name}.>'
\`\`\`

Then, from any WebSocket client connected to ws://127.0.0.1:8080/ws:

\`\`\`json
{"op":"req","id":"1","subject":"${name}.try","text":"hi"}
\`\`\`

The answer's body (base64) is \`{"component":"${name}","subject":"${name}.try","text":"hi"}\`.
Edit component.js and build again; docs/components.md has the rest.
`;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const argv = process.argv.slice(2);
  const usage = 'usage: npm run new:component -- <name> [--dir DIR]';
  let parent = USER_CWD;
  const names: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--dir') {
      const d = argv[++i];
      if (!d) {
        console.error(`--dir: expected a directory\n${usage}`);
        process.exit(2);
      }
      parent = resolve(USER_CWD, d);
    } else if (a === '--help' || a === '-h') {
      console.log(usage);
      process.exit(0);
    } else if (a.startsWith('-')) {
      console.error(`unknown option ${a}\n${usage}`);
      process.exit(2);
    } else names.push(a);
  }
  if (names.length !== 1) {
    console.error(`${names.length === 0 ? 'no component name given' : `one name at a time (got ${names.join(', ')})`}\n${usage}`);
    process.exit(2);
  }
  const name = names[0]!;
  let made: Scaffold;
  try {
    made = scaffold(name, parent);
  } catch (e) {
    console.error(`new:component: ${(e as Error).message}`);
    process.exit(2);
  }
  // Commands that work from where the user is: inside the repository, npm finds it and paths are
  // relative; outside, they start with a cd into it.
  const inside = !relative(ROOT, USER_CWD).startsWith('..');
  const from = inside ? USER_CWD : ROOT;
  const shown = (p: string) => {
    const r = relative(from, p);
    return r === '' ? '.' : r.startsWith('..') ? p : r;
  };
  const wasm = join(ROOT, 'build/components', `${name}.wasm`);
  const here = relative(USER_CWD, made.dir);
  console.log(`created ${here.startsWith('..') ? made.dir : here}/: ${made.files.join(', ')}

build it (10–50 s the first time, then cached) and run it:
${inside ? '' : `  cd ${ROOT.replace(/\/$/, '')}\n`}  npm run build:components -- ${shown(made.dir)}
  npx wsbridge serve --component ${shown(wasm)} --subscribe '${name}.>'
then send from any WebSocket client connected to ws://127.0.0.1:8080/ws:
  {"op":"req","id":"1","subject":"${name}.try","text":"hi"}`);
}
