// NAME      TLS contexts: the certificate each virtual server offers with STARTTLS
// DESCRIPTION
//   A virtual server with tls.certFile and tls.keyFile uses them (paths relative to the
//   organisation file); otherwise a self-signed certificate is made once per data
//   directory (<data>/tls/), so STARTTLS works out of the box.
// SECURITY  the key file is written mode 0600.
import { promises as fsp, readFileSync } from 'node:fs';
import path from 'node:path';
import tls from 'node:tls';
import type { VirtualServerConfig } from '../config/schema.js';

async function selfSignedContext(dataDir: string, fqdn: string): Promise<tls.SecureContext> {
  const dir = path.join(dataDir, 'tls');
  const certFile = path.join(dir, 'selfsigned.crt');
  const keyFile = path.join(dir, 'selfsigned.key');
  try {
    return tls.createSecureContext({ cert: await fsp.readFile(certFile), key: await fsp.readFile(keyFile) });
  } catch {
    const selfsigned = await import('selfsigned');
    const pems = await selfsigned.generate([{ name: 'commonName', value: fqdn }], {
      keySize: 2048,
      algorithm: 'sha256',
      extensions: [{ name: 'subjectAltName', altNames: [{ type: 2, value: fqdn }] }],
    });
    await fsp.mkdir(dir, { recursive: true, mode: 0o700 });
    await fsp.writeFile(keyFile, pems.private, { mode: 0o600 });
    await fsp.writeFile(certFile, pems.cert, { mode: 0o600 });
    return tls.createSecureContext({ cert: pems.cert, key: pems.private });
  }
}

export async function tlsContextFor(
  vs: VirtualServerConfig,
  o: { baseDir: string; dataDir: string; fqdn: string },
): Promise<tls.SecureContext | undefined> {
  if (!vs.tls.enabled) return undefined;
  if (vs.tls.certFile && vs.tls.keyFile) {
    const resolve = (f: string) => path.resolve(o.baseDir, f);
    return tls.createSecureContext({
      cert: readFileSync(resolve(vs.tls.certFile)),
      key: readFileSync(resolve(vs.tls.keyFile)),
    });
  }
  return selfSignedContext(o.dataDir, o.fqdn);
}
