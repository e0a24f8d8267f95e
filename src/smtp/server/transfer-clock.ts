// NAME      transfer-clock: the deadline of one DATA or BDAT transfer. No I/O here, except
//           the timer of TransferWatch at the end.
// SYNOPSIS  clock = new TransferClock(limits, startedAt, now) · clock.received(bytes, now)
//           clock.waited(now) · clock.deadline() · clock.verdict(now)
//           new TransferWatch(limits, startedAt, busy, expired) · received(bytes) · stop()
// DESCRIPTION
//   Postfix's per-request deadline with smtpd_min_data_rate: the transfer starts with a
//   budget of dataTimeout; time spent waiting for the client uses it up, and every byte
//   that arrives earns 1/minDataRate of a second back, never more than dataTimeout in
//   hand. A client that keeps up the rate never runs out; one that trickles bytes does,
//   after about dataTimeout; one that sends nothing runs out after exactly dataTimeout
//   (the old gap between reads). With minDataRate 0 every read refills the budget. On top,
//   the whole message (DATA, or every BDAT chunk of it) must arrive within dataTimeLimit,
//   counted from `startedAt`.
//   waited() is for time the server, not the client, was the bottleneck (the socket
//   paused while the spool catches up): the budget is refilled, the total is not.
// SEE ALSO  session.ts (the timer), data-intake.ts
export interface TransferLimits {
  /** connections.dataTimeout, in ms. */
  gapMs: number;
  /** connections.minDataRate, bytes a second; 0: no minimum. */
  minRate: number;
  /** connections.dataTimeLimit, in ms; 0: no limit. */
  totalMs: number;
}

/** Why a transfer was cut off: no data for dataTimeout, too slow, or too long in total. */
export type TransferVerdict = 'idle' | 'rate' | 'total';

/** The text of the 421 4.4.2 for each verdict (the idle one is the idle timeout's). */
export const CUT_OFF: Record<TransferVerdict, string> = {
  idle: 'Timeout exceeded',
  rate: 'Data transfer too slow',
  total: 'Data transfer time limit exceeded',
};

export class TransferClock {
  /** Bytes seen in this transfer so far, and when it began: for the log line. */
  bytes = 0;
  readonly since: number;
  private budgetEndsAt: number;
  private lastArrivalAt: number;
  private readonly totalEndsAt: number;

  constructor(
    private readonly limits: TransferLimits,
    readonly startedAt: number,
    now: number,
  ) {
    this.since = now;
    this.budgetEndsAt = now + limits.gapMs;
    this.lastArrivalAt = now;
    this.totalEndsAt = limits.totalMs > 0 ? startedAt + limits.totalMs : Infinity;
  }

  received(bytes: number, now: number): void {
    this.bytes += bytes;
    this.lastArrivalAt = now;
    const cap = now + this.limits.gapMs;
    this.budgetEndsAt =
      this.limits.minRate > 0 ? Math.min(cap, this.budgetEndsAt + (bytes * 1000) / this.limits.minRate) : cap;
  }

  /** The server held the client up: its budget is refilled from now. */
  waited(now: number): void {
    this.budgetEndsAt = Math.max(this.budgetEndsAt, now + this.limits.gapMs);
  }

  /** When the transfer runs out if nothing more arrives (ms since the epoch). */
  deadline(): number {
    return Math.min(this.budgetEndsAt, this.totalEndsAt);
  }

  /** Undefined while the transfer may go on. */
  verdict(now: number): TransferVerdict | undefined {
    if (now >= this.totalEndsAt) return 'total';
    if (now < this.budgetEndsAt) return undefined;
    return now - this.lastArrivalAt >= this.limits.gapMs ? 'idle' : 'rate';
  }
}

/** The longest delay a Node timer takes; a later deadline is looked at again then. */
const MAX_TIMER_MS = 2 ** 31 - 1;
/** How soon a passed deadline is looked at again while the server is the one holding up. */
const BUSY_RECHECK_MS = 1000;

/**
 * The timer over one transfer's clock (the only part of this file with a side effect).
 * `busy()` says the server holds the client up (input unread, socket paused); `expired`
 * is called once, when the client ran out.
 */
export class TransferWatch {
  readonly clock: TransferClock;
  private timer: NodeJS.Timeout;

  constructor(
    limits: TransferLimits,
    startedAt: number,
    private readonly busy: () => boolean,
    private readonly expired: (verdict: TransferVerdict, clock: TransferClock) => void,
  ) {
    const now = Date.now();
    this.clock = new TransferClock(limits, startedAt, now);
    this.timer = this.arm(this.clock.deadline() - now);
  }

  received(bytes: number): void {
    this.clock.received(bytes, Date.now());
  }

  stop(): void {
    clearTimeout(this.timer);
  }

  private arm(delay: number): NodeJS.Timeout {
    return setTimeout(() => this.check(), Math.max(0, Math.min(delay, MAX_TIMER_MS)));
  }

  private check(): void {
    const now = Date.now();
    if (this.busy()) {
      this.clock.waited(now);
      this.timer = this.arm(Math.min(this.clock.deadline() - now, BUSY_RECHECK_MS));
      return;
    }
    const verdict = this.clock.verdict(now);
    if (verdict) this.expired(verdict, this.clock);
    else this.timer = this.arm(this.clock.deadline() - now);
  }
}
