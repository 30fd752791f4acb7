// The demo page and the browser build of the client SDK, served by the gateway itself (no CDN).
// The SDK is src/sdk/client.ts: served from dist/ when the build is there and current, else its
// types are stripped once at first request (Node's own stripTypeScriptTypes).
import { existsSync, readFileSync, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { ServerResponse } from 'node:http';

const here = (p: string) => fileURLToPath(new URL(p, import.meta.url));

interface Asset {
  type: string;
  body: Buffer;
}

let cache: Map<string, Asset> | undefined;

function sdkSource(): string {
  // From src/server/ (running the sources) or dist/server/ (running the build).
  const built = [here('../sdk/client.js'), here('../../dist/sdk/client.js')].find((p) => existsSync(p));
  const source = [here('../sdk/client.ts'), here('../../src/sdk/client.ts')].find((p) => existsSync(p));
  if (built && (!source || statSync(built).mtimeMs >= statSync(source).mtimeMs)) return readFileSync(built, 'utf8');
  if (!source) throw new Error('client SDK source not found');
  // Loaded lazily: the API is marked experimental and warns once when first used.
  return stripTypes(readFileSync(source, 'utf8'));
}

let stripTypes: (code: string) => string = () => {
  throw new Error('not initialised');
};

async function load(): Promise<Map<string, Asset>> {
  const mod = (await import('node:module')) as unknown as { stripTypeScriptTypes(code: string): string };
  stripTypes = (code) => mod.stripTypeScriptTypes(code);
  const demo = (name: string) => readFileSync([here(`../demo/${name}`), here(`../../src/demo/${name}`)].find((p) => existsSync(p))!);
  return new Map<string, Asset>([
    ['/', { type: 'text/html; charset=utf-8', body: demo('index.html') }],
    ['/demo.js', { type: 'text/javascript; charset=utf-8', body: demo('demo.js') }],
    ['/sdk/client.js', { type: 'text/javascript; charset=utf-8', body: Buffer.from(sdkSource()) }],
  ]);
}

/** Serves a demo asset; returns false when `path` is not one. */
export async function serveDemoAsset(path: string, res: ServerResponse): Promise<boolean> {
  if (path !== '/' && path !== '/demo.js' && path !== '/sdk/client.js') return false;
  cache ??= await load();
  const a = cache.get(path)!;
  res.writeHead(200, { 'content-type': a.type, 'cache-control': 'no-cache', 'x-content-type-options': 'nosniff' });
  res.end(a.body);
  return true;
}
