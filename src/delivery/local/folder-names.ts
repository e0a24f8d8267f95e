// NAME      folder names: the directory of a mailbox store and of a mailbox under mailboxes/
// SYNOPSIS  storeFolder(storeName) · mailboxFolder(primaryAddress) · legacyMailboxFolder(address)
// DESCRIPTION
//   No I/O here. A mailbox's folder is its primary address, lower-cased (the directory
//   matches addresses without regard to case, and primary addresses arrive lower-cased),
//   with every UTF-8 byte outside [a-z0-9@._+-] written =XX (upper-case hex) and "=" itself
//   among them; a leading "." is escaped too (no hidden folder, no "." or ".."). The mapping
//   is injective, also on a case-insensitive filesystem (letters are lower case, hex digits
//   upper case), and leaves a plain address as it is: josé@ is jos=C3=A9@, a=b@ is a=3Db@.
//   A name longer than 255 bytes keeps its first part and ends in "=_" and the SHA-256 of
//   the address ("=_" appears in no other name).
//   A store's folder keeps the old rule (runs of other characters become "_": "Mailbox
//   Store" is Mailbox_Store); the configuration refuses two stores of a server that would
//   share one (config/mailbox-folders.ts).
// BUGS      Folders made before this rule for addresses outside [A-Za-z0-9@._+-] are not
//           found again: docs/operations.md says how to move them (legacyMailboxFolder
//           names the old folder).
import { createHash } from 'node:crypto';

const SAFE = /^[a-z0-9@._+-]$/;
const MAX_NAME = 255;

export function storeFolder(store: string): string {
  return store.replace(/[^A-Za-z0-9@._+-]+/g, '_');
}

export function mailboxFolder(address: string): string {
  const lower = address.toLowerCase();
  let out = '';
  for (const ch of lower) {
    if (SAFE.test(ch) && !(out === '' && ch === '.')) out += ch;
    else
      for (const byte of Buffer.from(ch, 'utf8'))
        out += `=${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  if (out.length <= MAX_NAME) return out;
  const hash = createHash('sha256').update(lower, 'utf8').digest('hex');
  return `${out.slice(0, MAX_NAME - hash.length - 2)}=_${hash}`;
}

/** The folder an address had before folder names were injective (every run of others: "_"). */
export function legacyMailboxFolder(address: string): string {
  return storeFolder(address.toLowerCase());
}
