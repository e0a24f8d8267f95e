// NAME      notify policy: which DSN a recipient's outcome owes (RFC 3461 §4.1)
// DESCRIPTION
//   No I/O here. Without NOTIFY, failures and delays are reported, successes not; NEVER
//   reports nothing; otherwise exactly what NOTIFY lists. The null sender gets no DSN, but
//   its failures are still owed: the DSN stage sets them aside as badmail [003:5049].
//   Members of an expanded group report failures only (§6.2.7.3).
import type { DsnKind } from '../queue/outcomes.js';

export function dsnFor(kind: DsnKind, notify: string[] | undefined, sender: string): string | null {
  if (!sender) return kind === 'failure' ? kind : null;
  if (!notify) return kind === 'success' ? null : kind;
  if (notify.includes('NEVER')) return null;
  const wanted = { failure: 'FAILURE', delay: 'DELAY', success: 'SUCCESS' }[kind];
  return notify.includes(wanted) ? kind : null;
}

/** The NOTIFY a member of an expanded group carries: failures only, unless NEVER. */
export function memberNotify(groupNotify: string | null): string | null {
  const list = groupNotify ? (JSON.parse(groupNotify) as string[]) : undefined;
  return list?.includes('NEVER') ? groupNotify : JSON.stringify(['FAILURE']);
}
