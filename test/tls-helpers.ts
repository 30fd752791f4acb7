// A throwaway CA and certificates made with openssl for TLS tests (loopback names only).
import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface Pki {
  dir: string;
  ca: string;
  /** Issues a certificate signed by the CA; returns [certFile, keyFile]. */
  issue(name: string, opts?: { client?: boolean }): [string, string];
}

export function makePki(): Pki {
  const dir = mkdtempSync(join(tmpdir(), 'wsbridge-pki-'));
  const sh = (args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  sh(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '1', '-subj', '/CN=wsbridge-test-ca']);
  return {
    dir,
    ca: join(dir, 'ca.pem'),
    issue(name, opts = {}) {
      sh(['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${opts.client ? name : '127.0.0.1'}`]);
      writeFileSync(join(dir, `${name}.cnf`), opts.client ? 'extendedKeyUsage=clientAuth\n' : 'subjectAltName=IP:127.0.0.1,DNS:localhost\n');
      sh(['x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', `${name}.pem`, '-days', '1', '-extfile', `${name}.cnf`]);
      return [join(dir, `${name}.pem`), join(dir, `${name}.key`)];
    },
  };
}
