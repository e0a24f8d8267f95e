// Store driver: delivers to Maildir (one per mailbox, under <data>/mailboxes/<store>/<address>),
// the format Dovecot and mutt read. A message is written in tmp/, fsync'd, and linked into
// new/ under a name derived from (queue id, recipient id), so a delivery interrupted by a
// crash and tried again finds the copy it already made instead of making a second one.
import { promises as fsp, constants as fsc } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { TransportError } from '../../message/status.js';
import type { MailboxRef, StoreDriver } from './store-driver.js';

function slug(s: string): string {
  return s.replace(/[^A-Za-z0-9@._+-]+/g, '_');
}

export type { MailboxRef } from './store-driver.js';

export class MaildirStore implements StoreDriver {
  private readonly usage = new Map<string, number>();
  private readonly host = os.hostname().replace(/[/:]/g, '_');

  constructor(private readonly root: string) {}

  mailboxDir(m: MailboxRef): string {
    return path.join(this.root, slug(m.store), slug(m.address.toLowerCase()));
  }

  private async ensure(dir: string): Promise<void> {
    for (const sub of ['tmp', 'new', 'cur']) await fsp.mkdir(path.join(dir, sub), { recursive: true });
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

  /**
   * Delivers one copy. `prefix` is prepended (Return-Path, Delivered-To). `recheck` is set
   * when an earlier attempt may have completed before a crash.
   */
  async deliver(
    m: MailboxRef,
    uniqueId: string,
    prefix: Buffer,
    message: Buffer,
    recheck: boolean,
  ): Promise<{ file: string; duplicate: boolean }> {
    const dir = this.mailboxDir(m);
    const base = `${uniqueId}.${this.host}`;
    try {
      await this.ensure(dir);
      if (recheck && (await this.alreadyDelivered(dir, base))) {
        return { file: path.join(dir, 'new', base), duplicate: true };
      }
      const size = prefix.length + message.length;
      if (m.quotaKb !== null && (await this.used(dir)) + size > m.quotaKb * 1024) {
        throw new TransportError(552, '5.2.2', `Mailbox ${m.address} is full (quota ${m.quotaKb} KB)`);
      }
      const tmp = path.join(dir, 'tmp', base);
      const fh = await fsp.open(tmp, 'w', 0o600);
      try {
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
      // Disk full and friends are transient: the message waits in Local delivery.
      throw new TransportError(451, '4.3.0', `Store driver error for ${m.address}: ${e.code ?? e.message}`);
    }
  }
}
