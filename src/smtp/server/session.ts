// NAME      session: one SMTP conversation; input pump, command table, replies
// SYNOPSIS  new SmtpSession(socket, virtualServer).start() · session.destroy()
// DESCRIPTION
//   Input is handled strictly in order by one pump loop, so pipelined commands are
//   answered in order and a pipelined QUIT after DATA waits for the spool fsync. The
//   pump reads command lines, an AUTH response line, or bytes for a ByteReader (DATA,
//   BDAT, XEXCH50). Each verb is a row in COMMANDS with its flags: answered before TLS
//   when TLS is required, offered only when configured, and the checks that must pass
//   first, in the order the client sees their refusals. Parameter syntax lives in
//   envelope-params.ts, relaying in relay-policy.ts, DATA/BDAT bytes in data-intake.ts,
//   the commit and the 250 in acceptance.ts, AUTH in auth.ts, EHLO in session-verbs.ts.
// STANDARDS RFC 5321, 2920 (PIPELINING), 3030, 3207 (input pipelined after STARTTLS is
//           discarded), 4954, 6531; replies as the guide's examples [003:6866-6939]
// SECURITY  faces the Internet; AUTH only inside TLS unless configured otherwise; the
//           protocol log masks AUTH responses. Input beyond 4 MiB pauses the socket. A
//           command line must end in CRLF (bareLineFeed). A DATA or BDAT transfer is timed
//           by a TransferClock (dataTimeout, minDataRate, dataTimeLimit); time the server
//           keeps the client waiting (input unread, socket paused) is not counted.
// DIAGNOSTICS  internal error -> 421 4.3.0; 20 errors -> 421 4.7.0 and close;
//           idle timeout, transfer too slow or too long -> 421 4.4.2 and close;
//           bare LF in a command -> 521 5.5.2 and close; unknown verb -> 500 5.3.3
// SEE ALSO  README.md, state.ts (what the files share), ../../hygiene/README.md
import type net from 'node:net';
import type tls from 'node:tls';
import { formatReply, reply, TransportError, type Reply } from '../status.js';
import type { HygieneSessionState } from '../../hygiene/session-hygiene.js';
import { rfc5322Date } from '../../message/date.js';
import type { SessionHost } from './session-host.js';
import { askSinks } from './sinks.js';
import type { ByteReader, Input, Precondition, SessionContext, SessionFacts } from './state.js';
import {
  anArgument,
  firstRefusal,
  hello,
  insideTransaction,
  noArgument,
  outsideTransaction,
  readyForData,
} from './preconditions.js';
import { mail, noSenderYet, rcpt } from './transaction.js';
import { expn, greet, help, noop, quit, reset, vrfy } from './session-verbs.js';
import { bdat, data } from './data-intake.js';
import { auth, notYetAuthenticated } from './auth.js';
import { forgetForTls, secureSocket, starttls, tlsAvailable, tlsNotYetActive } from './starttls.js';
import { authenticated, etrn, turn } from './remote-triggered.js';
import { CUT_OFF, TransferWatch, type TransferClock, type TransferVerdict } from './transfer-clock.js';
import {
  exchangeVerbsOffered,
  linkStateOffered,
  organisationServer,
  organisationServerOrAnyone,
  xexch50,
  xLink2State,
} from './org-verbs.js';

interface Command {
  /** Answered before STARTTLS when authentication.requireTls is set. */
  beforeTls?: boolean;
  /** Switched off for this virtual server: answered as an unknown verb. */
  offered?: (server: SessionHost) => boolean;
  /** Checked in this order before `run`; the first refusal is the reply. */
  requires?: readonly Precondition[];
  run(session: SessionContext, arg: string, verb: string): void | Promise<void>;
}

const COMMANDS: ReadonlyMap<string, Command> = new Map(
  Object.entries({
    EHLO: { beforeTls: true, run: greet },
    HELO: { beforeTls: true, run: greet },
    MAIL: { requires: [hello, noSenderYet], run: mail },
    RCPT: { requires: [hello, insideTransaction], run: rcpt },
    DATA: { requires: [noArgument('Syntax: DATA'), ...readyForData], run: data },
    // BDAT checks after its chunk is read, so the session stays in step (data-intake.ts).
    BDAT: { run: bdat },
    RSET: { beforeTls: true, run: reset },
    NOOP: { beforeTls: true, run: noop },
    QUIT: { beforeTls: true, run: quit },
    HELP: { beforeTls: true, run: help },
    VRFY: { requires: [anArgument('Syntax: VRFY address')], run: vrfy },
    EXPN: { run: expn },
    STARTTLS: {
      beforeTls: true,
      requires: [noArgument('Syntax: STARTTLS'), tlsAvailable, tlsNotYetActive, outsideTransaction],
      run: starttls,
    },
    AUTH: { requires: [hello, notYetAuthenticated, outsideTransaction], run: auth },
    ETRN: { requires: [hello, outsideTransaction, anArgument('Syntax: ETRN [@#]domain')], run: etrn },
    TURN: { requires: [hello, authenticated, outsideTransaction], run: turn },
    ATRN: { requires: [hello, authenticated, outsideTransaction], run: turn },
    'X-LINK2STATE': {
      offered: linkStateOffered,
      requires: [hello, organisationServer, outsideTransaction],
      run: xLink2State,
    },
    XEXCH50: { offered: exchangeVerbsOffered, requires: [hello, organisationServerOrAnyone], run: xexch50 },
  } satisfies Record<string, Command>),
);

type Mode = 'command' | 'auth' | 'bytes' | 'closed';

const EMPTY = Buffer.alloc(0);
/** Unread input that pauses the socket, and the level that resumes it. */
const PAUSE_ABOVE = 4 * 1024 * 1024;
const RESUME_BELOW = 1024 * 1024;
const MAX_ERRORS = 20;
/** A peer that never reads its half of the close must not hold the socket forever. */
const CLOSE_GRACE_MS = 5000;

let sessionCounter = 0;

export class SmtpSession implements SessionContext {
  readonly id: string;
  readonly remoteAddress: string;
  readonly remotePort: number;
  readonly facts: SessionFacts = {
    helo: undefined,
    esmtp: false,
    tls: false,
    identity: undefined,
    transaction: undefined,
    messagesAccepted: 0,
    sessionBytes: 0,
  };
  readonly hygieneState: HygieneSessionState = {};
  readonly bareLineFeed: 'reject' | 'normalise';
  private socket: net.Socket | tls.TLSSocket;
  private readonly input: Input = { pending: EMPTY };
  private mode: Mode = 'command';
  private reader: ByteReader | undefined;
  private authStep: ((line: string) => Promise<void>) | undefined;
  private pumping = false;
  /** Set when input arrives; a step that awaited the disk may have missed it. */
  private arrived = false;
  private discardingLine = false;
  private logSequence = 0;
  private errors = 0;
  /** The DATA or BDAT transfer being timed. */
  private transfer: TransferWatch | undefined;
  private readonly localEndpoint: string;
  private readonly remoteEndpoint: string;

  constructor(
    socket: net.Socket,
    readonly server: SessionHost,
  ) {
    this.socket = socket;
    this.id = `${Date.now().toString(36)}${(++sessionCounter).toString(36)}`.toUpperCase();
    this.remoteAddress = (socket.remoteAddress ?? '').replace(/^::ffff:/, '');
    this.remotePort = socket.remotePort ?? 0;
    this.localEndpoint = `${(socket.localAddress ?? '').replace(/^::ffff:/, '')}:${socket.localPort}`;
    this.remoteEndpoint = `${this.remoteAddress}:${this.remotePort}`;
    const exception = server.bareLineFeedExceptions.contains(this.remoteAddress);
    this.bareLineFeed = exception ? 'normalise' : server.config.bareLineFeed.action;
  }

  start(): void {
    this.log('+', '');
    this.attach(this.socket);
    this.socket.setNoDelay(true);
    if (!this.server.sinks.length) {
      this.banner();
      return;
    }
    // Connect sinks answer before the banner; input is held (not pumped) until they have,
    // and a client that leaves meanwhile ends the session as any other.
    this.pumping = true;
    void askSinks(this, 'connect').then(
      () => {
        this.pumping = false;
        if (this.mode === 'closed') return;
        this.banner();
        if (this.input.pending.length) void this.pump();
      },
      (err: TransportError) => {
        this.pumping = false;
        this.send(err.reply);
        this.close();
      },
    );
  }

  private banner(): void {
    this.send(
      reply(
        220,
        undefined,
        `${this.server.fqdn} Bridgehead ESMTP Service ready at ${rfc5322Date(new Date())}`,
      ),
    );
  }

  /** Cuts the connection at once (shutdown after the grace period). */
  destroy(): void {
    this.socket.destroy();
  }

  // ------------------------------------------------------------------ socket

  private attach(socket: net.Socket | tls.TLSSocket): void {
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', () => undefined);
    socket.on('close', () => this.onClose());
    socket.setTimeout(this.server.config.connections.idleTimeout * 1000);
    socket.on('timeout', () => {
      if (this.mode === 'closed') return;
      this.send(reply(421, '4.4.2', `${this.server.fqdn} Timeout exceeded, closing transmission channel`));
      this.close();
    });
  }

  /** Lets go of the socket (for TLS, or a reversed connection); its 'error' guard stays. */
  private detach(): net.Socket {
    const socket = this.socket;
    for (const event of ['data', 'timeout', 'close']) socket.removeAllListeners(event);
    socket.setTimeout(0);
    return socket;
  }

  private log(event: string, data: string | Buffer): void {
    this.server.protocolLog?.write(
      this.id,
      this.logSequence++,
      this.localEndpoint,
      this.remoteEndpoint,
      event,
      data,
    );
  }

  note(text: string): void {
    this.log('*', text);
  }

  send(response: Reply): void {
    if (this.mode === 'closed' || this.socket.destroyed) return;
    const text = formatReply(response);
    if (this.server.protocolLog) for (const line of text.split('\r\n').slice(0, -1)) this.log('>', line);
    this.socket.write(text);
  }

  close(): void {
    if (this.mode === 'closed') return;
    this.mode = 'closed';
    this.socket.end();
    setTimeout(() => this.socket.destroy(), CLOSE_GRACE_MS).unref();
  }

  private onClose(): void {
    this.stopTransfer();
    if (this.facts.transaction?.writer) void this.facts.transaction.writer.abort();
    this.facts.transaction = undefined;
    if (this.mode !== 'closed') this.mode = 'closed';
    this.log('-', '');
    this.server.sessionEnded(this);
  }

  // ------------------------------------------------------------------ input pump

  private onData(chunk: Buffer): void {
    if (this.mode === 'closed') return;
    if (this.discardingLine) {
      const newline = chunk.indexOf(0x0a);
      if (newline === -1) return;
      this.discardingLine = false;
      chunk = chunk.subarray(newline + 1);
    }
    this.transfer?.received(chunk.length);
    this.input.pending = this.input.pending.length ? Buffer.concat([this.input.pending, chunk]) : chunk;
    if (this.input.pending.length > PAUSE_ABOVE) this.socket.pause();
    this.arrived = true;
    if (!this.pumping) void this.pump();
  }

  private async pump(): Promise<void> {
    this.pumping = true;
    this.socket.cork();
    try {
      while (this.mode !== 'closed') {
        this.arrived = false;
        const progressed = await this.step();
        // Input that came while the step awaited (a spill to disk) is in the buffer with
        // no 'data' event left to announce it: look again before stopping.
        if (!progressed && !this.arrived) break;
      }
    } catch (err) {
      // A bug here must not take the process down; the client gets a transient error.
      this.server.log.error({ err, session: this.id }, 'session failed');
      this.send(
        reply(421, '4.3.0', `${this.server.fqdn} Local error in processing, closing transmission channel`),
      );
      this.close();
    } finally {
      this.pumping = false;
      this.socket.uncork();
      if (this.socket.isPaused() && this.input.pending.length < RESUME_BELOW) this.socket.resume();
    }
  }

  private async step(): Promise<boolean> {
    switch (this.mode) {
      case 'command':
      case 'auth':
        return this.commandStep();
      case 'bytes':
        return this.reader!.read(this.input);
      default:
        return false;
    }
  }

  private async commandStep(): Promise<boolean> {
    const buffer = this.input.pending;
    const newline = buffer.indexOf(0x0a);
    const max = this.server.config.connections.maxCommandLineLength;
    if (newline === -1) {
      if (buffer.length > max) {
        this.input.pending = EMPTY;
        this.discardingLine = true;
        this.lineTooLong();
      }
      return false;
    }
    const crlf = newline > 0 && buffer[newline - 1] === 0x0d;
    const raw = buffer.subarray(0, crlf ? newline - 1 : newline);
    const line = raw.toString('utf8');
    this.input.pending = buffer.subarray(newline + 1);
    if (newline + 1 > max) {
      this.lineTooLong();
      return true;
    }
    if (this.mode === 'auth' && this.authStep) {
      this.log('<', '****');
      if (!crlf && this.refuseBareLineFeed()) return true;
      const next = this.authStep;
      this.authStep = undefined;
      this.mode = 'command';
      await next(line);
      return true;
    }
    this.log('<', /^AUTH\s+\S+\s+\S/i.test(line) ? line.replace(/^(AUTH\s+\S+\s+).*/i, '$1****') : raw);
    if (!crlf && this.refuseBareLineFeed()) return true;
    await this.command(line);
    return true;
  }

  /** A command line ended in LF alone: refused and the session closed, unless normalised. */
  private refuseBareLineFeed(): boolean {
    if (this.bareLineFeed !== 'reject') return false;
    this.server.log.info(
      { session: this.id, ip: this.remoteAddress, virtualServer: this.server.config.name },
      'bare <LF> received in a command: connection closed',
    );
    this.send(reply(521, '5.5.2', `${this.server.fqdn} Error: bare <LF> received`));
    this.close();
    return true;
  }

  private lineTooLong(): void {
    this.send(reply(500, '5.5.2', 'Line too long'));
    this.countError();
  }

  countError(): void {
    if (++this.errors >= MAX_ERRORS) {
      this.send(reply(421, '4.7.0', `${this.server.fqdn} Too many errors, closing transmission channel`));
      this.close();
    }
  }

  // ------------------------------------------------------------------ commands

  private async command(line: string): Promise<void> {
    const space = line.indexOf(' ');
    const verb = (space === -1 ? line : line.slice(0, space)).toUpperCase();
    const arg = space === -1 ? '' : line.slice(space + 1).trim();
    const command = COMMANDS.get(verb);

    if (this.server.config.authentication.requireTls && !this.facts.tls && !command?.beforeTls) {
      this.send(reply(530, '5.7.0', 'Must issue a STARTTLS command first'));
      return;
    }
    try {
      if (!command || (command.offered && !command.offered(this.server))) {
        this.send(reply(500, '5.3.3', 'Unrecognized command'));
        return this.countError();
      }
      const refusal = firstRefusal(command.requires ?? [], this, arg, verb);
      if (refusal) throw refusal;
      await command.run(this, arg, verb);
    } catch (err) {
      if (err instanceof TransportError) {
        this.send(err.reply);
        if (err.closeConnection) this.close();
        else if (err.code >= 500) this.countError();
        return;
      }
      throw err;
    }
  }

  // ------------------------------------------------------------------ what commands may ask

  readBytes(reader: ByteReader, timeout: 'data' | 'unchanged'): void {
    // A step that awaited the spool must not revive a session cut off meanwhile.
    if (this.mode === 'closed') return;
    this.mode = 'bytes';
    this.reader = reader;
    if (timeout === 'data') this.startTransfer();
  }

  readCommands(timeout: 'idle' | 'unchanged'): void {
    if (this.mode === 'closed') return;
    this.mode = 'command';
    this.reader = undefined;
    this.stopTransfer();
    if (timeout === 'idle') this.socket.setTimeout(this.server.config.connections.idleTimeout * 1000);
  }

  // ------------------------------------------------------------------ transfer deadline

  private startTransfer(): void {
    this.stopTransfer();
    this.socket.setTimeout(0);
    const { dataTimeout, minDataRate, dataTimeLimit } = this.server.config.connections;
    const limits = { gapMs: dataTimeout * 1000, minRate: minDataRate, totalMs: dataTimeLimit * 1000 };
    this.transfer = new TransferWatch(
      limits,
      this.facts.transaction?.dataStartedAt ?? Date.now(),
      // Input not handled yet, or the socket paused while the spool catches up.
      () => this.pumping || this.socket.isPaused(),
      (verdict, clock) => this.cutOff(verdict, clock),
    );
  }

  private stopTransfer(): void {
    this.transfer?.stop();
    this.transfer = undefined;
  }

  /** The client ran out of time for its message: 421, and nothing of it is kept. */
  private cutOff(verdict: TransferVerdict, clock: TransferClock): void {
    if (this.mode !== 'bytes') return;
    this.stopTransfer();
    const seconds = Math.round((Date.now() - clock.since) / 1000);
    this.note(
      `message transfer cut off: ${CUT_OFF[verdict].toLowerCase()} (${clock.bytes} bytes in ${seconds} s)`,
    );
    this.server.log.warn(
      {
        session: this.id,
        ip: this.remoteAddress,
        virtualServer: this.server.config.name,
        reason: verdict,
        bytes: clock.bytes,
        seconds,
      },
      'message transfer cut off',
    );
    // Nothing is committed without the end of the data; the partial message is dropped now.
    void this.facts.transaction?.writer?.abort().catch(() => undefined);
    this.facts.transaction = undefined;
    this.send(reply(421, '4.4.2', `${this.server.fqdn} ${CUT_OFF[verdict]}, closing transmission channel`));
    this.close();
  }

  readAuthResponse(step: (line: string) => Promise<void>): void {
    this.mode = 'auth';
    this.authStep = step;
  }

  startTls(): void {
    this.socket.uncork();
    // RFC 3207 §4.2: anything pipelined after STARTTLS is discarded; the session restarts.
    this.input.pending = EMPTY;
    const secure = secureSocket(this.detach(), this.server.tlsContext!, (text) => this.note(text));
    this.socket = secure;
    forgetForTls(this.facts);
    this.attach(secure);
    secure.cork();
  }

  handOver(reason: string, use: (socket: net.Socket) => Promise<void>): void {
    this.socket.uncork();
    const socket = this.detach();
    this.stopTransfer();
    this.mode = 'closed';
    this.input.pending = EMPTY;
    this.note(reason);
    void use(socket).finally(() => {
      socket.destroy();
      this.log('-', '');
      this.server.sessionEnded(this);
    });
  }
}
