// NAME      data-intake: the bytes of a message, after DATA or in BDAT chunks
// SYNOPSIS  data(session) · bdat(session, arg) · DotUnstuffer, admitChunk (pure) ·
//           messageBytes(...)
// DESCRIPTION
//   DATA is unstuffed in place by scanning line starts; the end marker is CRLF.CRLF only,
//   and only after a line that ended in CRLF, never a bare-LF variant (SMTP smuggling).
//   A bare LF (LF without CR) in DATA fails the message with 550 5.5.2 once its end
//   arrives, unless bareLineFeed normalises it for this client: then it is stored as CRLF.
//   A lone "." touching a bare LF is kept as a "." line, never dropped. BDAT is binary
//   and is never looked at. A BDAT count over the size limits is refused at once, before
//   its bytes: up to 1.5 times maxMessageSizeKb the chunk is then read and dropped (the
//   session stays in step; RSET next), beyond that, or a count that cannot be a size,
//   the connection closes after the 552 (Postfix does the same). Other BDAT refusals wait
//   for the end of their chunk; a refused chunk poisons the rest of the transaction until
//   RSET. Limits met while data streams fail the message, not the stream: the data is
//   read to its end and then refused. The header section is scanned as it passes, and
//   its facts enter the envelope before a large message spills to disk.
// DIAGNOSTICS  552 5.3.4 message or session size · 550 5.5.2 bare <LF> in DATA ·
//           452 4.3.1 a spill to disk found the disk full (451 4.3.0 another write error) ·
//           501 5.5.4 BDAT syntax · 503 5.5.1 BINARYMIME over DATA, DATA after BDAT,
//           BDAT after a failed BDAT
// STANDARDS RFC 5321 §2.3.8 (CRLF only), §4.5.2 (transparency), 3030 (CHUNKING, BINARYMIME)
// SEE ALSO  acceptance.ts (what happens at the end of the message), transfer-clock.ts
import { reply, TransportError, type Reply } from '../status.js';
import type { VirtualServerConfig } from '../../config/schema.js';
import { applyHeaderFacts, finishMessage, openMessage } from './acceptance.js';
import { firstRefusal, readyForData } from './preconditions.js';
import { spoolFailure } from './storage.js';
import type { ByteReader, Input, SessionContext, SessionFacts, Transaction } from './state.js';

const DOT = 0x2e;
const CR = 0x0d;
const LF = 0x0a;
const CRLF = Buffer.from('\r\n');

/** The result of scanning one buffer of DATA input. */
export interface DataScan {
  /** Message bytes, stuffed dots removed (and bare LFs made CRLF when normalising). */
  segments: Buffer[];
  /** Bytes of the input used; the rest is pipelined commands or an undecided "." / ".\r". */
  consumed: number;
  /** The end marker was seen. */
  ended: boolean;
  /** A line in the bytes used ended in LF without CR. */
  bareLineFeed: boolean;
}

/** Dot-unstuffing across buffer boundaries. No I/O here. */
export class DotUnstuffer {
  private atLineStart = true;
  /** The line before this one ended in CRLF: only then may "." CRLF end the data. */
  private previousLineCrlf = true;
  /** The last byte used was CR: an LF first in the next buffer is not bare. */
  private afterCr = false;

  /** `normalise`: bare LFs become CRLF in the segments; otherwise they are only reported. */
  constructor(private readonly normalise = false) {}

  scan(input: Buffer): DataScan {
    const segments: Buffer[] = [];
    let segmentStart = 0;
    let position = 0;
    let ended = false;
    let bareLineFeed = false;
    while (position < input.length) {
      if (this.atLineStart && input[position] === DOT) {
        const next = input[position + 1];
        if (next === undefined || (next === CR && position + 2 >= input.length)) break; // need more
        const crlfNext = next === CR && input[position + 2] === LF;
        if (crlfNext && this.previousLineCrlf) {
          if (position > segmentStart) segments.push(input.subarray(segmentStart, position));
          position += 3;
          segmentStart = position;
          ended = true;
          break;
        }
        // A lone "." next to a bare LF is neither the end nor a stuffed dot: it stays, as
        // the "." line a CRLF client would have sent as "..".
        if (!crlfNext && next !== LF) {
          if (position > segmentStart) segments.push(input.subarray(segmentStart, position));
          segmentStart = position + 1;
        }
      }
      const newline = input.indexOf(LF, position);
      if (newline === -1) {
        this.afterCr = input[input.length - 1] === CR;
        position = input.length;
        this.atLineStart = false;
        break;
      }
      const crlf = newline > 0 ? input[newline - 1] === CR : this.afterCr;
      if (!crlf) {
        bareLineFeed = true;
        if (this.normalise) {
          if (newline > segmentStart) segments.push(input.subarray(segmentStart, newline));
          segments.push(CRLF);
          segmentStart = newline + 1;
        }
      }
      this.atLineStart = true;
      this.previousLineCrlf = crlf;
      this.afterCr = false;
      position = newline + 1;
    }
    if (!ended && position > segmentStart) segments.push(input.subarray(segmentStart, position));
    return { segments, consumed: position, ended, bareLineFeed };
  }
}

/** What becomes of a BDAT chunk before any of its bytes are read. */
export type ChunkAdmission =
  | { action: 'read' }
  /** Refused now; its bytes are read and dropped, so the session stays in step. */
  | { action: 'skip'; reply: Reply }
  /** Refused now; the connection closes (the bytes would take too long to drop). */
  | { action: 'close'; reply: Reply };

/** Up to this multiple of maxMessageSizeKb, a refused chunk is read and dropped (Postfix). */
const SKIP_FACTOR = 1.5;

/** The size limits against a BDAT count, before its bytes. No I/O here. */
export function admitChunk(
  size: number,
  sent: { message: number; session: number },
  limits: VirtualServerConfig['messages'],
): ChunkAdmission {
  const tooBig = reply(552, '5.3.4', 'Message size exceeds fixed maximum message size');
  // Beyond 2^53 a count is no size any client will send: nothing to wait for.
  if (!Number.isSafeInteger(size)) return { action: 'close', reply: tooBig };
  const messageLimit = limits.maxMessageSizeKb === null ? null : limits.maxMessageSizeKb * 1024;
  if (messageLimit !== null && sent.message + size > messageLimit) {
    const skip = sent.message + size <= messageLimit * SKIP_FACTOR;
    return { action: skip ? 'skip' : 'close', reply: tooBig };
  }
  const sessionLimit = limits.maxSessionSizeKb === null ? null : limits.maxSessionSizeKb * 1024;
  if (sessionLimit !== null && sent.session + sent.message + size > sessionLimit) {
    // As at the end of DATA, a session over its size is closed.
    return { action: 'close', reply: reply(552, '5.3.4', 'Session size exceeds fixed maximum session size') };
  }
  return { action: 'read' };
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
  private readonly unstuffer: DotUnstuffer;

  constructor(
    private readonly session: SessionContext,
    private readonly transaction: Transaction,
  ) {
    this.unstuffer = new DotUnstuffer(session.bareLineFeed === 'normalise');
  }

  async read(input: Input): Promise<boolean> {
    if (input.pending.length === 0) return false;
    const { segments, consumed, ended, bareLineFeed } = this.unstuffer.scan(input.pending);
    // Taken before awaiting: input that arrives meanwhile is appended to what is left.
    input.pending = input.pending.subarray(consumed);
    const { facts, server } = this.session;
    if (bareLineFeed && this.session.bareLineFeed === 'reject' && !this.transaction.failure) {
      // Read on to CRLF.CRLF, where the client and we agree the data ends; then refuse.
      this.transaction.failure = reply(550, '5.5.2', `${server.fqdn} Error: bare <LF> received`);
      this.session.note('bare <LF> received in DATA; the message is refused at its end');
      server.log.info(
        { session: this.session.id, ip: this.session.remoteAddress, virtualServer: server.config.name },
        'bare <LF> received in DATA: message refused',
      );
      await this.transaction.writer?.abort();
    }
    for (const segment of segments) {
      await messageBytes(this.transaction, segment, server.config.messages, facts);
    }
    if (!ended) return false;
    this.session.readCommands('idle');
    await finishMessage(this.session, this.transaction);
    return true;
  }
}

export async function bdat(session: SessionContext, arg: string): Promise<void> {
  const match = /^(\d+)(?:\s+(LAST))?$/i.exec(arg);
  if (!match) throw new TransportError(501, '5.5.4', 'Syntax: BDAT chunk-size [LAST]');
  const size = Number(match[1]);
  const last = match[2] !== undefined;
  const { facts, server } = session;
  const sent = { message: facts.transaction?.bytes ?? 0, session: facts.sessionBytes };
  const admission = admitChunk(size, sent, server.config.messages);
  if (admission.action !== 'read') {
    // Refused before its bytes; the transaction is poisoned until RSET.
    if (facts.transaction) {
      facts.transaction.bdatFailed = true;
      await facts.transaction.writer?.abort();
    }
    session.send(admission.reply);
    if (admission.action === 'close') {
      session.note(`BDAT ${match[1]} is over the size limits and too large to skip; closing`);
      server.log.info(
        { session: session.id, ip: session.remoteAddress, virtualServer: server.config.name, size: match[1] },
        'BDAT chunk over the size limits: connection closed',
      );
      session.close();
      return;
    }
    session.countError();
    session.readBytes(new ChunkReader(session, size, last, 'answered'), 'data');
    return;
  }
  // The chunk is read whatever the verdict, so the session stays in step: a refusal waits for its end.
  let refusal: Reply | undefined;
  try {
    const notReady = firstRefusal(readyForData, session, arg, 'BDAT');
    if (notReady) throw notReady;
    const transaction = facts.transaction!;
    if (transaction.bdatFailed) throw new TransportError(503, '5.5.1', 'Previous BDAT failed; send RSET');
    if (!transaction.writer) openMessage(session, transaction);
  } catch (err) {
    if (!(err instanceof TransportError)) throw err;
    refusal = err.reply;
  }
  session.readBytes(new ChunkReader(session, size, last, refusal), 'data');
}

class ChunkReader implements ByteReader {
  private remaining: number;

  /** `refusal`: the reply after the chunk; 'answered': refused already, the bytes are dropped. */
  constructor(
    private readonly session: SessionContext,
    private readonly size: number,
    private readonly last: boolean,
    private readonly refusal: Reply | 'answered' | undefined,
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
    if (this.refusal === 'answered') return true;
    if (this.refusal) {
      if (facts.transaction) facts.transaction.bdatFailed = true;
      this.session.send(this.refusal);
      this.session.countError();
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
