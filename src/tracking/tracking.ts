// Message tracking: every stage writes an event with the fields of [002 "Fields in Message
// Tracking"]; stored in SQLite beside the queues, indexed by message-id, sender,
// recipient and time, kept `retentionDays` days (7 by default) [003:7247-7282].
import Database from 'better-sqlite3';

export type TrackingEventName =
  | 'RECEIVE'
  | 'SUBMIT'
  | 'RESOLVE'
  | 'EXPAND'
  | 'DUPLICATEEXPAND'
  | 'REDIRECT'
  | 'TRANSFER'
  | 'SEND'
  | 'DELIVER'
  | 'DUPLICATEDELIVER'
  | 'DEFER'
  | 'FAIL'
  | 'DSN'
  | 'BADMAIL'
  | 'POISONMESSAGE'
  | 'LOAD';

export interface TrackingEvent {
  event: TrackingEventName;
  source: string;
  internalMessageId: string;
  messageId?: string;
  sender?: string;
  recipients?: string[];
  recipientStatus?: string[];
  clientIp?: string;
  serverIp?: string;
  connectorId?: string;
  totalBytes?: number;
  relatedRecipientAddress?: string;
  reference?: string;
  subject?: string;
  returnPath?: string;
  messageInfo?: string;
  directionality?: 'Incoming' | 'Originating';
}

export interface TrackingRow extends TrackingEvent {
  dateTime: string;
  serverHostname: string;
  recipientCount: number;
}

export interface TrackingQuery {
  sender?: string;
  recipient?: string;
  messageId?: string;
  internalMessageId?: string;
  event?: string;
  start?: Date;
  end?: Date;
  limit?: number;
}

export class MessageTracking {
  private readonly db: Database.Database;
  private readonly insert: Database.Statement;
  private pending: unknown[][] = [];
  private flushTimer: NodeJS.Timeout | undefined;
  /** Observers of every event (counters), called even when tracking is switched off. */
  readonly listeners: ((e: TrackingEvent) => void)[] = [];

  constructor(
    file: string,
    private readonly serverHostname: string,
    private readonly options: { enabled: boolean; logSubject: boolean; retentionDays: number },
  ) {
    this.db = new Database(file);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = NORMAL');
    this.db.exec(`
      CREATE TABLE IF NOT EXISTS events (
        id INTEGER PRIMARY KEY,
        time INTEGER NOT NULL,
        server TEXT NOT NULL,
        event TEXT NOT NULL,
        source TEXT NOT NULL,
        internal_message_id TEXT NOT NULL,
        message_id TEXT,
        sender TEXT,
        recipients TEXT,
        recipient_status TEXT,
        recipient_count INTEGER,
        client_ip TEXT,
        server_ip TEXT,
        connector_id TEXT,
        total_bytes INTEGER,
        related_recipient TEXT,
        reference TEXT,
        subject TEXT,
        return_path TEXT,
        message_info TEXT,
        directionality TEXT
      );
      CREATE INDEX IF NOT EXISTS events_time ON events(time);
      CREATE INDEX IF NOT EXISTS events_mid ON events(message_id);
      CREATE INDEX IF NOT EXISTS events_imid ON events(internal_message_id);
      CREATE INDEX IF NOT EXISTS events_sender ON events(sender);
      CREATE TABLE IF NOT EXISTS event_recipients (event_id INTEGER NOT NULL, recipient TEXT NOT NULL);
      CREATE INDEX IF NOT EXISTS event_recipients_r ON event_recipients(recipient);
    `);
    this.insert = this.db.prepare(`INSERT INTO events (time, server, event, source, internal_message_id,
      message_id, sender, recipients, recipient_status, recipient_count, client_ip, server_ip, connector_id,
      total_bytes, related_recipient, reference, subject, return_path, message_info, directionality)
      VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`);
  }

  /** Records an event; writes are batched into one transaction per tick. */
  write(e: TrackingEvent): void {
    for (const l of this.listeners) l(e);
    if (!this.options.enabled) return;
    const recipients = e.recipients ?? [];
    this.pending.push([
      Date.now(),
      this.serverHostname,
      e.event,
      e.source,
      e.internalMessageId,
      e.messageId ?? null,
      e.sender?.toLowerCase() ?? null,
      JSON.stringify(recipients),
      e.recipientStatus ? JSON.stringify(e.recipientStatus) : null,
      recipients.length,
      e.clientIp ?? null,
      e.serverIp ?? null,
      e.connectorId ?? null,
      e.totalBytes ?? null,
      e.relatedRecipientAddress ?? null,
      e.reference ?? null,
      this.options.logSubject ? (e.subject ?? null) : null,
      e.returnPath ?? null,
      e.messageInfo ?? null,
      e.directionality ?? null,
    ]);
    // Events of one short burst share a commit; readers of the database see them within 20 ms.
    this.flushTimer ??= setTimeout(() => this.flush(), 20);
  }

  flush(): void {
    if (this.flushTimer) clearTimeout(this.flushTimer);
    this.flushTimer = undefined;
    const rows = this.pending;
    this.pending = [];
    if (!rows.length) return;
    const addRecipient = this.db.prepare('INSERT INTO event_recipients (event_id, recipient) VALUES (?, ?)');
    this.db.transaction(() => {
      for (const r of rows) {
        const info = this.insert.run(...r);
        for (const rcpt of JSON.parse(r[7] as string) as string[]) {
          addRecipient.run(info.lastInsertRowid, rcpt.toLowerCase());
        }
      }
    })();
  }

  search(q: TrackingQuery): TrackingRow[] {
    this.flush();
    const where: string[] = [];
    const args: unknown[] = [];
    if (q.sender) {
      where.push('e.sender = ?');
      args.push(q.sender.toLowerCase());
    }
    if (q.recipient) {
      where.push('e.id IN (SELECT event_id FROM event_recipients WHERE recipient = ?)');
      args.push(q.recipient.toLowerCase());
    }
    if (q.messageId) {
      where.push('e.message_id = ?');
      args.push(q.messageId);
    }
    if (q.internalMessageId) {
      where.push('e.internal_message_id = ?');
      args.push(q.internalMessageId);
    }
    if (q.event) {
      where.push('e.event = ?');
      args.push(q.event.toUpperCase());
    }
    if (q.start) {
      where.push('e.time >= ?');
      args.push(q.start.getTime());
    }
    if (q.end) {
      where.push('e.time <= ?');
      args.push(q.end.getTime());
    }
    const sql = `SELECT * FROM events e ${where.length ? 'WHERE ' + where.join(' AND ') : ''} ORDER BY e.id LIMIT ?`;
    args.push(q.limit ?? 1000);
    return (this.db.prepare(sql).all(...args) as Record<string, unknown>[]).map((r) => ({
      dateTime: new Date(r.time as number).toISOString(),
      serverHostname: r.server as string,
      event: r.event as TrackingEventName,
      source: r.source as string,
      internalMessageId: r.internal_message_id as string,
      messageId: (r.message_id as string) ?? undefined,
      sender: (r.sender as string) ?? undefined,
      recipients: JSON.parse(r.recipients as string) as string[],
      recipientStatus: r.recipient_status
        ? (JSON.parse(r.recipient_status as string) as string[])
        : undefined,
      recipientCount: r.recipient_count as number,
      clientIp: (r.client_ip as string) ?? undefined,
      serverIp: (r.server_ip as string) ?? undefined,
      connectorId: (r.connector_id as string) ?? undefined,
      totalBytes: (r.total_bytes as number) ?? undefined,
      relatedRecipientAddress: (r.related_recipient as string) ?? undefined,
      reference: (r.reference as string) ?? undefined,
      subject: (r.subject as string) ?? undefined,
      returnPath: (r.return_path as string) ?? undefined,
      messageInfo: (r.message_info as string) ?? undefined,
      directionality: (r.directionality as 'Incoming' | 'Originating') ?? undefined,
    }));
  }

  /** Deletes events older than the retention period. */
  prune(now = Date.now()): number {
    this.flush();
    const cutoff = now - this.options.retentionDays * 86400_000;
    return this.db.transaction(() => {
      this.db
        .prepare('DELETE FROM event_recipients WHERE event_id IN (SELECT id FROM events WHERE time < ?)')
        .run(cutoff);
      return this.db.prepare('DELETE FROM events WHERE time < ?').run(cutoff).changes;
    })();
  }

  close(): void {
    this.flush();
    this.db.close();
  }
}
