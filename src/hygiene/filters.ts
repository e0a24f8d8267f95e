// Connection, sender and recipient filtering (Part Three of the guide, [003:5058-6256]),
// as pure decisions; DNS and storage are passed in. The order of checks is the guide's
// [003:5666-5801], SPEC §3:
//   connect: virtual server connection control (smtp/server) → drop
//   MAIL:    global accept list (skips deny list and block lists) → global deny list (drop)
//            → sender filter (drop, or accept silently to badmail)
//   RCPT:    block lists on the first RCPT, first match wins (550 5.7.1 custom text)
//            → exception recipients (accepted, skip the rest) → recipient filter (550 5.1.1)
//            → recipients not in the directory, authoritative domains (550 5.1.1)
//   DATA:    sender filter on the header From: (550 5.1.0 Sender Denied)
import net from 'node:net';
import { IpRangeList } from '../net/ip-range.js';

/** The address inside a display-name form (`"Kim Akers" <kim@example.com>`), lower-cased. */
export function bareAddress(entry: string): string {
  const m = /<([^>]*)>/.exec(entry);
  return (m ? m[1]! : entry).trim().toLowerCase();
}

/**
 * Sender / recipient filter entries: `user@domain`, `*@domain`, `@domain`, `*@*.domain`,
 * and the display-name form. Matching ignores case.
 */
export function addressListMatch(entries: readonly string[], address: string): string | undefined {
  const a = address.toLowerCase();
  const at = a.lastIndexOf('@');
  const domain = at === -1 ? '' : a.slice(at + 1);
  for (const raw of entries) {
    const e = bareAddress(raw);
    if (!e) continue;
    if (e === a) return raw;
    const eat = e.lastIndexOf('@');
    if (eat === -1) continue;
    const local = e.slice(0, eat);
    const edomain = e.slice(eat + 1);
    if (local !== '' && local !== '*') continue;
    if (edomain === domain) return raw;
    if (edomain.startsWith('*.') && domain.endsWith(edomain.slice(1))) return raw;
  }
  return undefined;
}

/**
 * The addresses in a header From: value, in order: `"Kim" <kim@example.com>`, `Kim <…>`,
 * `kim@example.com (Kim)`, the guide's `ted@contoso.com<Ted Bremer>` [003:5788] and
 * mailbox lists. Comments and quoted display names are left out.
 */
export function headerFromAddresses(value: string): string[] {
  // Quoted strings are display names unless they are a quoted local part ("x"@domain).
  const bare = value.replace(/\([^()]*\)/g, ' ').replace(/"(?:[^"\\]|\\.)*"(?!@)/g, ' ');
  return [...bare.matchAll(/(?:"(?:[^"\\]|\\.)*"|[^\s<>(),;:@"]+)@[^\s<>(),;:@"]+/g)].map((m) => m[0]);
}

/** The DNS name a block list is asked about: reversed octets (or nibbles) + suffix [003:5521]. */
export function dnsblQueryName(ip: string, suffix: string): string | undefined {
  const s = suffix.replace(/^\./, '').replace(/\.$/, '');
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip);
  const addr = mapped ? mapped[1]! : ip;
  if (net.isIPv4(addr)) return `${addr.split('.').reverse().join('.')}.${s}`;
  if (net.isIPv6(addr)) {
    // Expand to 32 nibbles.
    const [head, tail = ''] = addr.split('::') as [string, string?];
    const h = head ? head.split(':') : [];
    const t = tail ? tail.split(':') : [];
    const groups = [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t];
    const nibbles = groups.map((g) => g.padStart(4, '0')).join('');
    return `${nibbles.split('').reverse().join('.')}.${s}`;
  }
  return undefined;
}

export interface BlockListRule {
  name: string;
  suffix: string;
  matchMode: 'any' | 'mask' | 'codes';
  mask?: string;
  codes: string[];
  rejectionText: string;
  enabled: boolean;
}

function v4(s: string): number {
  return s.split('.').reduce((acc, o) => ((acc << 8) | Number(o)) >>> 0, 0);
}

/** Which answer (127.0.0.x) makes `rule` match, if any [003:5978-5994]. */
export function blockListMatch(rule: BlockListRule, answers: readonly string[]): string | undefined {
  const listed = answers.filter((a) => a.startsWith('127.'));
  switch (rule.matchMode) {
    case 'any':
      return listed[0];
    case 'codes':
      return listed.find((a) => rule.codes.includes(a));
    case 'mask': {
      // Decision (SPEC §3): mask matches when (x & mask) == mask.
      if (!rule.mask) return undefined;
      const m = v4(rule.mask);
      return listed.find((a) => (v4(a) & m) >>> 0 === m);
    }
  }
}

/** The text sent when a rule's custom error message is left blank [003:5952-5954]. */
export const DEFAULT_REJECTION_TEXT = '%0 has been blocked by %1';

/** Custom rejection text: %0 client IP, %1 rule name, %2 suffix, %% literal; {0} {1} {2} too. */
export function rejectionText(template: string, ip: string, rule: string, suffix: string): string {
  const values = [ip, rule, suffix];
  // "Leave this box blank to use the following default error message".
  return (template.trim() === '' ? DEFAULT_REJECTION_TEXT : template)
    .replace(/%([012%])/g, (_, k: string) => (k === '%' ? '%' : values[Number(k)]!))
    .replace(/\{([012])\}/g, (_, k: string) => values[Number(k)]!);
}

export type Verdict =
  | { action: 'accept' }
  | { action: 'reject'; code: number; status: string; text: string; drop?: boolean }
  | { action: 'archive'; reason: string };

export interface FilterSettings {
  connection: { accept: string[]; deny: string[]; blockLists: BlockListRule[]; exceptions: string[] };
  sender: { addresses: string[]; filterBlankSender: boolean; dropConnection: boolean; archive: boolean };
  recipient: { blocked: string[]; filterNotInDirectory: boolean };
}

/** Compiled filters of the organisation; each virtual server switches them on. */
export class Filters {
  private readonly accept: IpRangeList;
  private readonly deny: IpRangeList;

  constructor(readonly settings: FilterSettings) {
    this.accept = new IpRangeList(settings.connection.accept);
    this.deny = new IpRangeList(settings.connection.deny);
  }

  /** Global accept list: a match skips the deny list and the block lists. */
  accepted(ip: string): boolean {
    return this.accept.contains(ip);
  }

  /** Steps 2-3 at MAIL FROM: global accept and deny lists. */
  connectionAtMail(ip: string): Verdict {
    if (this.accepted(ip)) return { action: 'accept' };
    if (this.deny.contains(ip)) {
      return { action: 'reject', code: 550, status: '5.7.1', text: `${ip} is on the deny list`, drop: true };
    }
    return { action: 'accept' };
  }

  /** Step 4 (and 9 with the header From): the sender filter. */
  sender(address: string, where: 'envelope' | 'header'): Verdict {
    const s = this.settings.sender;
    const blank = address === '' && s.filterBlankSender;
    const listed = address !== '' && addressListMatch(s.addresses, address) !== undefined;
    if (!blank && !listed) return { action: 'accept' };
    if (s.archive) return { action: 'archive', reason: `sender ${address || '<>'} is filtered` };
    const text = where === 'header' ? 'Sender Denied' : `${address || '<>'}... Sender Denied`;
    return {
      action: 'reject',
      code: 550,
      status: '5.1.0',
      text,
      drop: s.dropConnection || where === 'header',
    };
  }

  /** Step 6: exception recipients (postmaster) are always accepted. */
  exception(recipient: string): boolean {
    return addressListMatch(this.settings.connection.exceptions, recipient) !== undefined;
  }

  /** Step 7: the blocked recipients list. */
  recipientBlocked(recipient: string): Verdict {
    if (addressListMatch(this.settings.recipient.blocked, recipient) === undefined)
      return { action: 'accept' };
    return { action: 'reject', code: 550, status: '5.1.1', text: `${recipient}... Recipient blocked` };
  }
}
