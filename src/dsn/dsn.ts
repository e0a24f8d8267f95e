// Delivery status notifications (RFC 3464 multipart/report, RFC 3463 codes). Pure: the
// caller supplies the original message and the per-recipient outcomes; this builds bytes.
// The human part follows the style the seeds quote [000]:
//   "Your message did not reach some or all of the intended recipients." ... "<host #5.1.1>"
import { randomBytes } from 'node:crypto';
import { rfc5322Date } from '../message/date.js';

export type DsnAction = 'failed' | 'delayed' | 'delivered' | 'relayed' | 'expanded';

export interface RecipientReport {
  /** The address as the sender wrote it (envelope recipient before expansion/redirect). */
  finalRecipient: string;
  originalRecipient?: string;
  action: DsnAction;
  status: string;
  /** e.g. "smtp; 550 5.1.1 User unknown" */
  diagnostic?: string;
  /** Human explanation for the text part. */
  text: string;
  remoteMta?: string;
  lastAttempt?: Date;
  willRetryUntil?: Date;
}

export interface DsnInput {
  reportingMta: string;
  originalEnvelopeId?: string;
  arrivalDate: Date;
  /** Envelope sender of the original message (the DSN goes there). */
  originalSender: string;
  /** Original message bytes (headers at least). */
  original: Buffer;
  ret: 'FULL' | 'HDRS';
  recipients: RecipientReport[];
  now: Date;
}

function headerValue(headers: string, name: string): string | undefined {
  const unfolded = headers.replace(/\r?\n[ \t]+/g, ' ');
  const m = new RegExp(`^${name}:[ \\t]*(.*)$`, 'im').exec(unfolded);
  return m?.[1]?.trim();
}

/** The header section of a message (up to the first empty line). */
export function headerSection(message: Buffer): string {
  const text = message.subarray(0, Math.min(message.length, 512 * 1024)).toString('utf8');
  const end = text.search(/\r?\n\r?\n/);
  return end === -1 ? text : text.slice(0, end);
}

export function buildDsn(input: DsnInput): { id: string; bytes: Buffer; subject: string } {
  const boundary = `BH-DSN-${randomBytes(8).toString('hex')}`;
  const headers = headerSection(input.original);
  const origSubject = headerValue(headers, 'Subject') ?? '';
  const origMessageId = headerValue(headers, 'Message-ID');
  const kinds = new Set(input.recipients.map((r) => r.action));
  const failed = kinds.has('failed');
  const delayed = !failed && kinds.has('delayed');
  const subjectPrefix = failed ? 'Undeliverable' : delayed ? 'Delayed' : 'Delivered';
  const subject = `${subjectPrefix}: ${origSubject}`.trimEnd();
  const id = `<${randomBytes(12).toString('hex')}@${input.reportingMta}>`;

  const human: string[] = [];
  if (failed) {
    human.push('Your message did not reach some or all of the intended recipients.', '');
  } else if (delayed) {
    human.push(
      'Delivery of your message has been delayed. The server will keep trying to deliver it;',
      'you do not need to send it again.',
      '',
    );
  } else {
    human.push('Your message has been delivered to the following recipients:', '');
  }
  human.push(`      Subject: ${origSubject}`, `      Sent:    ${rfc5322Date(input.arrivalDate)}`, '');
  const listTitle = failed
    ? 'The following recipient(s) could not be reached:'
    : delayed
      ? 'The following recipient(s) have not yet received it:'
      : 'Recipients:';
  human.push(listTitle, '');
  for (const r of input.recipients) {
    human.push(`      ${r.finalRecipient} on ${rfc5322Date(r.lastAttempt ?? input.now)}`);
    for (const line of r.text.split('\n')) human.push(`            ${line}`);
    if (r.willRetryUntil)
      human.push(`            Delivery will be attempted until ${rfc5322Date(r.willRetryUntil)}`);
    human.push(`            <${input.reportingMta} #${r.status}>`, '');
  }

  const perMessage = [`Reporting-MTA: dns; ${input.reportingMta}`];
  if (input.originalEnvelopeId) perMessage.push(`Original-Envelope-Id: ${input.originalEnvelopeId}`);
  perMessage.push(`Arrival-Date: ${rfc5322Date(input.arrivalDate)}`);
  const perRecipient = input.recipients.map((r) => {
    const f: string[] = [];
    if (r.originalRecipient) f.push(`Original-Recipient: ${r.originalRecipient}`);
    f.push(`Final-Recipient: rfc822; ${r.finalRecipient}`, `Action: ${r.action}`, `Status: ${r.status}`);
    if (r.remoteMta) f.push(`Remote-MTA: dns; ${r.remoteMta}`);
    if (r.diagnostic) f.push(`Diagnostic-Code: ${r.diagnostic.replace(/\r?\n/g, ' ')}`);
    f.push(`Last-Attempt-Date: ${rfc5322Date(r.lastAttempt ?? input.now)}`);
    if (r.willRetryUntil) f.push(`Will-Retry-Until: ${rfc5322Date(r.willRetryUntil)}`);
    return f.join('\r\n');
  });

  const returned =
    input.ret === 'HDRS'
      ? `Content-Type: text/rfc822-headers; charset=utf-8\r\n\r\n${headers.replace(/\r?\n/g, '\r\n')}\r\n`
      : `Content-Type: message/rfc822\r\n\r\n`;

  const top = [
    `From: Mail Delivery System <postmaster@${input.reportingMta}>`,
    `To: ${input.originalSender}`,
    `Subject: ${subject}`,
    `Date: ${rfc5322Date(input.now)}`,
    `Message-ID: ${id}`,
    ...(origMessageId ? [`In-Reply-To: ${origMessageId}`, `References: ${origMessageId}`] : []),
    'Auto-Submitted: auto-replied',
    'MIME-Version: 1.0',
    `Content-Type: multipart/report; report-type=delivery-status; boundary="${boundary}"`,
    '',
    'This is a MIME-formatted delivery status notification.',
    '',
    `--${boundary}`,
    'Content-Type: text/plain; charset=utf-8',
    'Content-Transfer-Encoding: 8bit',
    '',
    ...human,
    `--${boundary}`,
    'Content-Type: message/delivery-status',
    '',
    perMessage.join('\r\n'),
    '',
    perRecipient.join('\r\n\r\n'),
    '',
    `--${boundary}`,
  ].join('\r\n');

  const parts: Buffer[] = [Buffer.from(`${top}\r\n${returned}`, 'utf8')];
  if (input.ret === 'FULL') {
    parts.push(input.original);
    if (!input.original.subarray(-2).equals(Buffer.from('\r\n'))) parts.push(Buffer.from('\r\n'));
  }
  parts.push(Buffer.from(`--${boundary}--\r\n`));
  return { id, bytes: Buffer.concat(parts), subject };
}
