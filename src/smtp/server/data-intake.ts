// NAME      data-intake: the bytes of a message, after DATA or in BDAT chunks
// SYNOPSIS  data(session) · bdat(session, arg) · DotUnstuffer (pure) · messageBytes(...)
// DESCRIPTION
//   DATA is unstuffed in place by scanning line starts; the end marker is CRLF.CRLF only,
//   never a bare-LF variant (SMTP smuggling). A BDAT chunk is always read in full,
//   whatever the verdict, so the session stays in step; a refused chunk poisons the rest
//   of the transaction until RSET. Limits fail the message, not the stream: the data is
//   read to its end and then refused. The header section is scanned as it passes, and
//   its facts enter the envelope before a large message spills to disk.
// DIAGNOSTICS  552 5.3.4 message or session size · 452 4.3.1 a spill to disk found the disk
//           full (451 4.3.0 another write error) · 503 5.5.1 BINARYMIME over DATA,
//           DATA after BDAT, BDAT after a failed BDAT
// STANDARDS RFC 5321 §4.5.2 (transparency), 3030 (CHUNKING, BINARYMIME)
// SEE ALSO  acceptance.ts (what happens at the end of the message)
import { reply, TransportError, type Reply } from '../status.js';
import type { VirtualServerConfig } from '../../config/schema.js';
import { applyHeaderFacts, finishMessage, openMessage } from './acceptance.js';
import { firstRefusal, readyForData } from './preconditions.js';
import { spoolFailure } from './storage.js';
import type { ByteReader, Input, SessionContext, SessionFacts, Transaction } from './state.js';

const DOT = 0x2e;
const CR = 0x0d;
const LF = 0x0a;

/** The result of scanning one buffer of DATA input. */
export interface DataScan {
  /** Message bytes, stuffed dots removed. */
  segments: Buffer[];
  /** Bytes of the input used; the rest is pipelined commands or an undecided "." / ".\r". */
  consumed: number;
  /** The end marker was seen. */
  ended: boolean;
}

/** Dot-unstuffing across buffer boundaries. No I/O here. */
export class DotUnstuffer {
  private atLineStart = true;
  private lineStartAfterCrlf = true;

  scan(input: Buffer): DataScan {
    const segments: Buffer[] = [];
    let segmentStart = 0;
    let position = 0;
    let ended = false;
    while (position < input.length) {
      if (this.atLineStart && input[position] === DOT) {
        // "." at a line start: end marker, or a stuffed dot to remove.
        if (position + 1 >= input.length || (input[position + 1] === CR && position + 2 >= input.length)) {
          break; // need more
        }
        if (this.lineStartAfterCrlf && input[position + 1] === CR && input[position + 2] === LF) {
          if (position > segmentStart) segments.push(input.subarray(segmentStart, position));
          position += 3;
          segmentStart = position;
          ended = true;
          break;
        }
        if (position > segmentStart) segments.push(input.subarray(segmentStart, position));
        segmentStart = position + 1;
      }
      const newline = input.indexOf(LF, position);
      if (newline === -1) {
        position = input.length;
        this.atLineStart = false;
        break;
      }
      this.atLineStart = true;
      this.lineStartAfterCrlf = newline > 0 ? input[newline - 1] === CR : this.lineStartAfterCrlf;
      position = newline + 1;
    }
    if (!ended && position > segmentStart) segments.push(input.subarray(segmentStart, position));
    return { segments, consumed: position, ended };
  }
}

/** Counts message bytes against the limits, scans the header, and writes to the spool. */
export async function messageBytes(
  transaction: Transaction,
  chunk: Buffer,
  limits: VirtualServerConfig['messages'],
  facts: Pick<SessionFacts, 'sessionBytes'>,
): Promise<void> {
  transaction.bytes += chunk.length;
  if (transaction.failure) return;
  const limit = limits.maxMessageSizeKb;
  if (limit !== null && transaction.bytes > limit * 1024) {
    transaction.failure = reply(552, '5.3.4', 'Message size exceeds fixed maximum message size');
    await transaction.writer?.abort();
    return;
  }
  const sessionLimit = limits.maxSessionSizeKb;
  if (sessionLimit !== null && facts.sessionBytes + transaction.bytes > sessionLimit * 1024) {
    transaction.failure = reply(552, '5.3.4', 'Session size exceeds fixed maximum session size');
    await transaction.writer?.abort();
    return;
  }
  const headerWasDone = transaction.header.done;
  transaction.header.feed(chunk);
  // A large message is written to its file before it ends: the header facts must be in
  // the envelope by then, or the spooled envelope never carries them.
  if (transaction.header.done && !headerWasDone) {
    applyHeaderFacts(transaction.writer!.envelope, transaction.header.text());
  }
  try {
    await transaction.writer!.write(chunk);
  } catch (err) {
    // A spill to disk failed (disk full, I/O error): the message fails, the data is still read.
    transaction.failure = spoolFailure(err);
    transaction.spoolError = err;
    await transaction.writer?.abort();
  }
}

/** DATA, after the table's checks (no argument, hello, a transaction with recipients). */
export function data(session: SessionContext): void {
  const transaction = session.facts.transaction!;
  if (transaction.body === 'BINARYMIME') {
    throw new TransportError(503, '5.5.1', 'BODY=BINARYMIME requires BDAT');
  }
  if (transaction.writer) throw new TransportError(503, '5.5.1', 'BDAT in progress; DATA not allowed');
  openMessage(session, transaction);
  session.readBytes(new DataReader(session, transaction), 'data');
  session.send(reply(354, undefined, 'Start mail input; end with <CRLF>.<CRLF>'));
}

class DataReader implements ByteReader {
  private readonly unstuffer = new DotUnstuffer();

  constructor(
    private readonly session: SessionContext,
    private readonly transaction: Transaction,
  ) {}

  async read(input: Input): Promise<boolean> {
    if (input.pending.length === 0) return false;
    const { segments, consumed, ended } = this.unstuffer.scan(input.pending);
    // Taken before awaiting: input that arrives meanwhile is appended to what is left.
    input.pending = input.pending.subarray(consumed);
    const { facts, server } = this.session;
    for (const segment of segments) {
      await messageBytes(this.transaction, segment, server.config.messages, facts);
    }
    if (!ended) return false;
    this.session.readCommands('idle');
    await finishMessage(this.session, this.transaction);
    return true;
  }
}

export function bdat(session: SessionContext, arg: string): void {
  const match = /^(\d+)(?:\s+(LAST))?$/i.exec(arg);
  if (!match) throw new TransportError(501, '5.5.4', 'Syntax: BDAT chunk-size [LAST]');
  // The chunk is read whatever the verdict, so the session stays in step: a refusal waits for its end.
  let refusal: Reply | undefined;
  try {
    const notReady = firstRefusal(readyForData, session, arg, 'BDAT');
    if (notReady) throw notReady;
    const transaction = session.facts.transaction!;
    if (transaction.bdatFailed) throw new TransportError(503, '5.5.1', 'Previous BDAT failed; send RSET');
    if (!transaction.writer) openMessage(session, transaction);
  } catch (err) {
    if (!(err instanceof TransportError)) throw err;
    refusal = err.reply;
  }
  session.readBytes(new ChunkReader(session, Number(match[1]), match[2] !== undefined, refusal), 'data');
}

class ChunkReader implements ByteReader {
  private remaining: number;

  constructor(
    private readonly session: SessionContext,
    private readonly size: number,
    private readonly last: boolean,
    private readonly refusal: Reply | undefined,
  ) {
    this.remaining = size;
  }

  async read(input: Input): Promise<boolean> {
    const { facts, server } = this.session;
    if (this.remaining > 0) {
      if (input.pending.length === 0) return false;
      const take = Math.min(this.remaining, input.pending.length);
      const chunk = input.pending.subarray(0, take);
      input.pending = input.pending.subarray(take);
      this.remaining -= take;
      if (!this.refusal && facts.transaction) {
        await messageBytes(facts.transaction, chunk, server.config.messages, facts);
      }
      if (this.remaining > 0) return false;
    }
    this.session.readCommands('idle');
    if (this.refusal) {
      if (facts.transaction) facts.transaction.bdatFailed = true;
      this.session.send(this.refusal);
      return true;
    }
    const transaction = facts.transaction!;
    if (this.last) {
      await finishMessage(this.session, transaction);
    } else if (transaction.failure) {
      transaction.bdatFailed = true;
      await transaction.writer?.abort();
      this.session.send(transaction.failure);
    } else {
      this.session.send(reply(250, '2.0.0', `${this.size} octets received`));
    }
    return true;
  }
}
