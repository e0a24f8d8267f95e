// NAME      store drivers: the driver of each mailbox store of this server
// SYNOPSIS  drivers = storeDrivers(server.mailboxStores, { maildir, lhloName, log })
//           drivers(storeName) -> StoreDriver | undefined
// DESCRIPTION
//   mailboxStores[].driver chooses: `maildir` stores share one Maildir writer (its modes
//   come per store), each `lmtp` store has its own LMTP client. Store names match exactly,
//   as the configuration check compares them; a name not listed has no driver (the worker
//   defers its mail with 4.3.5).
import type { ServerConfig } from '../../config/schema.js';
import { LmtpStore } from './lmtp.js';
import type { StoreDriver, StoreDrivers } from './store-driver.js';

type MailboxStoreConfig = ServerConfig['mailboxStores'][number];

export function storeDrivers(
  stores: readonly MailboxStoreConfig[],
  o: {
    maildir: StoreDriver;
    /** Name announced in LHLO: the server's FQDN. */
    lhloName: string;
    /** LMTP protocol lines, by store (debug logging). */
    log?: (store: string, event: string, data: string) => void;
  },
): StoreDrivers & { close(): Promise<void> } {
  const byName = new Map<string, StoreDriver>();
  for (const s of stores) {
    if (s.driver === 'lmtp' && s.lmtp) {
      const l = s.lmtp;
      byName.set(
        s.name,
        new LmtpStore({
          store: s.name,
          endpoint: l.socket !== undefined ? { socket: l.socket } : { host: l.host!, port: l.port },
          lhloName: o.lhloName,
          rcptTo: l.rcptTo,
          timeoutMs: l.timeout * 1000,
          ...(o.log ? { log: (event: string, data: string) => o.log!(s.name, event, data) } : {}),
        }),
      );
    } else byName.set(s.name, o.maildir);
  }
  const drivers = (store: string) => byName.get(store);
  return Object.assign(drivers, {
    close: async () => {
      for (const d of new Set(byName.values())) await d.close?.();
    },
  });
}
