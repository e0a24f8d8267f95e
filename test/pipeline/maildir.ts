// Reads the Maildirs a server delivers into (<dataDir>/mailboxes/<store>/<address>/new) and
// waits, with a bounded deadline, for messages to appear there.
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { mailboxFolder, storeFolder } from '../../src/delivery/local/folder-names.js';

export interface MaildirMessage {
  name: string;
  file: string;
  content: Buffer;
}

export function mailboxDir(dataDir: string, address: string, store = 'Mailbox Store'): string {
  // The store driver's own folder names (src/delivery/local/folder-names.ts).
  return path.join(dataDir, 'mailboxes', storeFolder(store), mailboxFolder(address));
}

/** File names in new/ (sorted); empty when the mailbox does not exist yet. */
export function listNew(dataDir: string, address: string, store?: string): string[] {
  try {
    return readdirSync(path.join(mailboxDir(dataDir, address, store), 'new')).sort();
  } catch {
    return [];
  }
}

/** Messages in new/ whose file name starts with `prefix` (a queue id, say). */
export function readNew(dataDir: string, address: string, prefix = '', store?: string): MaildirMessage[] {
  const dir = path.join(mailboxDir(dataDir, address, store), 'new');
  return listNew(dataDir, address, store)
    .filter((n) => n.startsWith(prefix))
    .map((name) => {
      const file = path.join(dir, name);
      return { name, file, content: readFileSync(file) };
    });
}

/** Copies of queue message `id` in a mailbox (Maildir names are "<id>.<row>.<host>,S=<size>"). */
export function copiesOf(dataDir: string, address: string, id: string, store?: string): number {
  return listNew(dataDir, address, store).filter((n) => n.startsWith(`${id}.`)).length;
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Polls `probe` until it returns a value other than undefined/false, or fails at the deadline. */
export async function waitFor<T>(
  what: string,
  probe: () => T | undefined | false | Promise<T | undefined | false>,
  timeoutMs = 10_000,
  intervalMs = 25,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(intervalMs);
  }
}

/** Waits until at least `count` messages starting with `prefix` are in the mailbox's new/. */
export function waitForMessages(
  dataDir: string,
  address: string,
  prefix: string,
  count = 1,
  timeoutMs = 10_000,
  store?: string,
): Promise<MaildirMessage[]> {
  return waitFor(
    `${count} message(s) ${prefix}* in ${address}`,
    () => {
      const found = readNew(dataDir, address, prefix, store);
      return found.length >= count ? found : undefined;
    },
    timeoutMs,
  );
}
