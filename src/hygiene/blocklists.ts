// Block-list providers (connection filtering rules) asked in priority order on the first
// RCPT; the first match wins [003:5521-5530, 5952-5994]. Answers are cached for their TTL;
// a DNS failure or time-out fails open (the client is not blocked) and is logged.
import type { Resolver } from 'node:dns/promises';
import type { Logger } from 'pino';
import { blockListMatch, dnsblQueryName, rejectionText, type BlockListRule } from './filters.js';

export interface BlockListHit {
  rule: string;
  answer: string;
  text: string;
}

export class BlockListChecker {
  private readonly cache = new Map<string, { answers: string[]; until: number }>();

  constructor(
    private readonly rules: BlockListRule[],
    private readonly resolver: Resolver,
    private readonly log: Logger,
  ) {}

  private async lookup(name: string): Promise<string[]> {
    const hit = this.cache.get(name);
    if (hit && hit.until > Date.now()) return hit.answers;
    try {
      const records = await this.resolver.resolve4(name, { ttl: true });
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
      // At error level: the default diagnostic level (minimum) writes only errors, and a
      // block list that cannot be asked lets listed clients in unnoticed (SPEC §3).
      this.log.error({ name, code }, 'block list lookup failed; failing open');
      return [];
    }
  }

  /** The first provider (in order) that lists `ip`, with the text to send. */
  async check(ip: string): Promise<BlockListHit | undefined> {
    for (const rule of this.rules) {
      if (!rule.enabled) continue;
      const name = dnsblQueryName(ip, rule.suffix);
      if (!name) continue;
      const answer = blockListMatch(rule, await this.lookup(name));
      if (answer) {
        return {
          rule: rule.name,
          answer,
          text: rejectionText(rule.rejectionText, ip, rule.name, rule.suffix),
        };
      }
    }
    return undefined;
  }
}
