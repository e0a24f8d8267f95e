// NAME      free space: how much room the data directory's file system has left
// SYNOPSIS  const space = new FreeSpace(dir); await space.available() -> bytes | undefined
// DESCRIPTION
//   statfs(2) of the directory: blocks available to an unprivileged user × block size
//   (what Postfix's queue_minfree compares with). The value is kept for maxAgeMs (1 s), and
//   callers that ask while a statfs runs share it, so MAIL stays cheap under load.
// DIAGNOSTICS  a failing statfs answers undefined (the caller does not refuse mail on a
//   guess) and is reported once through onError until one succeeds again.
import { promises as fsp, type StatsFs } from 'node:fs';

export class FreeSpace {
  private value: number | undefined;
  private readAt = -Infinity;
  private reading: Promise<number | undefined> | undefined;
  private failing = false;

  constructor(
    private readonly dir: string,
    private readonly options: {
      maxAgeMs?: number;
      statfs?: (dir: string) => Promise<Pick<StatsFs, 'bavail' | 'bsize'>>;
      onError?: (err: Error) => void;
      now?: () => number;
    } = {},
  ) {}

  /** Bytes available on the directory's file system, at most maxAgeMs old; undefined if unknown. */
  available(): Promise<number | undefined> {
    const now = (this.options.now ?? Date.now)();
    if (now - this.readAt < (this.options.maxAgeMs ?? 1000)) return Promise.resolve(this.value);
    this.reading ??= this.read().finally(() => (this.reading = undefined));
    return this.reading;
  }

  private async read(): Promise<number | undefined> {
    const statfs = this.options.statfs ?? ((dir: string) => fsp.statfs(dir));
    try {
      const s = await statfs(this.dir);
      this.value = s.bavail * s.bsize;
      this.failing = false;
    } catch (err) {
      this.value = undefined;
      if (!this.failing) this.options.onError?.(err as Error);
      this.failing = true;
    }
    this.readAt = (this.options.now ?? Date.now)();
    return this.value;
  }
}
