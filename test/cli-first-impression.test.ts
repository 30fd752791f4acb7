// What a new user meets first on the command line: the help (short by default, full with
// --help-all, different per command), the shell tools' exits and messages, readable logs on a
// terminal with colour decided on the stream written to (and NO_COLOR), `npm start` (the demo URL,
// PORT, the README's chat.lobby example, SIGTERM to its PID), and PORT's precedence.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import net from 'node:net';
import { SETTINGS } from '../src/config/settings.ts';
import { loadConfig } from '../src/config/load.ts';
import { TOPICS } from '../src/cli/args.ts';
import { spawnCli, withGateway, TestClient, CLI, ROOT } from './helpers.ts';

async function cli(args: string[], env: Record<string, string> = {}) {
  const { exit, output } = await spawnCli(args, env, null);
  return { code: (await exit).code, out: output() };
}

const PATH = `${dirname(process.execPath)}:${process.env.PATH ?? ''}`;

/** Output of `p` until `re` matches (or the process exits, or `ms` pass: then it rejects). */
function waitOutput(p: ChildProcess, re: RegExp, ms = 60_000): Promise<RegExpMatchArray> {
  let out = '';
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`no ${re} within ${ms} ms:\n${out}`)), ms);
    const check = (d: Buffer) => {
      out += d.toString();
      const m = out.match(re);
      if (m) {
        clearTimeout(t);
        resolve(m);
      }
    };
    p.stdout?.on('data', check);
    p.stderr?.on('data', check);
    p.on('exit', (code) => {
      clearTimeout(t);
      reject(new Error(`exited ${code} before ${re}:\n${out}`));
    });
  });
}

function exited(p: ChildProcess, ms = 20_000): Promise<{ code: number | null; signal: string | null }> {
  if (p.exitCode !== null || p.signalCode !== null) return Promise.resolve({ code: p.exitCode, signal: p.signalCode });
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`still running after ${ms} ms`)), ms);
    p.on('exit', (code, signal) => {
      clearTimeout(t);
      resolve({ code, signal });
    });
  });
}

/**
 * The process group of the shell `script` runs in its own session (on the pty): signals to
 * `script`'s group never reach it, and the gateway ignores the SIGHUP it gets when the pty closes
 * (SIGHUP reloads TLS), so it is signalled directly.
 */
const ptyGroups = new WeakMap<ChildProcess, Promise<number>>();

/** Signals a detached process group (and the pty session's group under it), ignoring one that is gone. */
function signalGroup(p: ChildProcess, signal: NodeJS.Signals): Promise<void> {
  const groups = [p.pid!];
  const pty = ptyGroups.get(p);
  const send = () => {
    for (const g of groups) {
      try {
        process.kill(-g, signal);
      } catch {
        // already gone
      }
    }
  };
  if (!pty) return (send(), Promise.resolve());
  // The shell prints its pid first thing, so it is known long before anything is signalled.
  return within(pty, 5000, 'the pty shell\'s pid').then((g) => (groups.push(g), send()), () => send());
}

/** Kills a detached process group, ignoring one that is gone. */
function killGroup(p: ChildProcess): Promise<void> {
  return signalGroup(p, 'SIGKILL');
}

/** `p`, or a rejection after `ms`: every wait here has a bound. */
function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let t: NodeJS.Timeout;
  return Promise.race([p, new Promise<never>((_, reject) => (t = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms)))]).finally(() => clearTimeout(t));
}

/** A loopback port nothing listens on. */
async function freePort(): Promise<number> {
  const s = net.createServer().listen(0, '127.0.0.1');
  await new Promise((r) => s.once('listening', r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

const refused = (port: number) => new Promise<boolean>((resolve) => {
  const s = net.connect(port, '127.0.0.1');
  s.once('connect', () => (s.destroy(), resolve(false)));
  s.once('error', () => resolve(true));
});

/** Runs a shell command line under `script`, which gives it a terminal (a pty) for whatever it does not redirect. */
function underTerminal(command: string, env: Record<string, string> = {}): ChildProcess {
  const p = spawn('script', ['-qfec', `echo "pty-group:$$"; ${command}`, '/dev/null'], { env: { PATH, TERM: 'xterm', ...env }, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  const group = waitOutput(p, /pty-group:(\d+)/, 30_000).then((m) => Number(m[1]));
  group.catch(() => {}); // awaited (or not) by signalGroup
  ptyGroups.set(p, group);
  return p;
}

test('help: short by default and grouped; --help-all has every setting once, by topic; serve and connect differ', async () => {
  const short = await cli(['--help']);
  assert.equal(short.code, 0);
  assert.ok(short.out.split('\n').length <= 40, `--help is ${short.out.split('\n').length} lines`);
  for (const s of ['Run a gateway:', 'Talk to a running gateway:', 'pub <subject>', 'sub <pattern>', 'req <subject>', 'sessions', '--help-all']) assert.ok(short.out.includes(s), s);

  const listed = TOPICS.flatMap((t) => t.keys);
  assert.deepEqual([...listed].sort(), SETTINGS.map((s) => s.key).sort(), 'every setting in exactly one topic');
  const all = await cli(['--help-all']);
  for (const t of TOPICS) assert.ok(all.out.includes(`${t.title}:`), t.title);

  const serve = await cli(['serve', '--help']);
  const connect = await cli(['connect', '--help']);
  assert.notEqual(serve.out, connect.out);
  assert.match(serve.out, /Usage: wsbridge serve/);
  assert.match(connect.out, /Usage: wsbridge connect <ws-or-wss-url>/);
  const serveAll = await cli(['serve', '--help-all']);
  const connectAll = await cli(['connect', '--help-all']);
  assert.ok(serveAll.out.includes('--max-connections ') && !serveAll.out.includes('--raw-subject'), 'serve --help-all: server settings only');
  assert.ok(connectAll.out.includes('--raw-subject') && !connectAll.out.includes('--max-connections '), 'connect --help-all: client settings only');
  assert.match((await cli(['sessions', '--help'])).out, /--json/);
});

test('unknown command lists every command; extra positionals are refused (exit 2)', async () => {
  const unknown = await cli(['publish', 'x']);
  assert.equal(unknown.code, 2);
  for (const c of ['serve', 'connect', 'pub', 'sub', 'req', 'sessions']) assert.ok(unknown.out.includes(c), c);
  for (const args of [['pub', 'a.b', 'hello', 'world'], ['sub', 'a', 'b'], ['req', 'a', 'b', 'c'], ['sessions', 'extra']]) {
    const r = await cli(args);
    assert.equal(r.code, 2, args.join(' '));
    assert.match(r.out, /unexpected argument/);
  }
});

test('sub with a refused pattern exits 1 with the code and never says "subscribed"; sessions says what is wrong', () => withGateway({}, async (gw) => {
  const bad = await cli(['sub', 'bad*', '--url', gw.server!.url]);
  assert.equal(bad.code, 1);
  assert.match(bad.out, /invalid_subject/);
  assert.doesNotMatch(bad.out, /subscribed to/);

  // A dead URL: the reason, not just "fetch failed".
  const deadPort = await freePort();
  const dead = await cli(['sessions', '--url', `http://127.0.0.1:${deadPort}`]);
  assert.equal(dead.code, 1);
  assert.ok(dead.out.includes(`cannot reach the operator API at http://127.0.0.1:${deadPort} (ECONNREFUSED)`), dead.out);
  // A server without ADMIN_TOKEN, while the user gave one: the server is the one to fix.
  const base = `http://127.0.0.1:${gw.server!.address.port}`;
  const off = await cli(['sessions', '--url', base, '--admin-token', 'mine']);
  assert.equal(off.code, 1);
  assert.match(off.out, /404 api_disabled: the gateway was started without ADMIN_TOKEN/);
}));

test('colour: decided on the stream written to (errors on a terminal stderr are coloured, a redirected one is not); NO_COLOR honoured', () => withGateway({}, async (gw) => {
  const dir = mkdtempSync(join(tmpdir(), 'wsbridge-tty-'));
  const req = `${JSON.stringify(process.execPath)} ${JSON.stringify(CLI)} req nobody.home x --url ${gw.server!.url}`;
  const run = async (cmd: string, env: Record<string, string> = {}) => {
    const p = underTerminal(cmd, env);
    let out = '';
    p.stdout!.on('data', (d: Buffer) => (out += d));
    try {
      await exited(p);
    } finally {
      await killGroup(p);
    }
    return out;
  };
  // stdout redirected to a file, stderr a terminal: the error code is red on the terminal.
  const onTerminal = await run(`${req} > ${dir}/out.txt`);
  assert.match(onTerminal, /\x1b\[31mno_responders\x1b\[0m/);
  // stdout a terminal, stderr redirected to a file: no escape codes land in the file.
  await run(`${req} 2> ${dir}/err.txt`);
  const err = readFileSync(`${dir}/err.txt`, 'utf8');
  assert.match(err, /no_responders/);
  assert.doesNotMatch(err, /\x1b\[/);
  // NO_COLOR: no colour even on a terminal.
  const plain = await run(`${req} > ${dir}/out2.txt`, { NO_COLOR: '1' });
  assert.match(plain, /no_responders/);
  assert.doesNotMatch(plain, /\x1b\[/);
}));

test('logs: readable and coloured on a terminal, JSON lines in a file; session open/close and auth failures at info without secrets', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'wsbridge-logs-'));
  const serve = `${JSON.stringify(process.execPath)} ${JSON.stringify(CLI)} serve --listen 127.0.0.1:0 --server-auth-token right-secret-token`;
  const session = async (p: ChildProcess, ready: Promise<RegExpMatchArray>) => {
    const url = (await ready)[1]!;
    const ok = await TestClient.connect(`${url}?token=right-secret-token`);
    ok.close();
    await within(ok.closed, 5000, 'closed');
    const wrong = new TestClient(`${url}?token=wrong-secret-token`);
    await within(wrong.closed, 5000, 'refused at the handshake');
    await signalGroup(p, 'SIGTERM');
    await exited(p);
  };

  // stderr on a terminal (stdout piped, so not one): pretty and coloured.
  const tty = underTerminal(`${serve} | cat`, { LOG_LEVEL: 'info' });
  t.after(() => killGroup(tty));
  let pretty = '';
  tty.stdout!.on('data', (d: Buffer) => (pretty += d));
  const ready = waitOutput(tty, /listening on (ws:\/\/[\w.:/]+)/, 30_000);
  await session(tty, ready);
  assert.match(pretty, /session opened/);
  assert.match(pretty, /session closed/);
  assert.match(pretty, /authentication failed/);
  assert.match(pretty, /\x1b\[3\dm/, 'coloured level');
  assert.doesNotMatch(pretty, /^\{"level"/m, 'not JSON on a terminal');
  assert.doesNotMatch(pretty, /right-secret-token|wrong-secret-token/, 'no secrets in logs');

  // stderr to a file (stdout on a terminal): JSON lines, no escape codes.
  const file = underTerminal(`${serve} 2> ${dir}/log.txt`, { LOG_LEVEL: 'info' });
  t.after(() => killGroup(file));
  await session(file, waitOutput(file, /listening on (ws:\/\/\S+)/, 30_000));
  const lines = readFileSync(`${dir}/log.txt`, 'utf8').trim().split('\n');
  assert.ok(lines.length >= 3);
  for (const l of lines) assert.doesNotThrow(() => JSON.parse(l), l);
  assert.ok(lines.some((l) => JSON.parse(l).msg === 'session opened' && JSON.parse(l).level === 30));
  assert.ok(lines.some((l) => JSON.parse(l).msg.startsWith('authentication failed')));
  assert.doesNotMatch(lines.join('\n'), /\x1b\[|secret-token/);
});

test('PORT: replaces the port of a LISTEN from a lower layer; a LISTEN in env or a flag wins', () => {
  const file = join(mkdtempSync(join(tmpdir(), 'wsbridge-port-')), 'c.json');
  writeFileSync(file, JSON.stringify({ LISTEN: '0.0.0.0:1111' }));
  const listen = (flags: Record<string, string>, env: Record<string, string>, withFile = false) => {
    const l = loadConfig({ flags: { MODE: 'server', ...flags }, env, ...(withFile ? { file } : {}) }).listen!;
    return `${l.host}:${l.port}`;
  };
  assert.equal(listen({}, { PORT: '9090' }), '127.0.0.1:9090');
  assert.equal(listen({}, { PORT: '9090' }, true), '0.0.0.0:9090', 'the file sets the host, the platform the port');
  assert.equal(listen({}, { PORT: '9090', LISTEN: '127.0.0.1:7070' }), '127.0.0.1:7070');
  assert.equal(listen({ LISTEN: '127.0.0.1:6060' }, { PORT: '9090' }), '127.0.0.1:6060');
  assert.throws(() => listen({}, { PORT: '70000' }), /PORT \(from env\)/);
});

test('npm start: prints the demo page URL, honours PORT, the README\'s chat.lobby example works, SIGTERM to its PID stops the gateway', async (t) => {
  const npm = spawn('npm', ['start'], { cwd: ROOT, env: { PATH, HOME: process.env.HOME ?? '/tmp', PORT: '0', LOG_LEVEL: 'warn', LOG_FORMAT: 'json' }, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  t.after(() => killGroup(npm));
  let out = '';
  npm.stdout!.on('data', (d: Buffer) => (out += d));
  npm.stderr!.on('data', (d: Buffer) => (out += d));
  const [, demo] = await waitOutput(npm, /demo page on (http:\/\/127\.0\.0\.1:(\d+)\/)/, 120_000);
  const port = Number(new URL(demo!).port);
  assert.notEqual(port, 8080, 'PORT=0 picked a free port');
  assert.equal((await fetch(demo!)).status, 200);

  // README: `npx wsbridge pub chat.lobby 'hello'` reaches the demo's chat room.
  const room = await TestClient.connect(`ws://127.0.0.1:${port}/ws`);
  await room.call({ op: 'sub', subject: 'room.lobby', id: 's' });
  const pub = await cli(['pub', 'chat.lobby', 'hello', '--url', `ws://127.0.0.1:${port}/ws`]);
  assert.equal(pub.code, 0, pub.out);
  const event = await room.next((f) => f.subject === 'room.lobby', 10_000);
  assert.equal(JSON.parse(Buffer.from(String(event.body), 'base64').toString()).text, 'hello');
  assert.doesNotMatch(out, /handler failed/);

  process.kill(npm.pid!, 'SIGTERM'); // the npm process itself, not its group
  assert.equal((await within(room.closed, 10_000, 'the gateway closing its sessions after SIGTERM to npm')).code, 1001);
  await exited(npm);
  assert.ok(await refused(port), 'the port is released');
});
