// NAME      badmail: the one writer of <data>/<badmailDirectory>
// DESCRIPTION
//   A message nobody can be told about (a failure of a null-sender message [003:5049]) or
//   one the sender filter archives is set aside as <id>.bad (the message as spooled) with
//   <id>.bdr beside it (why: one line per recipient, or the filter's reason).
// SECURITY  badmail holds whole messages: the directory is the server's, like the spool.
import { promises as fsp } from 'node:fs';
import path from 'node:path';

export class Badmail {
  constructor(readonly dir: string) {}

  private async prepare(id: string): Promise<{ message: string; report: string }> {
    await fsp.mkdir(this.dir, { recursive: true, mode: 0o700 });
    return { message: path.join(this.dir, `${id}.bad`), report: path.join(this.dir, `${id}.bdr`) };
  }

  /** Copies the spool file (it stays until the message is finished); returns the .bad path. */
  async copy(id: string, spoolFile: string, report: string): Promise<string> {
    const target = await this.prepare(id);
    await fsp.copyFile(spoolFile, target.message).catch(() => undefined);
    await fsp
      .writeFile(target.report, report.endsWith('\n') ? report : `${report}\n`, { mode: 0o600 })
      .catch(() => undefined);
    return target.message;
  }

  /** Moves the spool file here (the message never entered the queues); throws if it cannot. */
  async move(id: string, spoolFile: string, report: string): Promise<string> {
    const target = await this.prepare(id);
    await fsp.rename(spoolFile, target.message);
    await fsp.writeFile(target.report, `${report}\n`, { mode: 0o600 }).catch(() => undefined);
    return target.message;
  }
}

/** A .bdr line per recipient: address, status, diagnostic. */
export function badmailReport(
  rows: { address: string; status: string | null; diagnostic: string | null; last_error: string | null }[],
): string {
  return rows.map((r) => `${r.address}\t${r.status ?? ''}\t${r.diagnostic ?? r.last_error ?? ''}`).join('\n');
}
