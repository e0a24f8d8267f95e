// Cross-check: every user's mailbox.store is a store of the user's server (mailboxStores).
// No I/O here. Names match exactly, as local delivery chooses a store's driver by its name;
// a name that differs only in case gets a hint.
import type { OrganisationConfig } from './schema.js';

interface Problem {
  path: string;
  message: string;
}

export function mailboxStoreProblems(org: OrganisationConfig): Problem[] {
  const storesOf = new Map<string, string[]>();
  for (const group of org.routingGroups)
    for (const server of group.servers)
      storesOf.set(
        server.name.toLowerCase(),
        server.mailboxStores.map((s) => s.name),
      );
  const problems: Problem[] = [];
  org.directory.users.forEach((user, ui) => {
    const { server, store } = user.mailbox;
    const stores = storesOf.get(server.toLowerCase());
    if (!stores || stores.includes(store)) return; // no such server: reported elsewhere
    const near = stores.find((s) => s.toLowerCase() === store.toLowerCase());
    const listed = stores.map((s) => `"${s}"`).join(', ');
    problems.push({
      path: `directory.users[${ui}].mailbox.store`,
      message:
        `"${user.name}": mailbox store "${store}" is not configured on server ${server} ` +
        (near ? `(did you mean "${near}"?)` : `(its mailboxStores: ${listed}; add it there)`),
    });
  });
  return problems;
}
