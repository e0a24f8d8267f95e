// NAME      report rows: one recipient's line in a DSN, from its queue row
// DESCRIPTION
//   No I/O here. The action (failed, delayed, delivered, relayed, expanded), its status and
//   the text of the human part follow from the outcome the queue recorded and the DSN owed
//   (RFC 3464 §2.3). A delay report says until when it will be retried and, like a failure,
//   carries the last attempt's status, Diagnostic-Code and Remote-MTA when there was one.
import type { DsnAction, RecipientReport } from './dsn.js';

/** One line per address for concealed recipients: several hidden members read as one. */
export function withoutRepeats(reports: RecipientReport[]): RecipientReport[] {
  const seen = new Set<string>();
  return reports.filter((r) => {
    const key = `${r.finalRecipient.toLowerCase()}|${r.action}|${r.status}|${r.text}`;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}

/** The row fields a report is made of (queue/store/rows.ts RecipientRow has them all). */
export interface ReportedRow {
  address: string;
  /** The address the sender used; a concealed row is reported under it. */
  original: string;
  concealed: number;
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

/** What a report says of a recipient the sender may not learn: its address never appears. */
export const CONCEALED_TEXT =
  'The message could not be delivered to a recipient this address reaches. Its members are not shown.';

/** `expiry`: when the message's retries end (epoch ms), for a delay report. */
export function reportRow(row: ReportedRow, expiry: number): RecipientReport {
  if (row.concealed) {
    // Only the status and the address the sender used: the member's address, the server
    // that refused it and its reply (which may quote the address) stay here.
    const {
      diagnostic: _diagnostic,
      remoteMta: _remoteMta,
      ...plain
    } = reportRow({ ...row, concealed: 0 }, expiry);
    return { ...plain, finalRecipient: row.original, text: CONCEALED_TEXT };
  }
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
