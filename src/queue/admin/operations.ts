// NAME      queue operations: what an administrator does to queues and messages
// SYNOPSIS  freezeQueue(name, bool) · freezeMessage(id, bool) · deleteMessage(id, ndr)
//           exportMessage(id) · retryNow(queue?) · queueExists(name)
// DESCRIPTION
//   Message freeze is independent of queue freeze [SPEC §6]: unfreezing a queue does not
//   unfreeze a message frozen on its own. Delete with NDR fails every open recipient with
//   5.0.0 and owes each the DSN its NOTIFY asks for; refused on a DSN. Retry now (force
//   connection) makes every retrying recipient due and every next hop in Retry tried now;
//   mail a connector holds (schedule, remote triggered delivery) stays held and is reported
//   as such (retry-report.ts). A queue that does not exist is refused (no queue "X"): a
//   freeze never creates one.
// SECURITY  reached only through the admin API, which requires the admin token.
import { TransportError } from '../../message/status.js';
import type { NotifyPolicy } from '../outcomes.js';
import type { Scheduler } from '../scheduler.js';
import { Spool, type Envelope } from '../spool.js';
import { STAGE } from '../names.js';
import type { QueueStore } from '../store/queue-store.js';
import { notifyList, type MessageRow } from '../store/rows.js';
import { retryReport, type RetryReport } from './retry-report.js';

/** Told of every deletion, for message tracking (a FAIL event with source ADMIN). */
export type DeletionListener = (deleted: {
  id: string;
  messageId?: string;
  sender: string;
  recipients: string[];
  withNdr: boolean;
}) => void;

export class QueueOperations {
  constructor(
    private readonly store: QueueStore,
    private readonly scheduler: Pick<Scheduler, 'wake' | 'wakeAll'>,
    private readonly notifyPolicy: NotifyPolicy,
    private readonly deleted: DeletionListener,
  ) {}

  private requireMessage(id: string): MessageRow {
    const m = this.store.message(id);
    if (!m) throw new TransportError(550, '5.1.0', `no message ${id} in the queues`);
    return m;
  }

  /** The queue exists: one of the guide's, a remote queue, a frozen one, or one holding mail. */
  queueExists(name: string): boolean {
    return this.store.queueKnown(name);
  }

  private requireQueue(name: string): void {
    if (!this.store.queueKnown(name)) throw new TransportError(550, '5.0.0', `no queue "${name}"`);
  }

  freezeQueue(name: string, frozen: boolean): void {
    this.requireQueue(name);
    this.store.setQueueFrozen(name, frozen);
    if (!frozen) this.scheduler.wakeAll();
  }

  freezeMessage(id: string, frozen: boolean): void {
    this.requireMessage(id);
    this.store.setMessageFrozen(id, frozen);
    if (!frozen) this.scheduler.wakeAll();
  }

  /** Deletes a message; with `ndr` every open recipient gets a failure DSN. Refused on DSNs. */
  deleteMessage(id: string, ndr: boolean): void {
    const m = this.requireMessage(id);
    if (ndr && (m.is_dsn || !m.sender)) {
      throw new TransportError(550, '5.7.1', 'a delivery status notification cannot be deleted with an NDR');
    }
    const envelope = JSON.parse(m.envelope) as Envelope;
    const open = this.store.openRowsOf(id);
    if (ndr) {
      this.store.transaction(() => {
        for (const r of open)
          this.store.holds.fail(
            r.id,
            '5.0.0',
            'smtp; 550 5.0.0 The message was deleted by an administrator.',
            'The message was deleted by an administrator.',
            this.notifyPolicy('failure', notifyList(r), m.sender),
          );
      });
      this.scheduler.wake(STAGE.dsn);
    } else {
      this.store.transaction(() => this.store.deleteMessageRows(id));
      void this.store.spool.recycle(m.file);
    }
    this.deleted({
      id,
      ...(envelope.messageId ? { messageId: envelope.messageId } : {}),
      sender: m.sender,
      recipients: open.map((r) => r.address),
      withNdr: ndr,
    });
  }

  /** The message as it sits in the spool: its original bytes, Received header included. */
  async exportMessage(id: string): Promise<Buffer> {
    const m = this.requireMessage(id);
    const read = await Spool.readFile(m.file);
    if (!read) throw new TransportError(451, '4.3.0', `spool file of ${id} is incomplete`);
    return read.message;
  }

  /**
   * Force connection: every recipient waiting for a retry in `queue` (or all) is due now;
   * what a connector holds stays held and is reported.
   */
  retryNow(queue?: string): RetryReport {
    if (queue !== undefined) this.requireQueue(queue);
    const changed = this.store.retryNow(queue);
    this.scheduler.wakeAll();
    const frozen = queue !== undefined && this.store.queueFrozen(queue);
    return retryReport(changed, this.store.connectorHolds(queue), frozen);
  }
}
