// NAME      storage: the receive side's answers to a full disk. No I/O here.
// SYNOPSIS  queueMinFree(configuredKb, maxMessageSizeKb) -> bytes
//           storageRefusal({ available, reserve, declaredSize }) -> TransportError | undefined
//           spoolFailure(err) -> Reply
// DESCRIPTION
//   MAIL is refused while the data directory's file system has less free space than the
//   reserve, or when the SIZE= the client declared does not fit above it (Postfix's
//   queue_minfree; RFC 1870 §6.1). Free space unknown (statfs failed): no refusal.
//   A spool write that fails for want of space (ENOSPC, EDQUOT) is 452 4.3.1 (RFC 3463:
//   mail system full), any other failure 451 4.3.0; neither is ever acknowledged.
// STANDARDS RFC 5321 §4.2.2 (452), 3463 (4.3.1), 1870 §6.1
import { reply, TransportError, type Reply } from '../status.js';

/** RFC 5321's text for 452, as Postfix and Exchange send it with 4.3.1. */
export const INSUFFICIENT_STORAGE = 'Insufficient system storage';

/** Reserve when none is configured: 1.5 × the message size limit, at least 100 MB (bytes). */
export const DEFAULT_MIN_FREE_BYTES = 100 * 1024 * 1024;

/** The free space (bytes) MAIL keeps: the configured KB, else the default above. */
export function queueMinFree(configuredKb: number | null, maxMessageSizeKb: number | null): number {
  if (configuredKb !== null) return configuredKb * 1024;
  const oneAndAHalfMessages = maxMessageSizeKb === null ? 0 : Math.ceil(maxMessageSizeKb * 1024 * 1.5);
  return Math.max(DEFAULT_MIN_FREE_BYTES, oneAndAHalfMessages);
}

export interface StorageFacts {
  /** Bytes free for the server on the data directory's file system; undefined if unknown. */
  available: number | undefined;
  /** Bytes to keep free. */
  reserve: number;
  /** SIZE= at MAIL, if any. */
  declaredSize?: number;
}

/** 452 4.3.1 when MAIL must wait for space; undefined when it may go on. */
export function storageRefusal(facts: StorageFacts): TransportError | undefined {
  if (facts.available === undefined) return undefined;
  const room = facts.available - facts.reserve;
  if (room < 0 || (facts.declaredSize !== undefined && facts.declaredSize > room)) {
    return new TransportError(452, '4.3.1', INSUFFICIENT_STORAGE);
  }
  return undefined;
}

/** The file system is full (or the server's quota is used up). */
export function isStorageFull(err: unknown): boolean {
  const code = (err as { code?: unknown } | undefined)?.code;
  return code === 'ENOSPC' || code === 'EDQUOT';
}

/** The reply when the spool could not be written. */
export function spoolFailure(err: unknown): Reply {
  return isStorageFull(err)
    ? reply(452, '4.3.1', INSUFFICIENT_STORAGE)
    : reply(451, '4.3.0', 'Error writing message to the queue; try again later');
}
