// Starts a real `bridgehead serve` process on loopback with a generated organisation file.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import YAML from 'yaml';

export const CLI = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../src/cli/main.js');

/** A free TCP port on the given loopback address. */
export function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, host, () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}

export interface RunningServer {
  port: number;
  /** The admin API's URL, from the server's start-up output. */
  api?: string;
  host: string;
  dir: string;
  dataDir: string;
  configFile: string;
  proc: ChildProcess;
  output: () => string;
  stop: () => Promise<void>;
  kill9: () => Promise<void>;
}

/** A minimal single-server organisation; `mutate` edits the plain object before it is written. */
export function baseOrganisation(port: number, host = '127.0.0.1'): Record<string, any> {
  return {
    organisation: { name: 'Test Org' },
    routingGroups: [
      {
        name: 'First Routing Group',
        servers: [
          {
            name: 'MAIL1',
            fqdn: 'mail1.test.example',
            dataDir: './data',
            // Ephemeral: many servers run at once in tests; the URL is read from the output.
            adminApi: { port: 0 },
            virtualServers: [
              {
                name: 'Default SMTP Virtual Server',
                ip: host,
                port,
                protocolLog: { enabled: true },
              },
            ],
          },
        ],
      },
    ],
    recipientPolicies: [{ name: 'Default', addresses: [{ address: '@example.com', authoritative: true }] }],
    directory: {
      users: [
        { name: 'Alice', addresses: ['alice@example.com'], mailbox: { server: 'MAIL1' } },
        { name: 'Postmaster', addresses: ['postmaster@example.com'], mailbox: { server: 'MAIL1' } },
      ],
    },
  };
}

/**
 * Starts a server. By default its queues are held (`serve --hold`): accepted mail stays in
 * the spool for receive-path tests. `engine: true` runs the categorizer and delivery.
 */
export async function startServer(
  opts: {
    mutate?: (org: Record<string, any>) => void;
    dir?: string;
    host?: string;
    port?: number;
    engine?: boolean;
  } = {},
): Promise<RunningServer> {
  const host = opts.host ?? '127.0.0.1';
  const port = opts.port ?? (await freePort(host));
  const dir = opts.dir ?? mkdtempSync(path.join(os.tmpdir(), 'bh-test-'));
  const org = baseOrganisation(port, host);
  opts.mutate?.(org);
  const configFile = path.join(dir, 'org.yaml');
  writeFileSync(configFile, YAML.stringify(org));
  return launch({ dir, configFile, port, host, hold: !opts.engine });
}

/** Starts (or restarts) a server on an existing organisation file. */
export async function launch(o: {
  dir: string;
  configFile: string;
  port: number;
  host: string;
  hold?: boolean;
}): Promise<RunningServer> {
  const args = [CLI, 'serve', '--config', o.configFile, ...(o.hold ? ['--hold'] : [])];
  const proc = spawn(process.execPath, args, {
    cwd: o.dir,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  proc.stdout!.on('data', (d) => (out += d));
  proc.stderr!.on('data', (d) => (out += d));
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  const deadline = Date.now() + 20_000;
  while (!/listening on/.test(out)) {
    if (proc.exitCode !== null) throw new Error(`bridgehead exited early:\n${out}`);
    if (Date.now() > deadline) {
      proc.kill('SIGKILL');
      throw new Error(`bridgehead did not start:\n${out}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    ...o,
    api: /admin API on (http:\/\/\S+)/.exec(out)?.[1],
    dataDir: path.join(o.dir, 'data'),
    proc,
    output: () => out,
    stop: async () => {
      if (proc.exitCode === null) proc.kill('SIGTERM');
      await exited;
    },
    kill9: async () => {
      if (proc.exitCode === null) proc.kill('SIGKILL');
      await exited;
    },
  };
}

/**
 * The admin API's Authorization header, with the token a server made in its data directory
 * (no adminApi.token configured): read from <dataDir>/admin.token as the CLI reads it.
 */
export function adminAuth(dataDir: string): { authorization: string } {
  return { authorization: `Bearer ${readFileSync(path.join(dataDir, 'admin.token'), 'utf8').trim()}` };
}

export function cleanup(dir: string): void {
  if (process.env.BH_KEEP_TEST_DIRS) return;
  rmSync(dir, { recursive: true, force: true });
}
