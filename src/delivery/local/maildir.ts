// Store driver: delivers to Maildir (one per mailbox, under <data>/mailboxes/<store>/<address>),
// the format Dovecot and mutt read. A message is written in tmp/, fsync'd, and linked into
// new/ under a name derived from (queue id, recipient id), so a delivery interrupted by a
// crash and tried again finds the copy it already made instead of making a second one.
// Folder names: folder-names.ts (injective: two mailboxes never share one).
// SECURITY  Maildirs are 0700 and messages 0600 unless the store's maildir modes say
//           otherwise (a store shared with a reader that runs as another user); the modes
//           are set explicitly, so the process umask cannot widen or narrow them.
import { promises as fsp, constants as fsc } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { TransportError } from '../../message/status.js';
import type { CopyResult, MailboxRef, StoreCopy, StoreDriver, StoreMessage } from './store-driver.js';
import { mailboxFolder, storeFolder } from './folder-names.js';

/** Modes of one store's Maildirs (mailboxStores[].maildir). */
export interface MaildirModes {
  directory: number;
  file: number;
}

export const PRIVATE_MAILDIR: MaildirModes = { directory: 0o700, file: 0o600 };

export type { MailboxRef } from './store-driver.js';

export class MaildirStore implements StoreDriver {
  private readonly usage = new Map<string, number>();
  private readonly host = os.hostname().replace(/[/:]/g, '_');

  /** Maildirs whose modes this process has set (once each: later deliveries only mkdir). */
  private readonly prepared = new Set<string>();

  constructor(
    private readonly root: string,
    private readonly modesOf: (store: string) => MaildirModes = () => PRIVATE_MAILDIR,
  ) {}

  mailboxDir(m: MailboxRef): string {
    return path.join(this.root, storeFolder(m.store), mailboxFolder(m.address));
  }

  private async ensure(dir: string, modes: MaildirModes): Promise<void> {
    const mode = modes.directory;
    for (const sub of ['tmp', 'new', 'cur']) await fsp.mkdir(path.join(dir, sub), { recursive: true, mode });
    if (this.prepared.has(dir)) return;
    // Explicit chmod: mkdir's mode passes through the umask, and an older folder keeps its own.
    // A setgid bit (new folders inherit the store's group) is kept.
    for (const d of [path.dirname(dir), dir, ...['tmp', 'new', 'cur'].map((sub) => path.join(dir, sub))]) {
      const st = await fsp.stat(d);
      if ((st.mode & 0o777) !== mode) await fsp.chmod(d, mode | (st.mode & 0o2000));
    }
    this.prepared.add(dir);
  }

  /** Bytes in new/ and cur/, counted once per mailbox and kept current afterwards. */
  private async used(dir: string): Promise<number> {
    const known = this.usage.get(dir);
    if (known !== undefined) return known;
    let total = 0;
    for (const sub of ['new', 'cur']) {
      const names = await fsp.readdir(path.join(dir, sub)).catch(() => [] as string[]);
      for (const n of names) {
        const st = await fsp.stat(path.join(dir, sub, n)).catch(() => undefined);
        if (st) total += st.size;
      }
    }
    this.usage.set(dir, total);
    return total;
  }

  private async alreadyDelivered(dir: string, base: string): Promise<boolean> {
    for (const sub of ['new', 'cur']) {
      const names = await fsp.readdir(path.join(dir, sub)).catch(() => [] as string[]);
      if (names.some((n) => n === base || n.startsWith(`${base},`) || n.startsWith(`${base}:`))) return true;
    }
    return false;
  }

  /** One copy after another, each with Return-Path and Delivered-To on top. */
  async deliver(message: StoreMessage, copies: readonly StoreCopy[]): Promise<CopyResult[]> {
    const results: CopyResult[] = [];
    for (const c of copies) {
      const prefix = Buffer.from(
        `Return-Path: <${message.sender}>\r\nDelivered-To: ${c.recipient}\r\n`,
        'utf8',
      );
      try {
        const { duplicate } = await this.deliverOne(c.mailbox, c.uniqueId, prefix, message.body, c.recheck);
        results.push({ duplicate });
      } catch (err) {
        if (!(err instanceof TransportError)) throw err;
        results.push({ error: err });
      }
    }
    return results;
  }

  /**
   * Delivers one copy. `prefix` is prepended (Return-Path, Delivered-To). `recheck` is set
   * when an earlier attempt may have completed before a crash.
   */
  async deliverOne(
    m: MailboxRef,
    uniqueId: string,
    prefix: Buffer,
    message: Buffer,
    recheck: boolean,
  ): Promise<{ file: string; duplicate: boolean }> {
    const dir = this.mailboxDir(m);
    const base = `${uniqueId}.${this.host}`;
    const modes = this.modesOf(m.store);
    try {
      await this.ensure(dir, modes);
      if (recheck && (await this.alreadyDelivered(dir, base))) {
        return { file: path.join(dir, 'new', base), duplicate: true };
      }
      const size = prefix.length + message.length;
      if (m.quotaKb !== null && (await this.used(dir)) + size > m.quotaKb * 1024) {
        throw new TransportError(552, '5.2.2', `Mailbox ${m.address} is full (quota ${m.quotaKb} KB)`);
      }
      const tmp = path.join(dir, 'tmp', base);
      const fh = await fsp.open(tmp, 'w', modes.file);
      try {
        if (modes.file !== PRIVATE_MAILDIR.file) await fh.chmod(modes.file);
        await fh.writev([prefix, message]);
        await fh.datasync();
      } finally {
        await fh.close();
      }
      const final = path.join(dir, 'new', `${base},S=${size}`);
      await fsp.rename(tmp, final);
      const d = await fsp.open(path.join(dir, 'new'), fsc.O_RDONLY | fsc.O_DIRECTORY);
      await d.sync().finally(() => d.close());
      this.usage.set(dir, (this.usage.get(dir) ?? 0) + size);
      return { file: final, duplicate: false };
    } catch (err) {
      if (err instanceof TransportError) throw err;
      const e = err as NodeJS.ErrnoException;
      // Disk full and friends are transient: the message waits in Local delivery. A full
      // disk or quota says so (RFC 3463 4.3.1, mail system full), as the receive side does.
      const full = e.code === 'ENOSPC' || e.code === 'EDQUOT';
      throw new TransportError(
        full ? 452 : 451,
        full ? '4.3.1' : '4.3.0',
        `Store driver error for ${m.address}: ${e.code ?? e.message}`,
      );
    }
  }
}
