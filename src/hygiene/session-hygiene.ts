// The filters of the organisation as one virtual server applies them, in the guide's order
// [003:5666-5801]. The session asks at MAIL, at each RCPT and after DATA; every rejection
// is reported (tracking event and counter) through `onReject`.
import type { VirtualServerConfig } from '../config/schema.js';
import type { AcceptedDomains } from '../directory/accepted-domains.js';
import type { Directory } from '../directory/directory.js';
import { DirectoryUnavailableError } from '../directory/unavailable.js';
import type { BlockListChecker, BlockListHit } from './blocklists.js';
import { headerFromAddresses, type Filters, type Verdict } from './filters.js';
import type { Greylist } from './greylist.js';

export interface HygieneEvent {
  stage: 'connection control' | 'connection' | 'sender' | 'recipient' | 'blocklist' | 'greylist' | 'header';
  ip: string;
  sender?: string;
  recipient?: string;
  verdict: Verdict;
}

/** Per-session memory: the block lists are asked once, on the first RCPT. */
export interface HygieneSessionState {
  blockList?: Promise<BlockListHit | undefined>;
}

export class SessionHygiene {
  constructor(
    private readonly switches: VirtualServerConfig['filters'],
    private readonly filters: Filters,
    private readonly blockLists: BlockListChecker | undefined,
    private readonly greylist: Greylist | undefined,
    private readonly directory: Directory,
    private readonly acceptedDomains: AcceptedDomains,
    private readonly onReject: (e: HygieneEvent) => void,
  ) {}

  /** Rejections are reported here; an archived message is reported when it goes to badmail. */
  private report(e: HygieneEvent): Verdict {
    if (e.verdict.action === 'reject') this.onReject(e);
    return e.verdict;
  }

  /** Steps 2-4 at MAIL FROM. */
  atMail(ip: string, sender: string, authenticated: boolean): Verdict {
    if (authenticated) return { action: 'accept' };
    if (this.switches.connection) {
      const v = this.filters.connectionAtMail(ip);
      if (v.action !== 'accept') return this.report({ stage: 'connection', ip, sender, verdict: v });
    }
    if (this.switches.sender) {
      const v = this.filters.sender(sender, 'envelope');
      if (v.action !== 'accept') return this.report({ stage: 'sender', ip, sender, verdict: v });
    }
    return { action: 'accept' };
  }

  /** Steps 5-8 (and greylisting) at each RCPT. */
  async atRcpt(
    state: HygieneSessionState,
    ip: string,
    sender: string,
    recipient: string,
    authenticated: boolean,
  ): Promise<Verdict> {
    if (authenticated) return { action: 'accept' };
    // Exception recipients (postmaster) are accepted and skip the remaining checks.
    if (this.switches.connection && this.filters.exception(recipient)) return { action: 'accept' };
    if (this.switches.connection && this.blockLists && !this.filters.accepted(ip)) {
      state.blockList ??= this.blockLists.check(ip);
      const hit = await state.blockList;
      if (hit) {
        return this.report({
          stage: 'blocklist',
          ip,
          sender,
          recipient,
          verdict: { action: 'reject', code: 550, status: '5.7.1', text: hit.text },
        });
      }
    }
    if (this.switches.recipient) {
      const blocked = this.filters.recipientBlocked(recipient);
      if (blocked.action !== 'accept')
        return this.report({ stage: 'recipient', ip, sender, recipient, verdict: blocked });
      if (this.filters.settings.recipient.filterNotInDirectory) {
        const domain = recipient.slice(recipient.lastIndexOf('@') + 1);
        const accepted = this.acceptedDomains.match(domain);
        // A directory that cannot answer is no "not found": the client tries again (451 4.4.3).
        const found = accepted?.authoritative
          ? await this.directory.findByAddress(recipient).catch((err: unknown) => {
              if (err instanceof DirectoryUnavailableError) return err;
              throw err;
            })
          : true;
        if (found instanceof DirectoryUnavailableError) {
          return {
            action: 'reject',
            code: 451,
            status: '4.4.3',
            text: 'Directory unavailable, try again later',
          };
        }
        if (!found) {
          return this.report({
            stage: 'recipient',
            ip,
            sender,
            recipient,
            verdict: { action: 'reject', code: 550, status: '5.1.1', text: `${recipient}... User unknown` },
          });
        }
      }
    }
    if (this.switches.greylisting && this.greylist) {
      const g = this.greylist.check(ip, sender, recipient, authenticated);
      if (!g.pass) {
        return this.report({
          stage: 'greylist',
          ip,
          sender,
          recipient,
          verdict: {
            action: 'reject',
            code: 451,
            status: '4.7.1',
            text: `Greylisted, please try again in ${g.retryAfterSeconds} seconds`,
          },
        });
      }
    }
    return { action: 'accept' };
  }

  /** Step 9 after DATA: the sender filter on the header From:. */
  atData(ip: string, headerFrom: string | undefined, authenticated: boolean): Verdict {
    if (authenticated || !this.switches.sender || !headerFrom) return { action: 'accept' };
    // Every mailbox of the field counts, whatever form it is written in.
    for (const address of headerFromAddresses(headerFrom)) {
      const verdict = this.filters.sender(address, 'header');
      if (verdict.action !== 'accept') return this.report({ stage: 'header', ip, sender: address, verdict });
    }
    return { action: 'accept' };
  }
}
