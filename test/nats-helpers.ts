// A real nats-server (Debian package) on a free loopback port, with JetStream in a temp dir.
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import net from 'node:net';

export async function freePort(): Promise<number> {
  const s = net.createServer().listen(0, '127.0.0.1');
  await new Promise((r) => s.once('listening', r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

export interface NatsServer {
  url: string;
  port: number;
  proc: ChildProcess;
  stop(): Promise<void>;
  restart(): Promise<void>;
  /** SIGHUP: reloads the configuration file; resolves once nats-server says it did (rejects if it refused). */
  reload(): Promise<void>;
}

export async function startNats(port?: number, storeDir?: string, extraArgs: string[] = []): Promise<NatsServer> {
  const p = port ?? (await freePort());
  const dir = storeDir ?? mkdtempSync(join(tmpdir(), 'wsbridge-nats-'));
  return spawnNats(p, ['-a', '127.0.0.1', '-p', String(p), '-js', '-sd', dir, ...extraArgs], () => startNats(p, dir, extraArgs));
}

/**
 * A nats-server configured by a file alone (listen address, JetStream store, authorization), so
 * that SIGHUP reloads every part of it (nats-server refuses a reload whose flags differ).
 */
export async function startNatsWithConfig(port: number, confFile: string): Promise<NatsServer> {
  return spawnNats(port, ['-c', confFile], () => startNatsWithConfig(port, confFile));
}

async function spawnNats(p: number, args: string[], again: () => Promise<NatsServer>): Promise<NatsServer> {
  const proc = spawn('nats-server', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  await new Promise<void>((resolve, reject) => {
    let out = '';
    const onData = (d: Buffer) => {
      out += d.toString();
      if (out.includes('Server is ready')) resolve();
    };
    proc.stdout!.on('data', onData);
    proc.stderr!.on('data', onData);
    proc.once('exit', (code) => reject(new Error(`nats-server exited (${code}):\n${out}`)));
    proc.once('error', reject);
  });
  const server: NatsServer = {
    url: `nats://127.0.0.1:${p}`,
    port: p,
    proc,
    async stop() {
      if (server.proc.exitCode !== null) return;
      const exited = new Promise((r) => server.proc.once('exit', r));
      server.proc.kill('SIGTERM');
      await exited;
    },
    async restart() {
      await server.stop();
      server.proc = (await again()).proc;
    },
    reload() {
      const proc = server.proc;
      return new Promise<void>((resolve, reject) => {
        let out = '';
        const onData = (d: Buffer) => {
          out += d.toString();
          if (out.includes('Reloaded server configuration')) done();
          else if (out.includes('Failed to reload')) done(new Error(out));
        };
        const timer = setTimeout(() => done(new Error(`nats-server did not reload within 10 s:\n${out}`)), 10_000);
        const done = (err?: Error) => {
          clearTimeout(timer);
          proc.stdout!.off('data', onData);
          proc.stderr!.off('data', onData);
          if (err) reject(err);
          else resolve();
        };
        proc.stdout!.on('data', onData);
        proc.stderr!.on('data', onData);
        proc.kill('SIGHUP');
      });
    },
  };
  return server;
}
