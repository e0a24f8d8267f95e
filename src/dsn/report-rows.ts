// NAME      report rows: one recipient's line in a DSN, from its queue row
// DESCRIPTION
//   No I/O here. The action (failed, delayed, delivered, relayed, expanded), its status and
//   the text of the human part follow from the outcome the queue recorded and the DSN owed
//   (RFC 3464 §2.3). A delay report says until when it will be retried and, like a failure,
//   carries the last attempt's status, Diagnostic-Code and Remote-MTA when there was one.
import type { DsnAction, RecipientReport } from './dsn.js';

/** The row fields a report is made of (queue/store/rows.ts RecipientRow has them all). */
export interface ReportedRow {
  address: string;
  orcpt: string | null;
  outcome: string | null;
  status: string | null;
  diagnostic: string | null;
  last_error: string | null;
  dsn_pending: string | null;
  remote_mta: string | null;
}

export function actionOf(row: Pick<ReportedRow, 'dsn_pending' | 'outcome'>): DsnAction {
  if (row.dsn_pending === 'delay') return 'delayed';
  if (row.dsn_pending === 'expanded') return 'expanded';
  if (row.outcome === 'delivered') return 'delivered';
  if (row.outcome === 'relayed') return 'relayed';
  return 'failed';
}

function textOf(action: DsnAction, row: ReportedRow): string {
  switch (action) {
    case 'failed':
      return (
        row.last_error ??
        row.diagnostic?.replace(/^smtp; \d{3} \S+ /, '') ??
        'Delivery failed.'
      ).replace(/^\d{3} \S+ /, '');
    case 'delayed':
      return `Delivery has been delayed: ${row.last_error ?? 'temporary failure'}`;
    case 'expanded':
      return 'The distribution list was expanded.';
    case 'relayed':
      return `The message was relayed to ${row.remote_mta ?? 'the next hop'}.`;
    default:
      return 'The message was delivered.';
  }
}

/** `expiry`: when the message's retries end (epoch ms), for a delay report. */
export function reportRow(row: ReportedRow, expiry: number): RecipientReport {
  const action = actionOf(row);
  // A delay reports the transient status of the last attempt (4.x.x), else 4.0.0.
  const status =
    action === 'delayed'
      ? /^4\./.test(row.status ?? '')
        ? row.status!
        : '4.0.0'
      : (row.status ?? (action === 'failed' ? '5.0.0' : '2.0.0'));
  return {
    finalRecipient: row.address,
    ...(row.orcpt ? { originalRecipient: row.orcpt.replace(/^([^;]+);\s*/, '$1; ') } : {}),
    action,
    status,
    ...(row.diagnostic ? { diagnostic: row.diagnostic } : {}),
    ...(row.remote_mta ? { remoteMta: row.remote_mta } : {}),
    text: textOf(action, row),
    ...(action === 'delayed' ? { willRetryUntil: new Date(expiry) } : {}),
  };
}
