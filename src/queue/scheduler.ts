// NAME      scheduler: wakes stage workers; holds no SQL and no policy
// SYNOPSIS  scheduler.register({ name, runBatch, nextDue }); scheduler.wake(name);
//           scheduler.start(); await scheduler.stop()
// STRATEGY  one batch at a time per stage, at most every 5 ms (monotonic clock), so under a
//           steady stream the queries that find work serve several messages; a batch that
//           returns true runs again at once; a failed batch rests the stage 5 s; a stage
//           sleeps until woken or until its earliest retry is due (nextDue). A due time
//           that was already past when the batch began waits 1 s more: rows the
//           stage may not touch (a frozen message) must not spin it.
// TRIGGERS  submission committed        -> categorizer
//           categorizer placed rows     -> only the stages that received rows
//           a delivery round ended      -> dsn
//           a DSN was spooled           -> categorizer
//           link state changed, ETRN    -> routing
//           unfreeze, retry now         -> every stage
// BUGS      stop() waits at most 10 s for batches in flight; what is cut off is
//           delivered again after restart, which Maildir naming makes harmless.
import type { Logger } from 'pino';
import type { StageName } from './names.js';

export interface Stage {
  name: StageName;
  /** One batch of work; true when there is more to do at once. */
  runBatch(): Promise<boolean>;
  /** When the stage next has work by the clock (epoch ms), if ever. */
  nextDue(): number | undefined;
  /** Work in flight outside runBatch (e.g. remote sessions) that stop() must wait for. */
  inFlight?(): number;
}

const BATCH_GAP_MS = 5;
const REST_AFTER_FAILURE_MS = 5000;
const MIN_IDLE_RECHECK_MS = 1000;

class StageRunner {
  private running = false;
  private again = false;
  private timer: NodeJS.Timeout | undefined;
  private gapTimer: NodeJS.Timeout | undefined;
  /** Monotonic times (performance.now): a wall-clock step must not stall the stage. */
  private lastStart = -Infinity;
  private restUntil = -Infinity;
  stopped = false;

  constructor(
    readonly stage: Stage,
    private readonly log: Logger,
  ) {}

  wake(): void {
    if (this.stopped) return;
    if (this.running) {
      this.again = true;
      return;
    }
    if (this.gapTimer || performance.now() < this.restUntil) return;
    const wait = this.lastStart + BATCH_GAP_MS - performance.now();
    if (wait > 0) {
      this.gapTimer = setTimeout(() => {
        this.gapTimer = undefined;
        this.wake();
      }, wait);
      return;
    }
    this.running = true;
    void this.loop();
  }

  private async loop(): Promise<void> {
    const startedAt = Date.now();
    try {
      this.again = false;
      this.lastStart = performance.now();
      while (!this.stopped && (await this.stage.runBatch()));
    } catch (err) {
      this.log.error({ err, stage: this.stage.name }, 'queue stage failed; retrying in 5 s');
      this.running = false;
      this.again = false;
      this.restUntil = performance.now() + REST_AFTER_FAILURE_MS - 100;
      if (!this.stopped) this.schedule(Date.now() + REST_AFTER_FAILURE_MS);
      return;
    } finally {
      this.running = false;
    }
    if (this.stopped) return;
    if (this.again) {
      this.wake();
      return;
    }
    const due = this.stage.nextDue();
    if (due === undefined) return;
    const now = Date.now();
    // Due before this batch began and still due: rows the stage may not take.
    this.schedule(due <= startedAt ? Math.max(due, now) + MIN_IDLE_RECHECK_MS : due);
  }

  private schedule(at: number): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(
      () => {
        this.timer = undefined;
        this.wake();
      },
      Math.max(0, Math.min(at - Date.now(), 2 ** 31 - 1)),
    );
    this.timer.unref();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    if (this.gapTimer) clearTimeout(this.gapTimer);
  }

  get busy(): boolean {
    return this.running || (this.stage.inFlight?.() ?? 0) > 0;
  }
}

export class Scheduler {
  private readonly runners = new Map<StageName, StageRunner>();
  private started = false;

  constructor(private readonly log: Logger) {}

  register(stage: Stage): void {
    this.runners.set(stage.name, new StageRunner(stage, this.log));
  }

  /** Wakes one stage (no-op before start, or for a stage not registered). */
  wake(name: StageName): void {
    if (this.started) this.runners.get(name)?.wake();
  }

  wakeAll(): void {
    if (this.started) for (const r of this.runners.values()) r.wake();
  }

  busy(name: StageName): boolean {
    return this.runners.get(name)?.busy ?? false;
  }

  get stopped(): boolean {
    return [...this.runners.values()].some((r) => r.stopped);
  }

  start(): void {
    this.started = true;
    this.wakeAll();
  }

  /** Stops waking stages and waits up to 10 s for batches and deliveries in flight. */
  async stop(): Promise<void> {
    for (const r of this.runners.values()) r.stop();
    const deadline = Date.now() + 10_000;
    while ([...this.runners.values()].some((r) => r.busy) && Date.now() < deadline)
      await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
