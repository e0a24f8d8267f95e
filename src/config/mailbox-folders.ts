// Cross-check: no two mailboxes of a server share a Maildir, no two stores share a folder.
// No I/O here. Folder names come from delivery/local/folder-names.ts; they are compared
// without regard to case, as a case-insensitive filesystem would.
import type { OrganisationConfig } from './schema.js';
import { mailboxFolder, storeFolder } from '../delivery/local/folder-names.js';

interface Problem {
  path: string;
  message: string;
}

function primaryAddress(address: string): string {
  return address.replace(/^smtp:/i, '').toLowerCase();
}

export function mailboxFolderProblems(org: OrganisationConfig): Problem[] {
  const problems: Problem[] = [];
  const storesOf = new Map<string, Map<string, string>>();
  org.routingGroups.forEach((group, gi) =>
    group.servers.forEach((server, si) => {
      const folders = new Map<string, string>();
      server.mailboxStores.forEach((store, i) => {
        const folder = storeFolder(store.name);
        const other = folders.get(folder.toLowerCase());
        if (other !== undefined) {
          problems.push({
            path: `routingGroups[${gi}].servers[${si}].mailboxStores[${i}].name`,
            message: `mailbox stores "${store.name}" and "${other}" would share the folder mailboxes/${folder}`,
          });
        } else folders.set(folder.toLowerCase(), store.name);
      });
      storesOf.set(server.name.toLowerCase(), folders);
    }),
  );
  const owners = new Map<string, { name: string; index: number }>();
  org.directory.users.forEach((user, ui) => {
    const server = user.mailbox.server;
    if (!storesOf.has(server.toLowerCase())) return; // reported as "no server" elsewhere
    const address = primaryAddress(user.addresses[0]!);
    const where = `mailboxes/${storeFolder(user.mailbox.store)}/${mailboxFolder(address)}`;
    const key = `${server.toLowerCase()}\0${where.toLowerCase()}`;
    const other = owners.get(key);
    if (other) {
      problems.push({
        path: `directory.users[${ui}].addresses[0]`,
        message:
          `"${user.name}" (${address}) and "${other.name}" (directory.users[${other.index}]) would share ` +
          `the Maildir ${where} on ${server}: give one of them another primary address`,
      });
    } else owners.set(key, { name: user.name, index: ui });
  });
  return problems;
}
