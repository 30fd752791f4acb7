// Shell tools for poking a running gateway: `wsbridge pub`, `sub`, `req` (over WebSocket, with
// the client SDK) and `sessions` (the operator API). Exit codes: 0 done, 1 the server said no
// (timeout, no responders, refused), 2 bad usage.
import { parseArgs } from 'node:util';
import { connect, RequestError } from '../sdk/client.ts';
import type { Client } from '../sdk/client.ts';

export const TOOLS = ['pub', 'sub', 'req', 'sessions'] as const;

const DEFAULT_URL = 'ws://127.0.0.1:8080/ws';

const HELP: Record<string, string> = {
  pub: `Usage: wsbridge pub <subject> [text] [--url ws://host:port/ws] [--reply-to subject]

Publishes one message (the text, or stdin when no text is given) and waits for the server's ok.
Exit 1 with the error code when the server refuses it.`,
  sub: `Usage: wsbridge sub <pattern> [--url ws://host:port/ws] [--count N] [--json] [--queue group]

Subscribes and prints each message as it arrives: "subject: text" (or one JSON object per line
with --json). Stops after N messages with --count, else on Ctrl-C. Exit 1 with the error code
when the server refuses the pattern.`,
  req: `Usage: wsbridge req <subject> [text] [--url ws://host:port/ws] [--timeout-ms 5000]

Sends a request and prints the reply's body. Exit 1 with the error code on timeout or
no_responders.`,
  sessions: `Usage: wsbridge sessions [--url http://host:port] [--admin-token TOKEN] [--json]

Lists the server's sessions through the operator API (env ADMIN_TOKEN works too): a table, or
the JSON array with --json.`,
};

const MAX_POSITIONALS: Record<string, number> = { pub: 2, sub: 1, req: 2, sessions: 0 };

export class UsageError extends Error {}

type Stream = NodeJS.WritableStream & { isTTY?: boolean };

interface Io {
  out: Stream;
  err: Stream;
  env: Record<string, string | undefined>;
  stdin: NodeJS.ReadableStream;
}

/** Colour only on a terminal, decided for the stream the text goes to; NO_COLOR turns it off. */
const paint = (stream: Stream, env: Io['env'], code: number, s: string) => (stream.isTTY && !env.NO_COLOR ? `\x1b[${code}m${s}\x1b[0m` : s);

async function readStdin(stdin: NodeJS.ReadableStream): Promise<string> {
  let s = '';
  for await (const chunk of stdin) s += chunk.toString();
  return s.replace(/\n$/, '');
}

async function open(url: string): Promise<Client> {
  const c = connect(url, { reconnect: false });
  await c.ready(); // rejects with "cannot connect to <url> (close code …)"
  return c;
}

/** Runs a tool; resolves with the exit code. */
export async function runTool(name: string, argv: string[], io: Io): Promise<number> {
  const { values, positionals } = (() => {
    try {
      return parseArgs({
        args: argv,
        allowPositionals: true,
        options: {
          url: { type: 'string' }, 'reply-to': { type: 'string' }, count: { type: 'string' }, json: { type: 'boolean' },
          queue: { type: 'string' }, 'timeout-ms': { type: 'string' }, 'admin-token': { type: 'string' }, help: { type: 'boolean', short: 'h' },
        },
      });
    } catch (e) {
      throw new UsageError(`${(e as Error).message}\n\n${HELP[name]}`);
    }
  })();
  if (values.help) {
    io.out.write(`${HELP[name]}\n`);
    return 0;
  }
  const url = values.url ?? io.env.WSBRIDGE_URL ?? DEFAULT_URL;
  const need = (i: number, what: string) => {
    const v = positionals[i];
    if (v === undefined) throw new UsageError(`missing ${what}\n\n${HELP[name]}`);
    return v;
  };
  if (positionals.length > MAX_POSITIONALS[name]!) {
    throw new UsageError(`unexpected argument ${JSON.stringify(positionals[MAX_POSITIONALS[name]!])} (quote a text with spaces)\n\n${HELP[name]}`);
  }
  const fail = (e: RequestError) => {
    io.err.write(`${paint(io.err, io.env, 31, e.code)}: ${e.message}\n`);
    return 1;
  };
  const int = (v: string | undefined, flag: string, def: number) => {
    if (v === undefined) return def;
    if (!/^\d+$/.test(v) || Number(v) <= 0) throw new UsageError(`--${flag}: expected a positive integer, got ${JSON.stringify(v)}`);
    return Number(v);
  };

  switch (name) {
    case 'pub': {
      const subject = need(0, 'subject');
      const text = positionals[1] ?? (await readStdin(io.stdin));
      const c = await open(url);
      try {
        await c.publishAck(subject, text, values['reply-to'] ? { replyTo: values['reply-to'] } : {});
      } catch (e) {
        if (!(e instanceof RequestError)) throw e;
        return fail(e);
      } finally {
        c.close();
      }
      return 0;
    }
    case 'sub': {
      const pattern = need(0, 'pattern');
      const count = values.count === undefined ? Infinity : int(values.count, 'count', 1);
      const c = await open(url);
      let seen = 0;
      let done!: (code: number) => void;
      const finished = new Promise<number>((resolve) => (done = resolve));
      const sub = c.subscribe(pattern, (m) => {
        if (values.json) io.out.write(`${JSON.stringify({ subject: m.subject, text: m.text(), reply_to: m.replyTo })}\n`);
        else io.out.write(`${paint(io.out, io.env, 36, m.subject)}: ${m.text()}\n`);
        if (++seen >= count) done(0);
      }, values.queue ? { queue: values.queue } : {});
      c.onSessionChange((s) => {
        if (s.state === 'closed') {
          io.err.write(`connection closed (close code ${s.closeCode}${s.closeReason ? `: ${s.closeReason}` : ''})\n`);
          done(1);
        }
      });
      const onSignal = () => done(0);
      process.once('SIGINT', onSignal);
      process.once('SIGTERM', onSignal);
      try {
        await sub.ready;
        io.err.write(`subscribed to ${pattern} on ${url}\n`);
        return await finished;
      } catch (e) {
        if (!(e instanceof RequestError)) throw e;
        return fail(e);
      } finally {
        process.off('SIGINT', onSignal);
        process.off('SIGTERM', onSignal);
        c.close();
      }
    }
    case 'req': {
      const subject = need(0, 'subject');
      const text = positionals[1] ?? '';
      const c = await open(url);
      try {
        const reply = await c.request(subject, text, { timeoutMs: int(values['timeout-ms'], 'timeout-ms', 5000) });
        io.out.write(`${reply.text()}\n`);
        return 0;
      } catch (e) {
        if (e instanceof RequestError) return fail(e);
        throw e;
      } finally {
        c.close();
      }
    }
    case 'sessions': {
      // --url, then WSBRIDGE_API (the HTTP base), then WSBRIDGE_URL (the WebSocket URL every
      // tool reads: its http(s) twin is the same gateway's API).
      const base = (values.url ?? io.env.WSBRIDGE_API ?? io.env.WSBRIDGE_URL ?? 'http://127.0.0.1:8080').replace(/^ws/, 'http').replace(/\/ws\/?$/, '').replace(/\/$/, '');
      const token = values['admin-token'] ?? io.env.ADMIN_TOKEN;
      let res: Response;
      try {
        res = await fetch(`${base}/api/sessions`, { headers: token ? { authorization: `Bearer ${token}` } : {}, signal: AbortSignal.timeout(10_000) });
      } catch (e) {
        const cause = (e as { cause?: { code?: string; message?: string } }).cause;
        const why = (e as Error).name === 'TimeoutError' ? 'no answer within 10 s' : cause?.code ?? cause?.message ?? (e as Error).message;
        io.err.write(`${paint(io.err, io.env, 31, 'unreachable')}: cannot reach the operator API at ${base} (${why}); is the gateway running? (--url, env WSBRIDGE_API or WSBRIDGE_URL)\n`);
        return 1;
      }
      let body: { sessions?: Array<{ id: string; remote_address: string; connected_at: string; subscriptions: string[]; counters: { messagesIn: number; messagesOut: number } }>; error?: { code: string; message: string } };
      try {
        body = (await res.json()) as typeof body;
      } catch {
        io.err.write(`${res.status}: ${base}/api/sessions did not answer JSON: is ${base} a wsbridge gateway?\n`);
        return 1;
      }
      if (!res.ok || !body.sessions) {
        const code = body.error?.code ?? '';
        // The server's own hint is about its ADMIN_TOKEN, which a client cannot set: say it right.
        const hint = code === 'api_disabled'
          ? 'the gateway was started without ADMIN_TOKEN, so its operator API is off: restart it with ADMIN_TOKEN set'
          : code === 'unauthorized'
            ? token ? 'the gateway refused this admin token' : 'no admin token given: pass --admin-token or set env ADMIN_TOKEN'
            : body.error?.message ?? '';
        io.err.write(`${res.status} ${paint(io.err, io.env, 31, code)}: ${hint}\n`);
        return 1;
      }
      if (values.json) {
        io.out.write(`${JSON.stringify(body.sessions)}\n`);
        return 0;
      }
      io.out.write(`${paint(io.out, io.env, 1, 'SESSION                 REMOTE                 CONNECTED                 IN    OUT   SUBSCRIPTIONS')}\n`);
      for (const s of body.sessions) {
        io.out.write(`${s.id.padEnd(23)} ${s.remote_address.padEnd(22)} ${s.connected_at.padEnd(25)} ${String(s.counters.messagesIn).padEnd(5)} ${String(s.counters.messagesOut).padEnd(5)} ${s.subscriptions.join(' ')}\n`);
      }
      io.out.write(`${body.sessions.length} session(s)\n`);
      return 0;
    }
  }
  throw new UsageError(`unknown tool ${name}`);
}
