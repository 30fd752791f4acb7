// The demo page and the browser build of the client SDK, served by the gateway itself (no CDN).
// Running the build (dist/server/demo-assets.js, an installed package), the SDK is the compiled
// dist/sdk/client.js next to it. Running the sources (src/server/demo-assets.ts, npm start, the
// tests), it is src/sdk/client.ts compiled once at first request by TypeScript, a dev dependency
// there (Node's own stripTypeScriptTypes would print an ExperimentalWarning).
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { ServerResponse } from 'node:http';

const here = (p: string) => fileURLToPath(new URL(p, import.meta.url));
const fromSource = import.meta.url.endsWith('.ts');

interface Asset {
  type: string;
  body: Buffer;
}

let cache: Map<string, Asset> | undefined;
const ASSET_PATHS = new Set(['/', '/demo.js', '/sdk/client.js', '/favicon.ico']);
// Two linked nodes: small enough to inline, and browsers accept SVG at /favicon.ico.
const FAVICON = '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32"><rect width="32" height="32" rx="7" fill="#1b1f24"/><path d="M10 16h12" stroke="#6cf" stroke-width="3"/><circle cx="9" cy="16" r="4.5" fill="#0b6"/><circle cx="23" cy="16" r="4.5" fill="#06c"/></svg>';

function sdkSource(): string {
  if (!fromSource) return readFileSync(here('../sdk/client.js'), 'utf8');
  return stripTypes(readFileSync(here('../sdk/client.ts'), 'utf8'));
}

let stripTypes: (code: string) => string = () => {
  throw new Error('not initialised');
};

async function load(): Promise<Map<string, Asset>> {
  if (fromSource) {
    const ts = (await import('typescript')).default;
    stripTypes = (code) => ts.transpileModule(code, { compilerOptions: { target: ts.ScriptTarget.ES2023, module: ts.ModuleKind.ESNext } }).outputText;
  }
  // The page itself: src/demo/ (the build copies it to dist/demo/).
  const demo = (name: string) => readFileSync([here(`../demo/${name}`), here(`../../src/demo/${name}`)].find((p) => existsSync(p))!);
  return new Map<string, Asset>([
    ['/', { type: 'text/html; charset=utf-8', body: demo('index.html') }],
    ['/demo.js', { type: 'text/javascript; charset=utf-8', body: demo('demo.js') }],
    ['/sdk/client.js', { type: 'text/javascript; charset=utf-8', body: Buffer.from(sdkSource()) }],
    ['/favicon.ico', { type: 'image/svg+xml', body: Buffer.from(FAVICON) }],
  ]);
}

/** Serves a demo asset; returns false when `path` is not one. */
export async function serveDemoAsset(path: string, res: ServerResponse): Promise<boolean> {
  if (!ASSET_PATHS.has(path)) return false;
  cache ??= await load();
  const a = cache.get(path)!;
  res.writeHead(200, { 'content-type': a.type, 'cache-control': 'no-cache', 'x-content-type-options': 'nosniff' });
  res.end(a.body);
  return true;
}
