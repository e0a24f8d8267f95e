// The categorizer ("Messages awaiting directory lookup") [003:8638-8753, 7946-8130]:
// resolves every envelope recipient against the directory and decides where each copy goes.
// It performs no I/O of its own beyond directory look-ups; the queuing engine applies the
// outcome in one transaction.
import type { Directory, DirectoryEntry } from '../directory/directory.js';
import type { AcceptedDomains } from '../directory/accepted-domains.js';

export type Route =
  | { kind: 'local'; store: string; mailboxAddress: string; quotaKb: number | null }
  | { kind: 'server'; server: string }
  | { kind: 'remote'; domain: string }
  | { kind: 'forwardHost'; host: string }
  | { kind: 'failed'; status: string; code: number; text: string };

export interface SourceRecipient {
  id: number;
  address: string;
  /** The address the sender used (for DSN Original-Recipient / tracking). */
  original: string;
}

export interface Leaf {
  sourceId: number;
  address: string;
  route: Route;
  /**
   * The sender did not name this recipient and may not learn it: reached through a group
   * with hidden membership, or a hidden user reached through a group, contact or forwarding.
   */
  concealed?: true;
}

export interface CategorizerEvent {
  event: 'EXPAND' | 'RESOLVE' | 'REDIRECT' | 'DUPLICATEEXPAND';
  recipient: string;
  related: string;
  info?: string;
}

export interface CategorizerResult {
  leaves: Leaf[];
  events: CategorizerEvent[];
}

export interface CategorizerContext {
  serverName: string;
  directory: Directory;
  acceptedDomains: AcceptedDomains;
  /** "Forward all mail with unresolved recipients to host", authoritative domains only [003:2588, 2942-2974]. */
  forwardUnresolvedTo?: string;
  orgMaxRecipients: number | null;
  orgMaxReceiveSizeKb: number | null;
  orgMaxSendSizeKb: number | null;
  maxHopCount: number;
}

export interface MessageFacts {
  sender: string;
  authenticated: boolean;
  size: number;
  receivedHeaders: number;
  envelopeRecipientCount: number;
}

const fail = (code: number, status: string, text: string): Route => ({ kind: 'failed', code, status, text });

/**
 * Where a recipient of an accepted domain goes when the directory does not know it.
 * "Forward all mail with unresolved recipients to host" affects only authoritative domains
 * (the guide's shared address space, method 2): set, the recipient goes to that host; unset,
 * 5.1.1. A non-authoritative domain is not affected by it: the recipient is routed like any
 * remote domain, to a matching SMTP connector or else to the domain's MX
 * [003:2588, 2971, 5055].
 */
export function unresolvedRoute(authoritative: boolean, domain: string, forwardUnresolvedTo?: string): Route {
  if (!authoritative) return { kind: 'remote', domain };
  if (forwardUnresolvedTo) return { kind: 'forwardHost', host: forwardUnresolvedTo };
  return fail(
    550,
    '5.1.1',
    'The e-mail account does not exist at the organization this message was sent to.',
  );
}

const MAX_DEPTH = 20;

function domainOf(address: string): string {
  const at = address.lastIndexOf('@');
  return at === -1 ? '' : address.slice(at + 1).toLowerCase();
}

export class Categorizer {
  constructor(private readonly ctx: CategorizerContext) {}

  /** Is `sender` named by `list` (users, contacts, groups by name or address; groups recursively)? */
  private async senderMatches(
    list: readonly string[],
    sender: string,
    senderEntry?: DirectoryEntry,
  ): Promise<boolean> {
    const s = sender.toLowerCase();
    for (const item of list) {
      const entry =
        (await this.ctx.directory.findByName(item)) ?? (await this.ctx.directory.findByAddress(item));
      if (!entry) {
        if (item.toLowerCase() === s) return true;
        continue;
      }
      if (senderEntry && entry.name === senderEntry.name) return true;
      if (entry.kind === 'group' && (await this.groupContains(entry, s, senderEntry, new Set()))) return true;
    }
    return false;
  }

  private async groupContains(
    group: Extract<DirectoryEntry, { kind: 'group' }>,
    sender: string,
    senderEntry: DirectoryEntry | undefined,
    seen: Set<string>,
  ): Promise<boolean> {
    if (seen.has(group.name)) return false;
    seen.add(group.name);
    for (const m of group.group.members) {
      const entry = (await this.ctx.directory.findByName(m)) ?? (await this.ctx.directory.findByAddress(m));
      if (!entry) {
        if (m.toLowerCase() === sender) return true;
      } else if (senderEntry && entry.name === senderEntry.name) return true;
      else if (entry.kind === 'group' && (await this.groupContains(entry, sender, senderEntry, seen)))
        return true;
    }
    return false;
  }

  /** Delivery restrictions of a recipient (user or group) [003:5214-5331]. */
  private async restricted(
    r: { authenticatedOnly: boolean; acceptFrom: string[]; rejectFrom: string[] },
    facts: MessageFacts,
    senderEntry: DirectoryEntry | undefined,
  ): Promise<Route | undefined> {
    const denied = fail(550, '5.7.1', 'You do not have permission to send to this recipient.');
    if (r.authenticatedOnly && !facts.authenticated) return denied;
    if (!facts.sender) return r.acceptFrom.length ? denied : undefined;
    if (r.acceptFrom.length && !(await this.senderMatches(r.acceptFrom, facts.sender, senderEntry)))
      return denied;
    if (r.rejectFrom.length && (await this.senderMatches(r.rejectFrom, facts.sender, senderEntry)))
      return denied;
    return undefined;
  }

  async categorize(recipients: SourceRecipient[], facts: MessageFacts): Promise<CategorizerResult> {
    const result: CategorizerResult = { leaves: [], events: [] };
    const c = this.ctx;
    const messageWide = (route: Route) => {
      for (const r of recipients) result.leaves.push({ sourceId: r.id, address: r.address, route });
      return result;
    };
    if (facts.receivedHeaders > c.maxHopCount) {
      return messageWide(
        fail(554, '4.4.6', 'The message exceeded the maximum hop count and was not delivered.'),
      );
    }
    if (c.orgMaxRecipients !== null && facts.envelopeRecipientCount > c.orgMaxRecipients) {
      return messageWide(fail(550, '5.5.3', 'Too many recipients for this message.'));
    }
    const senderEntry = facts.sender ? await c.directory.findByAddress(facts.sender) : undefined;
    const sendLimit =
      senderEntry?.kind === 'user'
        ? (senderEntry.user.maxSendSizeKb ?? c.orgMaxSendSizeKb)
        : c.orgMaxSendSizeKb;
    if (sendLimit !== null && facts.size > sendLimit * 1024) {
      return messageWide(fail(552, '5.2.3', 'The message is larger than the sender is allowed to send.'));
    }

    const seen = new Set<string>();
    for (const r of recipients) seen.add(r.address.toLowerCase());
    // One copy per mailbox: the envelope may name a user twice (case, proxy addresses).
    const placed = new Set<string>();

    const resolve = async (
      sourceId: number,
      address: string,
      chain: string[],
      viaExpansion: boolean,
      concealedAbove = false,
    ): Promise<void> => {
      let concealed = concealedAbove;
      const leaves = {
        push: (leaf: Leaf) => result.leaves.push(concealed ? { ...leaf, concealed: true } : leaf),
      };
      const key = address.toLowerCase();
      if (chain.includes(key) || chain.length > MAX_DEPTH) {
        leaves.push({
          sourceId,
          address,
          route: fail(554, '5.4.6', 'A forwarding loop was detected for this recipient.'),
        });
        return;
      }
      const nextChain = [...chain, key];
      let domain = domainOf(address);
      let lookup = address;
      if (!domain && key === 'postmaster') {
        const first = c.acceptedDomains.list().find((d) => d.authoritative && !d.domain.startsWith('*'));
        domain = first?.domain ?? '';
        lookup = `postmaster@${domain}`;
      }
      const accepted = c.acceptedDomains.match(domain);
      if (!accepted) {
        leaves.push({ sourceId, address, route: { kind: 'remote', domain } });
        return;
      }
      const entry = await c.directory.findByAddress(lookup);
      if (!entry) {
        leaves.push({
          sourceId,
          address,
          route: unresolvedRoute(accepted.authoritative, domain, c.forwardUnresolvedTo),
        });
        return;
      }
      switch (entry.kind) {
        case 'contact': {
          const target = entry.contact.targetAddress.replace(/^smtp:/i, '');
          result.events.push({ event: 'RESOLVE', recipient: target, related: address, info: entry.name });
          await resolve(sourceId, target, nextChain, viaExpansion, concealed);
          return;
        }
        case 'group': {
          const denied = await this.restricted(entry.group.restrictions, facts, senderEntry);
          if (denied) {
            leaves.push({ sourceId, address, route: denied });
            return;
          }
          if (
            entry.group.expansionServer &&
            entry.group.expansionServer.toLowerCase() !== c.serverName.toLowerCase()
          ) {
            // Expansion happens on the group's expansion server [003:8700].
            leaves.push({
              sourceId,
              address,
              route: { kind: 'server', server: entry.group.expansionServer },
            });
            return;
          }
          const members: string[] = [];
          for (const m of entry.group.members) {
            const me = (await c.directory.findByName(m)) ?? (await c.directory.findByAddress(m));
            const addr = me
              ? me.primaryAddress || (me.kind === 'contact' ? me.contact.targetAddress : '')
              : m;
            if (addr) members.push(addr.replace(/^smtp:/i, ''));
          }
          result.events.push({
            event: 'EXPAND',
            recipient: address,
            related: address,
            info: `${entry.name}: ${members.length} member(s)`,
          });
          for (const m of members) {
            const mk = m.toLowerCase();
            if (seen.has(mk)) {
              result.events.push({ event: 'DUPLICATEEXPAND', recipient: m, related: address });
              continue;
            }
            seen.add(mk);
            await resolve(sourceId, m, nextChain, true, concealed || entry.group.hideMembership);
          }
          return;
        }
        case 'user': {
          const u = entry.user;
          // A hidden user is named only to a sender who named it.
          if (u.hidden && chain.length > 0) concealed = true;
          const denied = await this.restricted(u.restrictions, facts, senderEntry);
          if (denied) {
            leaves.push({ sourceId, address, route: denied });
            return;
          }
          const receiveLimit = u.maxReceiveSizeKb ?? c.orgMaxReceiveSizeKb;
          if (receiveLimit !== null && facts.size > receiveLimit * 1024) {
            leaves.push({
              sourceId,
              address,
              route: fail(552, '5.2.3', 'The message is larger than the recipient is allowed to receive.'),
            });
            return;
          }
          if (u.forwardTo) {
            const target =
              (await c.directory.findByName(u.forwardTo))?.primaryAddress ??
              u.forwardTo.replace(/^smtp:/i, '');
            result.events.push({ event: 'REDIRECT', recipient: target, related: address, info: entry.name });
            if (!u.deliverAndForward) {
              await resolve(sourceId, target, nextChain, viaExpansion, concealed);
              return;
            }
            if (!seen.has(target.toLowerCase())) {
              seen.add(target.toLowerCase());
              await resolve(sourceId, target, nextChain, true, concealed);
            }
          }
          const mailbox = entry.name.toLowerCase();
          if (placed.has(mailbox)) {
            result.events.push({
              event: 'DUPLICATEEXPAND',
              recipient: entry.primaryAddress,
              related: address,
            });
            return;
          }
          placed.add(mailbox);
          const route: Route =
            u.mailbox.server.toLowerCase() === c.serverName.toLowerCase()
              ? {
                  kind: 'local',
                  store: u.mailbox.store,
                  mailboxAddress: entry.primaryAddress,
                  quotaKb: u.quotaKb,
                }
              : { kind: 'server', server: u.mailbox.server };
          leaves.push({ sourceId, address: entry.primaryAddress || address, route });
          return;
        }
      }
    };

    for (const r of recipients) await resolve(r.id, r.address, [], false);
    return result;
  }
}
