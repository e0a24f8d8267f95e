// One SMTP session on a virtual server: the command state machine, DATA and BDAT intake,
// STARTTLS, AUTH, limits and the relay decision. Replies follow [003:6866-6939].
//
// Input is processed strictly in order by one pump loop, so pipelined commands are answered
// in order and a pipelined QUIT after DATA waits for the message to be on disk.
import type net from 'node:net';
import tls from 'node:tls';
import { formatReply, reply, TransportError, type Reply } from '../status.js';
import { decodeXtext, isValidXtext, parsePath } from '../address.js';
import { newMessageId, type Envelope, type RecipientEnvelope, type SpoolWriter } from '../../queue/spool.js';
import type { VirtualServerRuntime } from './virtual-server.js';
import type { AuthenticatedIdentity } from '../../directory/directory.js';
import type { HygieneSessionState } from '../../hygiene/session-hygiene.js';
import { rfc5322Date } from '../../message/date.js';

type Mode = 'command' | 'data' | 'bdat' | 'xexch50' | 'auth' | 'closed';

interface Transaction {
  sender: string;
  body: Envelope['body'];
  smtputf8: boolean;
  ret?: 'FULL' | 'HDRS';
  envid?: string;
  declaredSize?: number;
  recipients: RecipientEnvelope[];
  rejectedRecipients: number;
  writer?: SpoolWriter;
  /** Client bytes of the message so far. */
  bytes: number;
  /** Set once the message exceeded a limit; data is still consumed to its end. */
  failure?: Reply;
  header: HeaderScan;
  /** BDAT chunks so far (a failed BDAT poisons the rest of the transaction). */
  bdatFailed?: boolean;
  /** Sender filter "accept without notifying the sender": the message goes to badmail. */
  archive?: string;
  /** The submitter's authenticated identity, as the previous organisation server sent it (XEXCH50). */
  relayedIdentity?: string;
}

/** Collects the header section while the message streams, for hop count and tracking. */
class HeaderScan {
  private parts: Buffer[] = [];
  private length = 0;
  done = false;
  feed(chunk: Buffer): void {
    if (this.done) return;
    this.parts.push(chunk);
    this.length += chunk.length;
    const joined = this.parts.length > 1 ? Buffer.concat(this.parts) : chunk;
    this.parts = [joined];
    if (joined.indexOf('\r\n\r\n') !== -1 || joined.indexOf('\n\n') !== -1 || joined.indexOf('\n') === 0) {
      this.done = true;
    } else if (this.length > 256 * 1024) this.done = true;
  }
  text(): string {
    const all = Buffer.concat(this.parts).toString('utf8');
    const end = all.search(/\r?\n\r?\n/);
    return end === -1 ? all : all.slice(0, end);
  }
  /** Unfolded header fields, in order. */
  fields(): { name: string; value: string }[] {
    const unfolded = this.text().replace(/\r?\n[ \t]/g, ' ');
    return unfolded
      .split(/\r?\n/)
      .map((line) => {
        const colon = line.indexOf(':');
        return colon > 0
          ? { name: line.slice(0, colon).trim(), value: line.slice(colon + 1).trim() }
          : undefined;
      })
      .filter((f): f is { name: string; value: string } => f !== undefined);
  }
}

const EMPTY = Buffer.alloc(0);
const AUTH_PROMPT_USER = 'VXNlcm5hbWU6';
const AUTH_PROMPT_PASS = 'UGFzc3dvcmQ6';

let sessionCounter = 0;

export class SmtpSession {
  readonly id: string;
  private socket: net.Socket | tls.TLSSocket;
  private buffer: Buffer = EMPTY;
  private mode: Mode = 'command';
  private pumping = false;
  /** Set when input arrives; a step that awaited the disk may have missed it. */
  private arrived = false;
  private discardingLine = false;
  private seq = 0;

  private helo: string | undefined;
  private esmtp = false;
  private tlsActive = false;
  private identity: AuthenticatedIdentity | undefined;
  private tx: Transaction | undefined;
  private readonly hygieneState: HygieneSessionState = {};
  private messagesAccepted = 0;
  private sessionBytes = 0;
  private errors = 0;

  // DATA intake state
  private atLineStart = true;
  private lineStartAfterCrlf = true;
  // BDAT intake state
  private bdatRemaining = 0;
  private bdatLast = false;
  private bdatSize = 0;
  // AUTH continuation
  private authStep: ((line: string) => Promise<void>) | undefined;

  readonly remoteAddress: string;
  readonly remotePort: number;
  private readonly localEndpoint: string;
  private readonly remoteEndpoint: string;

  constructor(
    socket: net.Socket,
    private readonly vs: VirtualServerRuntime,
  ) {
    this.socket = socket;
    this.id = `${Date.now().toString(36)}${(++sessionCounter).toString(36)}`.toUpperCase();
    this.remoteAddress = (socket.remoteAddress ?? '').replace(/^::ffff:/, '');
    this.remotePort = socket.remotePort ?? 0;
    this.localEndpoint = `${(socket.localAddress ?? '').replace(/^::ffff:/, '')}:${socket.localPort}`;
    this.remoteEndpoint = `${this.remoteAddress}:${this.remotePort}`;
  }

  private get config() {
    return this.vs.config;
  }

  start(): void {
    this.log('+', '');
    this.attach(this.socket);
    this.socket.setNoDelay(true);
    this.send(
      reply(220, undefined, `${this.vs.fqdn} Bridgehead ESMTP Service ready at ${rfc5322Date(new Date())}`),
    );
  }

  private attach(socket: net.Socket | tls.TLSSocket): void {
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', () => undefined);
    socket.on('close', () => this.onClose());
    socket.setTimeout(this.config.connections.idleTimeout * 1000);
    socket.on('timeout', () => {
      if (this.mode === 'closed') return;
      this.send(reply(421, '4.4.2', `${this.vs.fqdn} Timeout exceeded, closing transmission channel`));
      this.close();
    });
  }

  // ------------------------------------------------------------------ I/O

  private log(event: string, data: string): void {
    this.vs.protocolLog?.write(this.id, this.seq++, this.localEndpoint, this.remoteEndpoint, event, data);
  }

  private send(r: Reply): void {
    if (this.mode === 'closed' || this.socket.destroyed) return;
    const text = formatReply(r);
    if (this.vs.protocolLog) for (const line of text.split('\r\n').slice(0, -1)) this.log('>', line);
    this.socket.write(text);
  }

  private close(): void {
    if (this.mode === 'closed') return;
    this.mode = 'closed';
    this.socket.end();
    // A peer that never reads its half of the close must not hold the socket forever.
    setTimeout(() => this.socket.destroy(), 5000).unref();
  }

  /** Cuts the connection at once (shutdown after the grace period). */
  destroy(): void {
    this.socket.destroy();
  }

  private onClose(): void {
    if (this.tx?.writer) void this.tx.writer.abort();
    this.tx = undefined;
    if (this.mode !== 'closed') this.mode = 'closed';
    this.log('-', '');
    this.vs.sessionEnded(this);
  }

  private onData(chunk: Buffer): void {
    if (this.mode === 'closed') return;
    if (this.discardingLine) {
      const nl = chunk.indexOf(0x0a);
      if (nl === -1) return;
      this.discardingLine = false;
      chunk = chunk.subarray(nl + 1);
    }
    this.buffer = this.buffer.length ? Buffer.concat([this.buffer, chunk]) : chunk;
    if (this.buffer.length > 4 * 1024 * 1024) this.socket.pause();
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
      this.vs.log.error({ err, session: this.id }, 'session failed');
      this.send(
        reply(421, '4.3.0', `${this.vs.fqdn} Local error in processing, closing transmission channel`),
      );
      this.close();
    } finally {
      this.pumping = false;
      this.socket.uncork();
      if (this.socket.isPaused() && this.buffer.length < 1024 * 1024) this.socket.resume();
    }
  }

  private async step(): Promise<boolean> {
    switch (this.mode) {
      case 'command':
      case 'auth':
        return this.commandStep();
      case 'data':
        return this.dataStep();
      case 'bdat':
        return this.bdatStep();
      case 'xexch50':
        return this.xexch50Step();
      default:
        return false;
    }
  }

  private async commandStep(): Promise<boolean> {
    const nl = this.buffer.indexOf(0x0a);
    const max = this.config.connections.maxCommandLineLength;
    if (nl === -1) {
      if (this.buffer.length > max) {
        this.buffer = EMPTY;
        this.discardingLine = true;
        this.lineTooLong();
      }
      return false;
    }
    const end = nl > 0 && this.buffer[nl - 1] === 0x0d ? nl - 1 : nl;
    const line = this.buffer.subarray(0, end).toString('utf8');
    this.buffer = this.buffer.subarray(nl + 1);
    if (nl + 1 > max) {
      this.lineTooLong();
      return true;
    }
    if (this.mode === 'auth' && this.authStep) {
      this.log('<', '****');
      const next = this.authStep;
      this.authStep = undefined;
      this.mode = 'command';
      await next(line);
      return true;
    }
    this.log('<', /^AUTH\s+\S+\s+\S/i.test(line) ? line.replace(/^(AUTH\s+\S+\s+).*/i, '$1****') : line);
    await this.command(line);
    return true;
  }

  private lineTooLong(): void {
    this.send(reply(500, '5.5.2', 'Line too long'));
    this.countError();
  }

  private countError(): void {
    if (++this.errors >= 20) {
      this.send(reply(421, '4.7.0', `${this.vs.fqdn} Too many errors, closing transmission channel`));
      this.close();
    }
  }

  // ------------------------------------------------------------------ commands

  private async command(line: string): Promise<void> {
    const sp = line.indexOf(' ');
    const verb = (sp === -1 ? line : line.slice(0, sp)).toUpperCase();
    const arg = sp === -1 ? '' : line.slice(sp + 1).trim();

    if (this.config.authentication.requireTls && !this.tlsActive) {
      if (!['EHLO', 'HELO', 'STARTTLS', 'NOOP', 'RSET', 'QUIT', 'HELP'].includes(verb)) {
        this.send(reply(530, '5.7.0', 'Must issue a STARTTLS command first'));
        return;
      }
    }

    try {
      switch (verb) {
        case 'EHLO':
        case 'HELO':
          return this.hello(verb, arg);
        case 'MAIL':
          return this.mail(arg);
        case 'RCPT':
          return await this.rcpt(arg);
        case 'DATA':
          return this.data(arg);
        case 'BDAT':
          return this.bdat(arg);
        case 'RSET':
          await this.resetTransaction();
          return this.send(reply(250, '2.0.0', 'Resetting'));
        case 'NOOP':
          return this.send(reply(250, '2.0.0', 'OK'));
        case 'QUIT':
          this.send(reply(221, '2.0.0', `${this.vs.fqdn} Service closing transmission channel`));
          return this.close();
        case 'HELP':
          return this.help();
        case 'VRFY':
          return await this.vrfy(arg);
        case 'EXPN':
          return this.send(reply(502, '5.3.3', 'EXPN is not available'));
        case 'STARTTLS':
          return this.startTls(arg);
        case 'AUTH':
          return await this.auth(arg);
        case 'ETRN':
          return await this.etrn(arg);
        case 'TURN':
        case 'ATRN':
          return await this.atrn(verb, arg);
        case 'X-LINK2STATE':
          return this.xLink2State(arg);
        case 'XEXCH50':
          return this.xexch50(arg);
        default:
          this.send(reply(500, '5.3.3', 'Unrecognized command'));
          return this.countError();
      }
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

  private requireHello(): void {
    if (!this.helo) throw new TransportError(503, '5.5.1', 'Send hello first');
  }

  private hello(verb: 'EHLO' | 'HELO', arg: string): void {
    if (!arg || /\s/.test(arg)) {
      throw new TransportError(501, '5.5.4', `Syntax: ${verb} hostname`);
    }
    void this.resetTransaction();
    this.helo = arg;
    this.esmtp = verb === 'EHLO';
    const greeting = `${this.vs.fqdn} Hello [${this.remoteAddress}]`;
    if (verb === 'HELO') return this.send(reply(250, undefined, greeting));
    const lines = [greeting, 'TURN', 'ATRN'];
    const max = this.config.messages.maxMessageSizeKb;
    lines.push(max === null ? 'SIZE' : `SIZE ${max * 1024}`);
    lines.push('ETRN', 'PIPELINING', 'DSN', 'ENHANCEDSTATUSCODES', '8BITMIME', 'BINARYMIME', 'CHUNKING');
    if (this.config.vrfy) lines.push('VRFY');
    if (this.vs.tlsContext && !this.tlsActive) lines.push('STARTTLS');
    if (this.authOffered()) lines.push('AUTH LOGIN PLAIN');
    lines.push('SMTPUTF8');
    if (this.vs.linkState && this.config.exchangeVerbs) lines.push('X-LINK2STATE', 'XEXCH50');
    lines.push('OK');
    this.send(reply(250, undefined, lines));
  }

  private authOffered(): boolean {
    const a = this.config.authentication;
    return a.basic && !this.identity && (this.tlsActive || a.basicWithoutTls);
  }

  private help(): void {
    this.send(
      reply(214, '2.0.0', [
        'Commands:',
        'HELO EHLO MAIL RCPT DATA BDAT RSET NOOP QUIT HELP',
        'VRFY ETRN TURN ATRN STARTTLS AUTH',
        'End of HELP info',
      ]),
    );
  }

  private async resetTransaction(): Promise<void> {
    const writer = this.tx?.writer;
    this.tx = undefined;
    if (writer) await writer.abort();
  }

  private mail(arg: string): void {
    this.requireHello();
    if (this.tx) throw new TransportError(503, '5.5.1', 'Sender already specified');
    if (!this.config.authentication.anonymous && !this.identity) {
      throw new TransportError(530, '5.7.1', 'Client was not authenticated');
    }
    if (this.identity?.permissions?.submit === 'deny') {
      throw new TransportError(550, '5.7.1', 'Client does not have permission to submit mail to this server');
    }
    const max = this.config.messages.maxMessagesPerConnection;
    if (max !== null && this.messagesAccepted >= max) {
      throw new TransportError(
        421,
        '4.7.0',
        `${this.vs.fqdn} Too many messages for this connection, closing transmission channel`,
        true,
      );
    }
    const path = parsePath(arg, 'sender');
    const tx: Transaction = {
      sender: path.address,
      body: '7BIT',
      smtputf8: false,
      recipients: [],
      rejectedRecipients: 0,
      bytes: 0,
      header: new HeaderScan(),
    };
    for (const [key, value] of path.params) {
      switch (key) {
        case 'SIZE': {
          if (!value || !/^\d+$/.test(value))
            throw new TransportError(501, '5.5.4', 'Invalid SIZE parameter');
          tx.declaredSize = Number(value);
          const limit = this.config.messages.maxMessageSizeKb;
          if (limit !== null && tx.declaredSize > limit * 1024) {
            throw new TransportError(552, '5.3.4', 'Message size exceeds fixed maximum message size');
          }
          break;
        }
        case 'BODY': {
          const body = (value ?? '').toUpperCase();
          if (body !== '7BIT' && body !== '8BITMIME' && body !== 'BINARYMIME') {
            throw new TransportError(501, '5.5.4', `Invalid BODY parameter: ${value ?? ''}`);
          }
          tx.body = body;
          break;
        }
        case 'SMTPUTF8':
          if (value !== undefined) throw new TransportError(501, '5.5.4', 'SMTPUTF8 takes no value');
          tx.smtputf8 = true;
          break;
        case 'RET': {
          const ret = (value ?? '').toUpperCase();
          if (ret !== 'FULL' && ret !== 'HDRS')
            throw new TransportError(501, '5.5.4', 'Invalid RET parameter');
          tx.ret = ret;
          break;
        }
        case 'ENVID':
          if (!value || value.length > 100 || !isValidXtext(value)) {
            throw new TransportError(501, '5.5.4', 'Invalid ENVID parameter');
          }
          tx.envid = decodeXtext(value);
          break;
        case 'AUTH':
          // RFC 4954 §5: the submitter's identity; kept only from a trusted session.
          break;
        default:
          throw new TransportError(555, '5.5.4', `Unsupported option: ${key}`);
      }
    }
    if (path.utf8 && !tx.smtputf8) {
      throw new TransportError(553, '5.6.7', 'Non-ASCII address requires the SMTPUTF8 parameter');
    }
    if (!this.esmtp && path.params.size) {
      throw new TransportError(555, '5.5.4', 'Parameters need EHLO');
    }
    const verdict = this.vs.hygiene?.atMail(this.remoteAddress, path.address, this.identity !== undefined);
    if (verdict?.action === 'reject') {
      throw new TransportError(verdict.code, verdict.status, verdict.text, verdict.drop ?? false);
    }
    if (verdict?.action === 'archive') tx.archive = verdict.reason;
    this.tx = tx;
    this.send(reply(250, '2.1.0', `${path.address || '<>'}....Sender OK`));
  }

  private async rcpt(arg: string): Promise<void> {
    this.requireHello();
    const tx = this.tx;
    if (!tx) throw new TransportError(503, '5.5.1', 'Need mail command');
    const path = parsePath(arg, 'recipient');
    const rcpt: RecipientEnvelope = { address: path.address };
    for (const [key, value] of path.params) {
      if (key === 'NOTIFY') {
        const items = (value ?? '').toUpperCase().split(',');
        const valid = ['SUCCESS', 'FAILURE', 'DELAY'];
        const ok =
          (items.length === 1 && items[0] === 'NEVER') ||
          (items.length > 0 && items.every((i) => valid.includes(i)));
        if (!ok) throw new TransportError(501, '5.5.4', 'Invalid NOTIFY parameter');
        rcpt.notify = items;
      } else if (key === 'ORCPT') {
        if (!value || !/^[A-Za-z0-9-]+;/.test(value) || !isValidXtext(value.slice(value.indexOf(';') + 1))) {
          throw new TransportError(501, '5.5.4', 'Invalid ORCPT parameter');
        }
        rcpt.orcpt = decodeXtext(value);
      } else {
        throw new TransportError(555, '5.5.4', `Unsupported option: ${key}`);
      }
    }
    if (path.utf8 && !tx.smtputf8) {
      throw new TransportError(553, '5.6.7', 'Non-ASCII address requires the SMTPUTF8 parameter');
    }
    const max = this.vs.maxRecipients;
    if (max !== null && tx.recipients.length >= max) {
      tx.rejectedRecipients++;
      throw new TransportError(452, '4.5.3', 'Too many recipients');
    }
    // "Postmaster" without a domain is always ours (RFC 5321 §4.5.1).
    const local = path.domain === '' || this.vs.acceptedDomains.match(path.domain) !== undefined;
    const mayRelay = this.relayPermitted();
    // Relay tricks addressed to a local domain (percent hack, bang path, quoted "@",
    // source routes) are refused to anyone who may not relay anyway.
    const routed = /[%!@]/.test(path.localPart) || path.sourceRoute === true;
    if ((!local || routed) && !mayRelay) {
      tx.rejectedRecipients++;
      throw new TransportError(550, '5.7.1', `Unable to relay for ${path.address}`);
    }
    if (this.vs.hygiene && path.domain) {
      const verdict = await this.vs.hygiene.atRcpt(
        this.hygieneState,
        this.remoteAddress,
        tx.sender,
        path.address,
        this.identity !== undefined,
      );
      if (verdict.action === 'reject') {
        tx.rejectedRecipients++;
        throw new TransportError(verdict.code, verdict.status, verdict.text, verdict.drop ?? false);
      }
    }
    tx.recipients.push(rcpt);
    this.send(reply(250, '2.1.5', path.address));
  }

  private relayPermitted(): boolean {
    const relay = this.config.relay;
    const granted = this.identity?.permissions?.relay;
    if (granted === 'deny') return false;
    if (granted === 'allow') return true;
    if (this.identity && relay.allowAuthenticated) return true;
    const listed = this.vs.relayList.contains(this.remoteAddress);
    return relay.mode === 'onlyList' ? listed : !listed;
  }

  /** Checks before message data may start (DATA or first BDAT). */
  private readyForData(tx: Transaction | undefined): Transaction {
    this.requireHello();
    if (!tx) throw new TransportError(503, '5.5.1', 'Need mail command');
    if (tx.recipients.length === 0) {
      if (tx.rejectedRecipients > 0) throw new TransportError(554, '5.5.1', 'No valid recipients');
      throw new TransportError(503, '5.5.1', 'Need rcpt command');
    }
    return tx;
  }

  private openMessage(tx: Transaction): void {
    const id = newMessageId();
    const envelope: Envelope = {
      id,
      receivedAt: new Date().toISOString(),
      server: this.vs.serverName,
      virtualServer: this.config.name,
      client: {
        ip: this.remoteAddress,
        port: this.remotePort,
        helo: this.helo ?? '',
        tls: this.tlsActive,
        // From another server of the organisation, the submitter's identity is what that
        // server sent with XEXCH50 (none: the sender was anonymous), never the server's own.
        ...(this.fromOrganisationServer
          ? tx.relayedIdentity
            ? { authenticatedAs: tx.relayedIdentity }
            : {}
          : this.identity
            ? { authenticatedAs: this.identity.primaryAddress || this.identity.name }
            : {}),
      },
      sender: tx.sender,
      body: tx.body,
      smtputf8: tx.smtputf8,
      ...(tx.ret ? { ret: tx.ret } : {}),
      ...(tx.envid !== undefined ? { envid: tx.envid } : {}),
      ...(tx.declaredSize !== undefined ? { declaredSize: tx.declaredSize } : {}),
      recipients: tx.recipients,
      ...(tx.archive !== undefined ? { archived: tx.archive } : {}),
    };
    tx.writer = this.vs.spool.createWriter(envelope);
    const proto =
      (tx.smtputf8 ? 'UTF8SMTP' : this.esmtp ? 'ESMTP' : 'SMTP') +
      (this.tlsActive ? 'S' : '') +
      (this.identity ? 'A' : '');
    const received =
      `Received: from ${this.helo} ([${this.remoteAddress}]) by ${this.vs.fqdn} with ${proto}\r\n` +
      `\tid ${id}; ${rfc5322Date(new Date())}\r\n`;
    void tx.writer.write(Buffer.from(received, 'utf8'));
  }

  private data(arg: string): void {
    if (arg) throw new TransportError(501, '5.5.4', 'Syntax: DATA');
    const tx = this.readyForData(this.tx);
    if (tx.body === 'BINARYMIME') throw new TransportError(503, '5.5.1', 'BODY=BINARYMIME requires BDAT');
    if (tx.writer) throw new TransportError(503, '5.5.1', 'BDAT in progress; DATA not allowed');
    this.openMessage(tx);
    this.mode = 'data';
    this.atLineStart = true;
    this.lineStartAfterCrlf = true;
    this.socket.setTimeout(this.config.connections.dataTimeout * 1000);
    this.send(reply(354, undefined, 'Start mail input; end with <CRLF>.<CRLF>'));
  }

  /** Consumes DATA bytes: dot-unstuffing, end at CRLF.CRLF (never a bare-LF variant). */
  private async dataStep(): Promise<boolean> {
    const buf = this.buffer;
    if (buf.length === 0) return false;
    const tx = this.tx!;
    const segments: Buffer[] = [];
    let segStart = 0;
    let pos = 0;
    let ended = false;
    while (pos < buf.length) {
      if (this.atLineStart && buf[pos] === 0x2e) {
        // "." at a line start: end marker, or a stuffed dot to remove.
        if (pos + 1 >= buf.length || (buf[pos + 1] === 0x0d && pos + 2 >= buf.length)) break; // need more
        if (this.lineStartAfterCrlf && buf[pos + 1] === 0x0d && buf[pos + 2] === 0x0a) {
          if (pos > segStart) segments.push(buf.subarray(segStart, pos));
          pos += 3;
          segStart = pos;
          ended = true;
          break;
        }
        if (pos > segStart) segments.push(buf.subarray(segStart, pos));
        segStart = pos + 1;
      }
      const nl = buf.indexOf(0x0a, pos);
      if (nl === -1) {
        pos = buf.length;
        this.atLineStart = false;
        break;
      }
      this.atLineStart = true;
      this.lineStartAfterCrlf = nl > 0 ? buf[nl - 1] === 0x0d : this.lineStartAfterCrlf;
      pos = nl + 1;
    }
    if (!ended && pos > segStart) segments.push(buf.subarray(segStart, pos));
    // What is left is either pipelined commands after the end marker, or an undecided
    // "." / ".\r" at a line start that needs the next chunk.
    this.buffer = buf.subarray(pos);
    for (const s of segments) await this.messageBytes(tx, s);
    if (!ended) return false;
    this.mode = 'command';
    this.socket.setTimeout(this.config.connections.idleTimeout * 1000);
    await this.finishMessage(tx);
    return true;
  }

  private async messageBytes(tx: Transaction, chunk: Buffer): Promise<void> {
    tx.bytes += chunk.length;
    if (tx.failure) return;
    const limit = this.config.messages.maxMessageSizeKb;
    if (limit !== null && tx.bytes > limit * 1024) {
      tx.failure = reply(552, '5.3.4', 'Message size exceeds fixed maximum message size');
      await tx.writer?.abort();
      return;
    }
    const sessionLimit = this.config.messages.maxSessionSizeKb;
    if (sessionLimit !== null && this.sessionBytes + tx.bytes > sessionLimit * 1024) {
      tx.failure = reply(552, '5.3.4', 'Session size exceeds fixed maximum session size');
      await tx.writer?.abort();
      return;
    }
    const headerWasDone = tx.header.done;
    tx.header.feed(chunk);
    // A large message is written to its file before it ends: the header facts must be in
    // the envelope by then, or the spooled envelope never carries them.
    if (tx.header.done && !headerWasDone) this.applyHeaderFacts(tx.writer!.envelope, tx.header.fields());
    await tx.writer!.write(chunk);
  }

  /** Message-ID, Subject, From and the hop count of the header section, kept in the envelope. */
  private applyHeaderFacts(envelope: Envelope, fields: { name: string; value: string }[]): void {
    const field = (name: string) => fields.find((f) => f.name.toLowerCase() === name)?.value;
    // Ours is the first line of the stored message, so it counts too.
    envelope.receivedHeaders = fields.filter((f) => f.name.toLowerCase() === 'received').length + 1;
    const messageId = field('message-id');
    if (messageId) envelope.messageId = messageId;
    const subject = field('subject');
    if (subject !== undefined) envelope.subject = subject;
    const from = field('from');
    if (from !== undefined) envelope.headerFrom = from;
    // Importance / X-Priority / Priority: what connectors' content restrictions look at.
    const importance = (field('importance') ?? field('priority') ?? '').toLowerCase();
    const xPriority = /^\s*(\d)/.exec(field('x-priority') ?? '')?.[1];
    if (importance === 'high' || importance === 'urgent' || xPriority === '1' || xPriority === '2') {
      envelope.priority = 'high';
    } else if (
      importance === 'low' ||
      importance === 'non-urgent' ||
      xPriority === '4' ||
      xPriority === '5'
    ) {
      envelope.priority = 'low';
    }
  }

  private async finishMessage(tx: Transaction): Promise<void> {
    this.tx = undefined;
    this.sessionBytes += tx.bytes;
    if (tx.failure) {
      await tx.writer?.abort();
      this.send(tx.failure);
      if (tx.failure.text.toString().startsWith('Session size')) this.close();
      return;
    }
    const writer = tx.writer!;
    const fields = tx.header.fields();
    const hops = fields.filter((f) => f.name.toLowerCase() === 'received').length + 1;
    if (hops > this.config.delivery.maxHopCount) {
      await writer.abort();
      this.send(reply(554, '5.4.6', 'Hop count exceeded - possible mail loop'));
      return;
    }
    this.applyHeaderFacts(writer.envelope, fields);
    const headerVerdict = this.vs.hygiene?.atData(
      this.remoteAddress,
      writer.envelope.headerFrom,
      this.identity !== undefined,
    );
    if (headerVerdict?.action === 'reject') {
      await writer.abort();
      this.send(reply(headerVerdict.code, headerVerdict.status, headerVerdict.text));
      if (headerVerdict.drop) this.close();
      return;
    }
    const archive = tx.archive ?? (headerVerdict?.action === 'archive' ? headerVerdict.reason : undefined);
    // Marked in the spool file itself: a crash before the move to badmail must not let
    // recovery deliver it.
    if (archive) writer.envelope.archived = archive;
    try {
      const spooled = await writer.commit();
      this.messagesAccepted++;
      this.send(reply(250, '2.6.0', `<${writer.envelope.id}@${this.vs.fqdn}> Queued mail for delivery`));
      if (archive) this.vs.archived(spooled, archive);
      else this.vs.accepted(spooled);
    } catch (err) {
      await writer.abort();
      this.vs.log.error({ err, id: writer.envelope.id }, 'cannot write message to the spool');
      this.send(reply(451, '4.3.0', 'Error writing message to the queue; try again later'));
    }
  }

  private bdat(arg: string): void {
    const m = /^(\d+)(?:\s+(LAST))?$/i.exec(arg);
    if (!m) throw new TransportError(501, '5.5.4', 'Syntax: BDAT chunk-size [LAST]');
    this.bdatSize = Number(m[1]);
    this.bdatRemaining = this.bdatSize;
    this.bdatLast = m[2] !== undefined;
    // The chunk is consumed whatever the verdict, so the session stays in step.
    let error: Reply | undefined;
    try {
      const tx = this.readyForData(this.tx);
      if (tx.bdatFailed) throw new TransportError(503, '5.5.1', 'Previous BDAT failed; send RSET');
      if (!tx.writer) this.openMessage(tx);
    } catch (err) {
      if (!(err instanceof TransportError)) throw err;
      error = err.reply;
    }
    this.bdatError = error;
    this.mode = 'bdat';
    this.socket.setTimeout(this.config.connections.dataTimeout * 1000);
  }

  private bdatError: Reply | undefined;

  private async bdatStep(): Promise<boolean> {
    if (this.bdatRemaining > 0) {
      if (this.buffer.length === 0) return false;
      const take = Math.min(this.bdatRemaining, this.buffer.length);
      const chunk = this.buffer.subarray(0, take);
      this.buffer = this.buffer.subarray(take);
      this.bdatRemaining -= take;
      if (!this.bdatError && this.tx) await this.messageBytes(this.tx, chunk);
      if (this.bdatRemaining > 0) return false;
    }
    this.mode = 'command';
    this.socket.setTimeout(this.config.connections.idleTimeout * 1000);
    if (this.bdatError) {
      const err = this.bdatError;
      this.bdatError = undefined;
      if (this.tx) this.tx.bdatFailed = true;
      this.send(err);
      return true;
    }
    const tx = this.tx!;
    if (this.bdatLast) {
      await this.finishMessage(tx);
    } else if (tx.failure) {
      tx.bdatFailed = true;
      await tx.writer?.abort();
      this.send(tx.failure);
    } else {
      this.send(reply(250, '2.0.0', `${this.bdatSize} octets received`));
    }
    return true;
  }

  private async vrfy(arg: string): Promise<void> {
    if (!arg) throw new TransportError(501, '5.5.4', 'Syntax: VRFY address');
    if (!this.config.vrfy) {
      return this.send(reply(252, '2.1.5', 'Cannot VRFY user, but will accept message and attempt delivery'));
    }
    const address = arg.replace(/^<|>$/g, '');
    const entry = await this.vs.directory.findByAddress(address);
    if (!entry) throw new TransportError(550, '5.1.1', `${address}... User unknown`);
    this.send(reply(250, '2.1.5', `${entry.name} <${entry.primaryAddress}>`));
  }

  private startTls(arg: string): void {
    if (arg) throw new TransportError(501, '5.5.4', 'Syntax: STARTTLS');
    if (!this.vs.tlsContext) throw new TransportError(454, '4.7.0', 'TLS not available');
    if (this.tlsActive) throw new TransportError(503, '5.5.1', 'TLS already active');
    if (this.tx) throw new TransportError(503, '5.5.1', 'STARTTLS not allowed during a mail transaction');
    this.send(reply(220, '2.0.0', 'SMTP server ready'));
    this.socket.uncork();
    // RFC 3207 §4.2: anything pipelined after STARTTLS is discarded; the session restarts.
    this.buffer = EMPTY;
    const raw = this.socket;
    raw.removeAllListeners('data');
    raw.removeAllListeners('timeout');
    raw.removeAllListeners('close');
    raw.setTimeout(0);
    const secure = new tls.TLSSocket(raw, { isServer: true, secureContext: this.vs.tlsContext });
    this.socket = secure;
    this.tlsActive = true;
    this.helo = undefined;
    this.esmtp = false;
    this.identity = undefined;
    this.tx = undefined;
    this.attach(secure);
    secure.on('secure', () =>
      this.log('*', `TLS negotiated: ${secure.getProtocol() ?? ''} ${secure.getCipher()?.name ?? ''}`),
    );
    secure.cork();
  }

  private async auth(arg: string): Promise<void> {
    this.requireHello();
    if (this.identity) throw new TransportError(503, '5.5.1', 'Already authenticated');
    if (this.tx) throw new TransportError(503, '5.5.1', 'AUTH not allowed during a mail transaction');
    const [mechanism = '', initial] = arg.split(/\s+/);
    const mech = mechanism.toUpperCase();
    const a = this.config.authentication;
    if (!a.basic || (mech !== 'PLAIN' && mech !== 'LOGIN')) {
      throw new TransportError(504, '5.5.4', 'Unrecognized authentication type');
    }
    if (!this.tlsActive && !a.basicWithoutTls) {
      throw new TransportError(538, '5.7.11', 'Encryption required for requested authentication mechanism');
    }
    const decode = (line: string): string | undefined => {
      if (line === '*') return undefined;
      if (!/^[A-Za-z0-9+/]*={0,2}$/.test(line))
        throw new TransportError(501, '5.5.2', 'Cannot decode response');
      return Buffer.from(line, 'base64').toString('utf8');
    };
    const cancelled = () => this.send(reply(501, '5.7.0', 'Authentication cancelled'));
    const finish = async (login: string, password: string) => {
      const identity = await this.vs.directory.authenticate(login, password);
      if (!identity) {
        this.send(reply(535, '5.7.8', 'Authentication credentials invalid'));
        return this.countError();
      }
      this.identity = identity;
      this.log('*', `authenticated as ${identity.name}`);
      this.send(reply(235, '2.7.0', 'Authentication successful.'));
    };
    const guarded = (fn: (line: string) => Promise<void>) => async (line: string) => {
      try {
        await fn(line);
      } catch (err) {
        if (err instanceof TransportError) this.send(err.reply);
        else throw err;
      }
    };
    const prompt = (text: string, next: (line: string) => Promise<void>) => {
      this.mode = 'auth';
      this.authStep = guarded(next);
      this.send(reply(334, undefined, text));
    };

    const plain = async (line: string) => {
      const decoded = decode(line);
      if (decoded === undefined) return cancelled();
      const parts = decoded.split('\0');
      if (parts.length !== 3) throw new TransportError(501, '5.5.2', 'Invalid PLAIN response');
      await finish(parts[1]!, parts[2]!);
    };
    const loginPassword = (user: string) => async (line: string) => {
      const password = decode(line);
      if (password === undefined) return cancelled();
      await finish(user, password);
    };
    const loginUser = async (line: string) => {
      const user = decode(line);
      if (user === undefined) return cancelled();
      prompt(AUTH_PROMPT_PASS, loginPassword(user));
    };

    if (mech === 'PLAIN') {
      if (initial === undefined) return prompt('', plain);
      return plain(initial === '=' ? '' : initial);
    }
    if (initial !== undefined) return loginUser(initial);
    prompt(AUTH_PROMPT_USER, loginUser);
  }

  /** Is this session authenticated as a server of the organisation (organisation secret)? */
  private get fromOrganisationServer(): boolean {
    return (
      this.identity !== undefined &&
      this.identity.primaryAddress === '' &&
      this.vs.isServer(this.identity.name)
    );
  }

  private linkStateConversation: ((args: string) => Reply) | undefined;

  /** Link state exchange between bridgeheads, after EHLO and AUTH, before MAIL [003:9040-9230]. */
  private xLink2State(arg: string): void {
    if (!this.vs.linkState || !this.config.exchangeVerbs) {
      this.send(reply(500, '5.3.3', 'Unrecognized command'));
      return this.countError();
    }
    this.requireHello();
    if (!this.fromOrganisationServer) throw new TransportError(504, '5.7.4', 'Need to authenticate first');
    if (this.tx) throw new TransportError(503, '5.5.1', 'X-LINK2STATE not allowed during a mail transaction');
    this.linkStateConversation ??= this.vs.linkState.session();
    this.send(this.linkStateConversation(arg));
  }

  /**
   * XEXCH50 (Exchange message properties): refused from anonymous sessions unless
   * configured. Bridgehead servers carry properties in the envelope and never send it.
   */
  private xexch50Remaining = 0;
  private xexch50Blob: Buffer[] = [];

  /**
   * XEXCH50 <size> <flags>: message properties between organisation servers, after RCPT and
   * before DATA. Refused from anonymous sessions unless configured; properties from anyone
   * but an organisation server are read and ignored. Bridgehead servers send the submitter's
   * authenticated identity this way, so restrictions hold on the next server too.
   */
  private xexch50(arg: string): void {
    if (!this.config.exchangeVerbs) {
      this.send(reply(500, '5.3.3', 'Unrecognized command'));
      return this.countError();
    }
    this.requireHello();
    if (!this.fromOrganisationServer && !this.config.xexch50FromAnonymous) {
      throw new TransportError(504, '5.7.4', 'Need to authenticate first');
    }
    const m = /^(\d+)\s+\d+$/.exec(arg);
    if (!m || Number(m[1]) > 1024 * 1024)
      throw new TransportError(501, '5.5.4', 'Syntax: XEXCH50 size flags');
    if (!this.tx || this.tx.recipients.length === 0 || this.tx.writer) {
      throw new TransportError(503, '5.5.1', 'XEXCH50 goes after RCPT and before DATA');
    }
    this.xexch50Remaining = Number(m[1]);
    this.xexch50Blob = [];
    this.mode = 'xexch50';
    this.send(reply(354, undefined, 'Send binary data'));
  }

  private async xexch50Step(): Promise<boolean> {
    if (this.xexch50Remaining > 0) {
      if (this.buffer.length === 0) return false;
      const take = Math.min(this.xexch50Remaining, this.buffer.length);
      this.xexch50Blob.push(this.buffer.subarray(0, take));
      this.buffer = this.buffer.subarray(take);
      this.xexch50Remaining -= take;
      if (this.xexch50Remaining > 0) return false;
    }
    this.mode = 'command';
    const blob = Buffer.concat(this.xexch50Blob);
    this.xexch50Blob = [];
    if (this.fromOrganisationServer && this.tx) {
      try {
        const props = JSON.parse(blob.toString('utf8')) as { authenticatedAs?: unknown };
        if (typeof props.authenticatedAs === 'string') this.tx.relayedIdentity = props.authenticatedAs;
      } catch {
        // Properties we cannot read are dropped, as Exchange drops foreign ones.
      }
    }
    this.send(reply(250, '2.0.0', 'XEXCH50 OK'));
    return true;
  }

  private async etrn(arg: string): Promise<void> {
    this.requireHello();
    if (this.tx) throw new TransportError(503, '5.5.1', 'ETRN not allowed during a mail transaction');
    if (!arg) throw new TransportError(501, '5.5.4', 'Syntax: ETRN [@#]domain');
    this.send(await this.vs.remoteTriggered.etrn(arg, this.identity));
  }

  private async atrn(verb: 'TURN' | 'ATRN', arg: string): Promise<void> {
    this.requireHello();
    if (!this.identity) throw new TransportError(530, '5.7.0', 'Authentication required');
    if (this.tx) throw new TransportError(503, '5.5.1', `${verb} not allowed during a mail transaction`);
    const result = await this.vs.remoteTriggered.atrn(verb === 'TURN' ? '' : arg, this.identity);
    this.send(result.reply);
    if (!result.reverse) return;
    // The roles reverse (RFC 2645): this session ends as a server and the connection carries
    // our deliveries, with the client now answering as the server.
    this.socket.uncork();
    const socket = this.socket;
    for (const event of ['data', 'timeout', 'close']) socket.removeAllListeners(event);
    socket.setTimeout(0);
    this.mode = 'closed';
    this.buffer = EMPTY;
    this.log('*', `connection reversed for ${verb}`);
    void result.reverse(socket).finally(() => {
      socket.destroy();
      this.log('-', '');
      this.vs.sessionEnded(this);
    });
  }
}
