// NAME      recovery: brings queue.db in line with the spool after a start or a crash
// SYNOPSIS  await recoverQueue(store, report, log)
// DESCRIPTION
//   The spool is the record of acceptance. A complete file the database does not know (a
//   crash between the fsync and the rows) is inserted: DSNs (null sender, no client) into
//   the DSN queue, the rest to the categorizer. Rows whose file is gone are dropped (logged
//   when they were still open). Local deliveries in flight at the crash are marked for a
//   mailbox check before they are made again. A message with nothing left to do is finished.
//   Only files the database does not know are read (spool.recover(isKnown)), so a restart
//   costs a directory listing and one query, not a read of every queued message.
import type { Logger } from 'pino';
import type { RecoveryReport } from './spool.js';
import { QUEUE } from './names.js';
import type { QueueStore } from './store/queue-store.js';

export interface QueueRecovery {
  inserted: number;
  lost: number;
}

export async function recoverQueue(
  store: QueueStore,
  report: Pick<RecoveryReport, 'messages' | 'onDisk'>,
  known: Set<string>,
  log: Logger,
): Promise<QueueRecovery> {
  let inserted = 0;
  store.transaction(() => {
    for (const spooled of report.messages) {
      if (known.has(spooled.envelope.id) || spooled.envelope.archived !== undefined) continue;
      // DSNs are generated here with no client: they re-enter through the DSN queue.
      const isDsn = spooled.envelope.sender === '' && spooled.envelope.client.ip === '';
      store.insertMessage(spooled, isDsn ? QUEUE.dsn : QUEUE.categorizer, isDsn);
      inserted++;
    }
    // Deliveries in flight at the crash may have completed: check the mailbox first.
    store.markRecheck(QUEUE.local);
  });
  let lost = 0;
  const gone = [...known].filter((id) => !report.onDisk.has(id));
  for (const id of gone) {
    // Finished, and the crash came between its file and its rows: nothing is lost.
    if (store.unfinishedCount(id) > 0) {
      // The body is gone (removed by hand or corrupt): nothing can be delivered.
      log.error({ id }, 'queued message has no spool file; removing it from the queues');
      lost++;
    }
    store.transaction(() => store.deleteMessageRows(id));
  }
  // A crash between the last outcome and the removal leaves a finished message queued
  // (and its spool file on disk) with nothing left to revisit it: finish it now.
  await store.finish(store.finishedMessageIds());
  return { inserted, lost };
}
