// The admin page (/admin), served by the gateway itself: no CDN, no inline script or style, a
// strict Content-Security-Policy, and no framing (its close buttons must not be clickjacked). The
// page holds no data: it asks for the admin token and reads the operator API (/api/) with it.
// Served only when ADMIN_TOKEN is set. The files live in src/admin/ (the build copies them to
// dist/admin/).
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { ServerResponse } from 'node:http';

export const ADMIN_PATH = '/admin';

const FILES: Record<string, [name: string, type: string]> = {
  '/admin': ['index.html', 'text/html; charset=utf-8'],
  '/admin/': ['index.html', 'text/html; charset=utf-8'],
  '/admin/admin.js': ['admin.js', 'text/javascript; charset=utf-8'],
  '/admin/admin.css': ['admin.css', 'text/css; charset=utf-8'],
};

const HEADERS = {
  'content-security-policy': "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
  'x-frame-options': 'DENY',
  'referrer-policy': 'no-referrer',
  'cache-control': 'no-store',
  'x-content-type-options': 'nosniff',
};

const cache = new Map<string, Buffer>();

function read(name: string): Buffer {
  let body = cache.get(name);
  if (!body) {
    const here = (p: string) => fileURLToPath(new URL(p, import.meta.url));
    body = readFileSync([here(`../admin/${name}`), here(`../../src/admin/${name}`)].find((p) => existsSync(p))!);
    cache.set(name, body);
  }
  return body;
}

/** Whether `path` is one of the admin page's. */
export function isAdminPath(path: string): boolean {
  return path === ADMIN_PATH || path.startsWith(`${ADMIN_PATH}/`);
}

/** Serves an admin page file; false when `path` is not one. */
export function serveAdminAsset(path: string, res: ServerResponse): boolean {
  const f = FILES[path];
  if (!f) return false;
  res.writeHead(200, { 'content-type': f[1], ...HEADERS });
  res.end(read(f[0]));
  return true;
}
