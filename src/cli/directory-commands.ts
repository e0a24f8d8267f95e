// NAME      directory commands: `bridgehead directory lookup ADDRESS [-c org.yaml]`
// DESCRIPTION
//   Reads the directory the organisation file configures (embedded YAML or LDAP) exactly as
//   the categorizer does, and prints what it would resolve: the entry (user, contact,
//   group), its mailbox server and store, forwarding, and every recipient after expansion
//   with its route. No server needs to run.
// DIAGNOSTICS  exit 0 found · 2 no such recipient · 3 the directory cannot answer (LDAP
//   unreachable, bind refused) · 1 an invalid organisation file.
import type { Command } from 'commander';
import { loadConfigFile, loadDefaultConfig, selectServer } from '../config/load.js';
import { dryRunCategorizer } from './dry-run.js';
import type { Route } from '../categorizer/categorizer.js';
import type { DirectoryEntry } from '../directory/directory.js';
import { openDirectory } from '../directory/open.js';
import { DirectoryUnavailableError } from '../directory/unavailable.js';
import { TransportError } from '../message/status.js';
import { CliError } from './admin-client.js';
import { EXIT } from './exit-codes.js';

function describeRoute(route: Route): string {
  switch (route.kind) {
    case 'local':
      return `local delivery, store "${route.store}"${route.quotaKb ? `, quota ${route.quotaKb} KB` : ''}`;
    case 'server':
      return `mailbox on server ${route.server}`;
    case 'remote':
      return `routed out (domain ${route.domain})`;
    case 'forwardHost':
      return `forwarded to host ${route.host}`;
    case 'failed':
      return `NDR ${route.status} ${route.text}`;
  }
}

/** The entry as lines: what an administrator checks first. */
export function describeEntry(entry: DirectoryEntry): string[] {
  const lines = [`  ${entry.kind} "${entry.name}" <${entry.primaryAddress}>`];
  if (entry.kind === 'user') {
    const u = entry.user;
    lines.push(`    addresses: ${u.addresses.join(', ')}`);
    lines.push(`    mailbox: server ${u.mailbox.server}, store "${u.mailbox.store}"`);
    if (u.forwardTo)
      lines.push(`    forwarding: ${u.forwardTo}${u.deliverAndForward ? ' (and delivers)' : ''}`);
    const limits = [
      u.quotaKb !== null ? `quota ${u.quotaKb} KB` : '',
      u.maxReceiveSizeKb !== null ? `receive ${u.maxReceiveSizeKb} KB` : '',
      u.maxSendSizeKb !== null ? `send ${u.maxSendSizeKb} KB` : '',
    ].filter(Boolean);
    if (limits.length) lines.push(`    limits: ${limits.join(', ')}`);
    if (u.hidden) lines.push('    hidden from address lists');
  } else if (entry.kind === 'contact') {
    lines.push(`    target: ${entry.contact.targetAddress}`);
  } else {
    const g = entry.group;
    lines.push(`    direct members: ${g.members.length}${g.hideMembership ? ' (membership hidden)' : ''}`);
    if (g.expansionServer) lines.push(`    expansion server: ${g.expansionServer}`);
  }
  return lines;
}

export function addDirectoryCommands(program: Command): void {
  const directory = program.command('directory').description('the recipient directory (YAML or LDAP)');
  directory
    .command('lookup')
    .argument('<address>', 'an SMTP address')
    .option('-c, --config <file>', 'organisation file')
    .option('--server <name>', 'resolve as this server would (default: the first of the file)')
    .option('--json', 'print JSON')
    .description('what the categorizer would resolve for ADDRESS, from the configured backend')
    .action(async (address: string, o: { config?: string; server?: string; json?: boolean }) => {
      const loaded = o.config ? loadConfigFile(o.config) : loadDefaultConfig();
      const org = loaded.org;
      const { server } = o.server
        ? selectServer(org, o.server)
        : { server: org.routingGroups.flatMap((g) => g.servers)[0]! };
      const backend = openDirectory(org.directory, { baseDir: loaded.baseDir, serverName: server.name });
      try {
        const entry = await backend.findByAddress(address);
        if (!entry) throw new CliError(`no recipient ${address} in the directory (${org.directory.backend})`);
        const categorizer = dryRunCategorizer(org, server, backend);
        const result = await categorizer.categorize([{ id: 1, address, original: address }], {
          sender: '',
          authenticated: true,
          size: 0,
          receivedHeaders: 0,
          envelopeRecipientCount: 1,
        });
        if (o.json) {
          process.stdout.write(
            `${JSON.stringify({ backend: org.directory.backend, entry, events: result.events, recipients: result.leaves.map((l) => ({ address: l.address, route: l.route })) }, null, 2)}\n`,
          );
          return;
        }
        const lines = [`directory lookup ${address} (${org.directory.backend}, as ${server.name})`];
        lines.push(...describeEntry(entry));
        for (const e of result.events)
          lines.push(
            `  categorizer: ${e.event} ${e.related} → ${e.recipient}${e.info ? ` (${e.info})` : ''}`,
          );
        lines.push(`  recipients after expansion: ${result.leaves.length}`);
        for (const leaf of result.leaves) lines.push(`    ${leaf.address}: ${describeRoute(leaf.route)}`);
        process.stdout.write(`${lines.join('\n')}\n`);
      } catch (err) {
        if (err instanceof DirectoryUnavailableError)
          throw new CliError(`the directory cannot answer: ${err.reason}`, EXIT.unreachable);
        if (err instanceof TransportError && !(err instanceof CliError))
          throw new CliError(err.message, EXIT.failed);
        throw err;
      } finally {
        await backend.close?.();
      }
    });
}
