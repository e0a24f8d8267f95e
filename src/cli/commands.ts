// Command definitions for `bridgehead`. Each prints readable text by default and exits
// non-zero with a one-line reason when it cannot do what was asked; the exit status follows
// the one table of exit-codes.ts (docs/operations.md "Output and exit status").
import { readFileSync } from 'node:fs';
import { Command, CommanderError } from 'commander';
import YAML from 'yaml';
import {
  ConfigError,
  defaultOrganisation,
  loadConfigFile,
  loadDefaultConfig,
  selectServer,
  type LoadedConfig,
} from '../config/load.js';
import { TransportServer } from '../service/transport-server.js';
import { hashPassword } from '../directory/passwords.js';
import { DEFAULT_ITERATIONS } from '../directory/scram.js';
import { getServers as dnsServers } from 'node:dns';
import { makeResolver, resolveMailHosts } from '../delivery/remote/dns.js';
import { TransportError } from '../smtp/status.js';
import { addAdminCommands } from './admin-commands.js';
import { CliError } from './admin-client.js';
import { EXIT, EXIT_HELP } from './exit-codes.js';
import { addRouteCommands } from './route-commands.js';
import { addDirectoryCommands } from './directory-commands.js';
import { unresolvedSmartHosts } from '../service/smart-host-names.js';
import { outboundSettings } from '../config/outbound.js';

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks)
    .toString('utf8')
    .replace(/\r?\n$/, '');
}

function loadOrDefault(file: string | undefined): LoadedConfig {
  return file ? loadConfigFile(file) : loadDefaultConfig();
}

function printProblems(e: ConfigError): void {
  process.stderr.write(`${e.file ?? 'configuration'}: ${e.problems.length} error(s)\n`);
  for (const p of e.problems) process.stderr.write(`  error   ${p.path}: ${p.message}\n`);
}

export function buildProgram(): Command {
  const program = new Command('bridgehead')
    .description('Bridgehead mail transport server')
    .exitOverride()
    .configureOutput({ writeErr: (s) => process.stderr.write(s) })
    .addHelpText('after', EXIT_HELP);

  program
    .command('serve')
    .description('run a server of the organisation (embedded defaults without --config)')
    .option('-c, --config <file>', 'organisation file (YAML)')
    .option('-s, --server <name>', 'which server of the organisation this process is')
    .option('-d, --data-dir <dir>', "override the server's data directory")
    .option('--hold', 'accept and queue mail but process no queue (maintenance)')
    .action(async (opts: { config?: string; server?: string; dataDir?: string; hold?: boolean }) => {
      const loaded = loadOrDefault(opts.config);
      for (const w of loaded.warnings) process.stderr.write(`warning ${w.path}: ${w.message}\n`);
      // A fault in one session or delivery must not stop the transport: log it and go on.
      process.on('unhandledRejection', (reason) => {
        process.stderr.write(
          `bridgehead: unhandled rejection: ${(reason as Error)?.stack ?? String(reason)}\n`,
        );
      });
      const server = new TransportServer(loaded, {
        serverName: opts.server,
        dataDir: opts.dataDir,
        hold: opts.hold,
      });
      await server.start();
      const r = server.recovery!;
      const tightened = server.privacy?.tightened.length ?? 0;
      if (tightened) {
        process.stderr.write(
          `bridgehead: made private: ${tightened} file(s) and directories under ${server.dataDir} ` +
            'were readable by others (left by an older version?); now 0700/0600\n',
        );
      }
      for (const m of server.legacyMaildirs) {
        const owners = m.owners.map((o) => `"${o.name}" (${o.address}, now ${o.current})`).join(' and ');
        process.stderr.write(
          `bridgehead: warning: ${m.legacy} is the old folder of ${owners}: ` +
            'move its mail (docs/operations.md, "Maildir folder names")\n',
        );
      }
      for (const f of server.privacy?.failed ?? [])
        process.stderr.write(`bridgehead: warning: cannot set the mode of ${f.path}: ${f.error}\n`);
      process.stderr.write(
        `bridgehead: server ${server.server.name} (${server.server.fqdn}) data ${server.dataDir}\n` +
          `bridgehead: spool holds ${r.onDisk.size} message(s)` +
          (r.incomplete.length ? `; removed ${r.incomplete.length} incomplete file(s)` : '') +
          (r.corrupt.length ? `; ${r.corrupt.length} corrupt file(s) moved to corrupt/` : '') +
          (server.queueRecovery?.inserted
            ? `; ${server.queueRecovery.inserted} resubmitted after a crash`
            : '') +
          (opts.hold ? '; queues held (--hold)' : '') +
          '\n',
      );
      process.stderr.write(
        server.adminUrl
          ? `bridgehead: admin API on ${server.adminUrl}` +
              (server.adminTokenFile
                ? ` (token in ${server.adminTokenFile})\n`
                : server.server.adminApi.open
                  ? ' (open: adminApi.open, no token asked)\n'
                  : '\n')
          : `bridgehead: ${server.adminError}\n`,
      );
      for (const vs of server.virtualServers) {
        const a = vs.address();
        process.stderr.write(`bridgehead: "${vs.config.name}" listening on ${a?.address}:${a?.port}\n`);
      }
      // Not awaited: a slow DNS server must not hold the start.
      void unresolvedSmartHosts(loaded.org, server.server).then((found) => {
        for (const w of found) process.stderr.write(`bridgehead: warning: ${w}\n`);
      });
      if (opts.config) {
        const file = opts.config;
        process.on('SIGHUP', () => {
          try {
            const notes = server.reload(loadConfigFile(file));
            process.stderr.write(
              `bridgehead: reloaded ${file}${notes.length ? `; ${notes.join('; ')}` : ''}\n`,
            );
          } catch (err) {
            // A bad file never replaces a good running configuration.
            const text = err instanceof ConfigError ? err.message : (err as Error).message;
            process.stderr.write(
              `bridgehead: reload refused, still running the previous configuration:\n${text}\n`,
            );
          }
        });
      }
      await new Promise<void>((resolve) => {
        const stop = () => resolve();
        process.once('SIGTERM', stop);
        process.once('SIGINT', stop);
      });
      await server.stop();
      process.stderr.write('bridgehead: stopped\n');
    });

  const config = program.command('config').description('organisation file tools');
  config
    .command('check')
    .argument('<file>', 'organisation file (YAML)')
    .description('validate an organisation file; prints every error with its path')
    .action((file: string) => {
      const loaded = loadConfigFile(file);
      for (const w of loaded.warnings) process.stdout.write(`  warning ${w.path}: ${w.message}\n`);
      const servers = loaded.org.routingGroups.reduce((n, g) => n + g.servers.length, 0);
      process.stdout.write(
        `${file}: OK (${loaded.org.routingGroups.length} routing group(s), ${servers} server(s), ` +
          `${loaded.warnings.length} warning(s))\n`,
      );
    });
  config
    .command('defaults')
    .description('print the embedded default organisation as YAML (a starting point)')
    .action(() => {
      process.stdout.write(YAML.stringify(defaultOrganisation()));
    });

  program
    .command('dnsdiag')
    .argument('<domain>', 'the recipient domain to resolve')
    .option('-c, --config <file>', "organisation file (for the virtual server's DNS servers and smart host)")
    .option('-s, --server <name>', 'which server of the organisation')
    .option('--virtual-server <name>', "use this virtual server's external DNS servers")
    .option('--dns <servers>', 'DNS servers to ask instead (comma separated, e.g. 127.0.0.1:5353)')
    .description('walk the DNS resolution remote delivery would make for a domain, step by step')
    .action(
      async (
        domain: string,
        opts: { config?: string; server?: string; virtualServer?: string; dns?: string },
      ) => {
        const loaded = loadOrDefault(opts.config);
        const { server } = selectServer(loaded.org, opts.server);
        const vs = opts.virtualServer
          ? server.virtualServers.find((v) => v.name.toLowerCase() === opts.virtualServer!.toLowerCase())
          : outboundSettings(server).virtualServer;
        if (!vs) throw new UsageError(`no virtual server "${opts.virtualServer}" on ${server.name}`);
        const servers = opts.dns ? opts.dns.split(',') : vs.delivery.externalDnsServers;
        const out = (line: string) => process.stdout.write(`${line}\n`);
        out(`dnsdiag ${domain} from ${server.name} / "${vs.name}"`);
        out(
          `DNS servers: ${servers.length ? servers.join(', ') : `system resolver (${dnsServers().join(', ')})`}`,
        );
        if (vs.delivery.smartHost)
          out(`note: this virtual server sends everything to smart host ${vs.delivery.smartHost}`);
        try {
          const hosts = await resolveMailHosts(makeResolver(servers), domain, (step) => out(`  ${step}`));
          out('delivery would try, in order:');
          for (const h of hosts) {
            for (const a of h.addresses)
              out(`  ${h.host} (preference ${h.preference}) ${a}:${vs.delivery.outboundPort}`);
          }
        } catch (err) {
          if (!(err instanceof TransportError)) throw err;
          out(
            `result: ${err.status} ${err.message} (${err.permanent ? 'permanent: NDR' : 'transient: retry'})`,
          );
          return;
        }
      },
    );

  addAdminCommands(program);
  addRouteCommands(program);
  addDirectoryCommands(program);

  const iterationsOption = (value: string) => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < DEFAULT_ITERATIONS) {
      throw new UsageError(`--iterations must be an integer of at least ${DEFAULT_ITERATIONS}`);
    }
    return n;
  };
  /** The stored form of a password: a SCRAM-SHA-256 verifier; SASLprep refusals are usage errors. */
  const verifierOf = async (password: string, iterations: number) => {
    if (!password) throw new UsageError('the password is empty');
    try {
      return await hashPassword(password, iterations);
    } catch (err) {
      if (err instanceof RangeError) throw new UsageError(err.message);
      throw err;
    }
  };
  const user = program.command('user').description('directory users');
  user
    .command('passwd')
    .argument('<name>', "the user's name or one of its addresses")
    .requiredOption('-c, --config <file>', 'organisation file to update')
    .option('--password-file <file>', 'read the password from this file (default: standard input)')
    .option(
      '--iterations <n>',
      'PBKDF2 iterations of the SCRAM verifier',
      iterationsOption,
      DEFAULT_ITERATIONS,
    )
    .description(
      "set a user's SMTP AUTH password (stored as a SCRAM-SHA-256 verifier: serves SCRAM, PLAIN and LOGIN)",
    )
    .action(async (name: string, opts: { config: string; passwordFile?: string; iterations: number }) => {
      const password = opts.passwordFile
        ? readFileSync(opts.passwordFile, 'utf8').replace(/\r?\n$/, '')
        : await readStdin();
      if (!password) throw new UsageError('the password is empty');
      loadConfigFile(opts.config); // refuse to edit a file that does not validate
      const doc = YAML.parseDocument(readFileSync(opts.config, 'utf8'));
      const users = doc.getIn(['directory', 'users']) as YAML.YAMLSeq | undefined;
      const wanted = name.toLowerCase();
      const index = (users?.items ?? []).findIndex((item) => {
        const u = (item as YAML.YAMLMap).toJSON() as { name?: string; addresses?: string[] };
        return (
          u.name?.toLowerCase() === wanted ||
          (u.addresses ?? []).some((a) => a.replace(/^smtp:/i, '').toLowerCase() === wanted)
        );
      });
      if (index === -1) throw new UsageError(`no user "${name}" in ${opts.config}`);
      doc.setIn(['directory', 'users', index, 'passwordHash'], await verifierOf(password, opts.iterations));
      const { writeFileSync } = await import('node:fs');
      writeFileSync(opts.config, doc.toString());
      process.stdout.write(`password set for "${name}"\n`);
    });
  user
    .command('hash-password')
    .option(
      '--iterations <n>',
      'PBKDF2 iterations of the SCRAM verifier',
      iterationsOption,
      DEFAULT_ITERATIONS,
    )
    .description('print the SCRAM-SHA-256 verifier of the password read from standard input')
    .action(async (opts: { iterations: number }) => {
      process.stdout.write(`${await verifierOf(await readStdin(), opts.iterations)}\n`);
    });

  return program;
}

class UsageError extends Error {}

/** `--server NAME` (or `route test --from NAME`) named no server of the file: nothing by that name. */
function unknownServer(e: ConfigError): boolean {
  return e.problems.length > 0 && e.problems.every((p) => p.path === '--server');
}

export async function run(argv: string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
    return EXIT.ok;
  } catch (err) {
    // Commander has printed its reason (unknown option, missing argument) or the help.
    if (err instanceof CommanderError) return err.exitCode === 0 ? EXIT.ok : EXIT.refused;
    if (err instanceof ConfigError) {
      if (unknownServer(err)) {
        process.stderr.write(`bridgehead: ${err.problems.map((p) => p.message).join('; ')}\n`);
        return EXIT.refused;
      }
      printProblems(err);
      return EXIT.failed;
    }
    process.stderr.write(`bridgehead: ${(err as Error).message}\n`);
    if (err instanceof CliError) return err.exitCode;
    return err instanceof UsageError ? EXIT.refused : EXIT.failed;
  }
}
