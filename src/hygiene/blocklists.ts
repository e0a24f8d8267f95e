// NAME      block lists: connection filtering rules asked on the first RCPT
// SYNOPSIS  new BlockListChecker(rules, newResolver, log, deadlineMs) · check(ip)
// DESCRIPTION
//   Every enabled provider is asked at once, on a resolver of the check's own with one try
//   and the check's deadline as its time-out; the answers are read in priority order and
//   the first match wins [003:5521-5530, 5952-5994], so a higher-priority provider that
//   answers later still beats a lower one that answered first. At the deadline whatever
//   is still unanswered is cancelled and counts as "not listed" (fail open, logged at
//   error level); once the answer is known the rest is cancelled too. Worst case: one
//   deadline per session, however many providers. Answers are cached for their TTL
//   (at most an hour), "not listed" for a minute.
// SEE ALSO  filters.ts (query names, match modes, rejection text), README.md
import type { Resolver } from 'node:dns/promises';
import type { Logger } from 'pino';
import { blockListMatch, dnsblQueryName, rejectionText, type BlockListRule } from './filters.js';

export interface BlockListHit {
  rule: string;
  answer: string;
  text: string;
}

/** What a check needs of a resolver: A lookups with TTLs, and cancelling what is in flight. */
export type BlockListResolver = Pick<Resolver, 'resolve4' | 'cancel'>;

/** The documented time one check may take, however many providers are asked. */
export const BLOCK_LIST_DEADLINE_MS = 3000;

/** The answer of one provider: its A records, or undefined when it could not be asked. */
type Answers = string[] | undefined;

export class BlockListChecker {
  private readonly cache = new Map<string, { answers: string[]; until: number }>();

  /**
   * @param newResolver a fresh resolver for one check (one try, `deadlineMs` time-out), so
   *        cancelling its stragglers touches no other session's lookups
   */
  constructor(
    private readonly rules: BlockListRule[],
    private readonly newResolver: (timeoutMs: number) => BlockListResolver,
    private readonly log: Logger,
    private readonly deadlineMs = BLOCK_LIST_DEADLINE_MS,
  ) {}

  private async lookup(resolver: BlockListResolver, name: string, expired: () => boolean): Promise<Answers> {
    try {
      const records = await resolver.resolve4(name, { ttl: true });
      const ttl = Math.max(1, Math.min(...records.map((r) => r.ttl), 3600));
      const answers = records.map((r) => r.address);
      this.cache.set(name, { answers, until: Date.now() + ttl * 1000 });
      return answers;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOTFOUND' || code === 'ENODATA') {
        // Not listed. Negative answers are cached briefly.
        this.cache.set(name, { answers: [], until: Date.now() + 60_000 });
        return [];
      }
      // Cancelled because the answer was already known: nothing went wrong.
      if (code === 'ECANCELLED' && !expired()) return undefined;
      // At error level: the default diagnostic level (minimum) writes only errors, and a
      // block list that cannot be asked lets listed clients in unnoticed (SPEC §3).
      this.log.error(
        { name, code: code === 'ECANCELLED' ? 'ETIMEOUT' : code, deadlineMs: this.deadlineMs },
        'block list lookup failed; failing open',
      );
      return undefined;
    }
  }

  /** The first provider (in priority order) that lists `ip`, with the text to send. */
  async check(ip: string): Promise<BlockListHit | undefined> {
    const asked: { rule: BlockListRule; answers: Promise<Answers> }[] = [];
    let resolver: BlockListResolver | undefined;
    let expired = false;
    let timer: NodeJS.Timeout | undefined;
    for (const rule of this.rules) {
      if (!rule.enabled) continue;
      const name = dnsblQueryName(ip, rule.suffix);
      if (!name) continue;
      const cached = this.cache.get(name);
      if (cached && cached.until > Date.now()) {
        asked.push({ rule, answers: Promise.resolve(cached.answers) });
        continue;
      }
      if (!resolver) {
        resolver = this.newResolver(this.deadlineMs);
        const started = resolver;
        // The resolver's own time-out may be longer than asked (several servers, c-ares
        // rounding): the deadline is kept here.
        timer = setTimeout(() => {
          expired = true;
          started.cancel();
        }, this.deadlineMs);
      }
      asked.push({ rule, answers: this.lookup(resolver, name, () => expired) });
    }
    try {
      for (const { rule, answers } of asked) {
        const answer = blockListMatch(rule, (await answers) ?? []);
        if (answer) {
          return {
            rule: rule.name,
            answer,
            text: rejectionText(rule.rejectionText, ip, rule.name, rule.suffix),
          };
        }
      }
      return undefined;
    } finally {
      clearTimeout(timer);
      // Stragglers of lower priority are not needed once the answer is known.
      resolver?.cancel();
    }
  }
}
