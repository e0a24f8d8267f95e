// NAME      queue core: the store, the scheduler and the bodies, for the stages to share
// SYNOPSIS  core = new QueueCore({ dataDir, spool, log }); core.scheduler.register(stage)
//           core.submit(spooled, body) · await core.recover(report, known) · core.start()
//           await core.stop()
// DESCRIPTION
//   Holds rows and wakes stages but decides nothing: each stage's worker lives in its own
//   folder and registers here. A submission joins the turn's write batch; once committed,
//   the categorizer is woken. `activeMessages` are those a delivery holds right now (the
//   viewer shows them Active and no other delivery takes them).
import type { Logger } from 'pino';
import type { RecoveryReport, Spool, SpooledMessage } from './spool.js';
import { QUEUE, STAGE, type StageName } from './names.js';
import { Scheduler } from './scheduler.js';
import { QueueStore } from './store/queue-store.js';
import { BodyCache } from './bodies.js';
import { recoverQueue, type QueueRecovery } from './recovery.js';

/**
 * What every stage worker asks of the core beyond its own store methods: wake a stage by
 * name, and finish messages with nothing left to do. Each worker's queue interface extends
 * it with the store methods it uses, small enough to fake in a unit test.
 */
export interface StageQueue {
  wake(stage: StageName): void;
  finish(messageIds: Iterable<string>): Promise<void>;
}

export interface QueueCoreOptions {
  dataDir: string;
  spool: Spool;
  log: Logger;
  /** Told of each submission inside its transaction (message tracking's SUBMIT). */
  onSubmitted?: (message: SpooledMessage) => void;
}

export class QueueCore implements StageQueue {
  readonly store: QueueStore;
  readonly scheduler: Scheduler;
  readonly bodies = new BodyCache();
  readonly activeMessages = new Set<string>();
  private submittedSinceFlush = false;

  constructor(private readonly options: QueueCoreOptions) {
    this.store = new QueueStore(options.dataDir, options.spool);
    this.scheduler = new Scheduler(options.log);
    this.store.afterFlush = () => {
      if (!this.submittedSinceFlush) return;
      this.submittedSinceFlush = false;
      this.scheduler.wake(STAGE.categorizer);
    };
  }

  get spool(): Spool {
    return this.store.spool;
  }

  wake(stage: StageName): void {
    this.scheduler.wake(stage);
  }

  /** Called once a message is acknowledged; its rows share the turn's transaction. */
  submit(message: SpooledMessage, body?: Buffer): void {
    if (body) this.bodies.remember(message.envelope.id, body);
    this.store.defer(() => {
      this.store.insertMessage(message, QUEUE.categorizer, false);
      this.options.onSubmitted?.(message);
    });
    this.submittedSinceFlush = true;
  }

  /** Removes finished messages (file first, then rows) and forgets their bodies. */
  async finish(messageIds: Iterable<string>): Promise<void> {
    for (const id of await this.store.finish(messageIds)) this.bodies.forget(id);
  }

  /** Queue ids the database knows: spool recovery reads only the others. */
  knownMessageIds(): Set<string> {
    return this.store.knownMessageIds();
  }

  recover(report: Pick<RecoveryReport, 'messages' | 'onDisk'>, known: Set<string>): Promise<QueueRecovery> {
    return recoverQueue(this.store, report, known, this.options.log);
  }

  start(): void {
    this.scheduler.start();
  }

  async stop(): Promise<void> {
    this.store.flush();
    await this.scheduler.stop();
    this.store.close();
  }
}
