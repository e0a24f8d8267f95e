// NAME      DSN worker: turns owed notifications into DSN messages in "DSN messages pending submission"
// DESCRIPTION
//   For each message owing DSNs, one RFC 3464 report to its sender (with a copy to
//   ndrCopyTo when something failed), spooled under an id derived from the original's
//   (<id>N<count>), so a DSN written before a crash is found again instead of made twice.
//   A file that cannot be read whole (a write that never finished) is written again.
//   Failures of a null-sender message go to badmail: nobody can be told [003:5049].
// TRIGGERS  woken by a delivery round, the categorizer or routing when a DSN is owed;
//           wakes the categorizer, which routes the DSNs like any message.
import { promises as fsp } from 'node:fs';
import { STAGE } from '../queue/names.js';
import type { QueueStore } from '../queue/store/queue-store.js';
import { Spool, type Envelope, type SpooledMessage } from '../queue/spool.js';
import { QUEUE } from '../queue/names.js';
import type { RetryPolicy } from '../queue/retry.js';
import type { MessageRow } from '../queue/store/rows.js';
import type { Stage } from '../queue/scheduler.js';
import type { TrackingEvent } from '../tracking/tracking.js';
import { trackingEvent } from '../tracking/events.js';
import { buildDsn } from './dsn.js';
import { reportRow, withoutRepeats } from './report-rows.js';
import { Badmail, badmailReport } from './badmail.js';
import type { StageQueue } from '../queue/core.js';

export interface DsnWorkerOptions {
  serverName: string;
  fqdn: string;
  ndrCopyTo?: string;
  localRetry: RetryPolicy;
  remoteRetry: RetryPolicy;
  badmail: Badmail;
  track: (e: TrackingEvent) => void;
}

/** What the DSN stage needs of the queue core: small enough to fake in a unit test. */
export interface DsnQueue extends StageQueue {
  store: Pick<
    QueueStore,
    | 'messagesOwingDsn'
    | 'message'
    | 'rowsOwingDsn'
    | 'clearDsnPending'
    | 'insertMessage'
    | 'incrementDsnCount'
    | 'transaction'
  >;
  spool: Pick<Spool, 'fileFor' | 'createWriter'>;
}

const BATCH = 50;

export class DsnWorker implements Stage {
  readonly name = STAGE.dsn;

  constructor(
    private readonly core: DsnQueue,
    private readonly options: DsnWorkerOptions,
  ) {}

  nextDue(): undefined {
    return undefined;
  }

  async runBatch(): Promise<boolean> {
    const ids = this.core.store.messagesOwingDsn(BATCH);
    if (!ids.length) return false;
    for (const id of ids) {
      const m = this.core.store.message(id);
      if (m) await this.generate(m);
    }
    await this.core.finish(ids);
    this.core.wake(STAGE.categorizer);
    return ids.length === BATCH;
  }

  private async generate(m: MessageRow): Promise<void> {
    const store = this.core.store;
    const envelope = JSON.parse(m.envelope) as Envelope;
    const rows = store.rowsOwingDsn(m.id);
    if (!rows.length) return;
    if (!m.sender) {
      // Nothing can be returned to the null sender: set it aside as badmail [003:5049].
      const target = await this.options.badmail.copy(m.id, m.file, badmailReport(rows));
      this.options.track(
        trackingEvent.badmail(
          {
            id: m.id,
            sender: '',
            recipients: rows.map((r) => r.address),
            statuses: rows.map((r) => r.status ?? ''),
          },
          'DSN',
          target,
        ),
      );
      store.clearDsnPending(rows.map((r) => r.id));
      return;
    }
    let original: Buffer;
    try {
      original = (await Spool.readFile(m.file))?.message ?? Buffer.alloc(0);
    } catch {
      original = Buffer.alloc(0);
    }
    const reports = withoutRepeats(
      rows.map((r) => {
        const policy = r.remote ? this.options.remoteRetry : this.options.localRetry;
        return reportRow(r, m.received_at + policy.expiration * 1000);
      }),
    );
    const dsnId = `${m.id}N${m.dsn_count + 1}`;
    const spool = this.core.spool;
    const file = spool.fileFor(dsnId);
    // A DSN written before a crash is taken as it is; a file that cannot be read whole (a
    // write that never finished) is written again.
    const earlier = await Spool.readFile(file).catch(() => undefined);
    if (!earlier) await fsp.rm(file, { force: true });
    const failedAny = reports.some((r) => r.action === 'failed');
    const recipients = [{ address: m.sender }];
    if (failedAny && this.options.ndrCopyTo) recipients.push({ address: this.options.ndrCopyTo });
    const dsnEnvelope: Envelope = {
      id: dsnId,
      receivedAt: new Date().toISOString(),
      server: this.options.serverName,
      virtualServer: '',
      client: { ip: '', port: 0, helo: this.options.fqdn, tls: false },
      sender: '',
      body: '8BITMIME',
      smtputf8: envelope.smtputf8,
      recipients,
    };
    let spooled: SpooledMessage;
    if (earlier) {
      spooled = { envelope: earlier.envelope, size: earlier.message.length, file };
    } else {
      const dsn = buildDsn({
        reportingMta: this.options.fqdn,
        originalEnvelopeId: envelope.envid,
        arrivalDate: new Date(m.received_at),
        originalSender: m.sender,
        original,
        ret: envelope.ret ?? 'FULL',
        recipients: reports,
        now: new Date(),
      });
      dsnEnvelope.messageId = dsn.id;
      dsnEnvelope.subject = dsn.subject;
      const writer = spool.createWriter(dsnEnvelope);
      await writer.write(dsn.bytes);
      spooled = await writer.commit();
    }
    store.transaction(() => {
      store.insertMessage(spooled, QUEUE.dsn, true);
      store.incrementDsnCount(m.id);
      store.clearDsnPending(rows.map((r) => r.id));
    });
    this.options.track(
      trackingEvent.dsn(
        { id: dsnId, messageId: spooled.envelope.messageId, recipients: recipients.map((r) => r.address) },
        {
          reference: envelope.messageId ?? m.id,
          recipients: rows.map((r) => r.address),
          statuses: reports.map((r) => r.status),
          actions: reports.map((r) => r.action),
        },
      ),
    );
  }
}
