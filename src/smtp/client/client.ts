// The sending side: one SMTP client connection that can carry several messages.
// EHLO (HELO when EHLO is refused or configured), STARTTLS (opportunistic or required),
// AUTH PLAIN/LOGIN, PIPELINING, SIZE, 8BITMIME, SMTPUTF8, DSN parameters, CHUNKING.
// Every failure is a TransportError with the remote reply's code and status, so the
// queuing engine can retry (4xx) or return an NDR that quotes the remote text (5xx).
import net from 'node:net';
import tls from 'node:tls';
import { TransportError } from '../status.js';
import type { Envelope, RecipientEnvelope } from '../../queue/spool.js';
import { dotStuff } from './data-lines.js';

export { crlfLines, dotStuff } from './data-lines.js';

export interface SmtpReply {
  code: number;
  status?: string;
  lines: string[];
  /** The whole reply as one line, for logs and NDR diagnostics. */
  text: string;
}

export interface ClientOptions {
  host: string;
  port: number;
  /** Name announced in EHLO. */
  heloName: string;
  /** Host name for certificate checks (the MX or smart host name). */
  servername?: string;
  heloOnly?: boolean;
  tls: 'opportunistic' | 'required' | 'none';
  /** Verify the server certificate when TLS is required. */
  verifyCertificate?: boolean;
  auth?: { username: string; password: string };
  timeoutMs: number;
  log?: (event: string, data: string) => void;
  /**
   * The address connections come from (the virtual server's IP, or its configured source
   * address), so the peer's Received header, SPF, PTR and firewall rules see the server.
   * Used only for a peer of the same address family.
   */
  localAddress?: string;
}

/** Socket options binding to `localAddress` when the peer is of its family (no I/O). */
export function sourceBinding(host: string, localAddress: string | undefined): { localAddress?: string } {
  if (!localAddress) return {};
  const family = net.isIP(localAddress);
  const peer = net.isIP(host);
  return family !== 0 && (peer === 0 || peer === family) ? { localAddress } : {};
}

export interface RecipientResult {
  recipient: RecipientEnvelope;
  reply: SmtpReply;
}

/**
 * A failure the remote server replied with. `remoteReply` is that reply as it was received,
 * for the DSN's Diagnostic-Code (RFC 3464 §2.3.6); the message says who said it, for people.
 */
export class RemoteReplyError extends TransportError {
  constructor(
    code: number,
    status: string,
    text: string,
    readonly remoteReply: string,
  ) {
    super(code, status, text);
  }
}

function hostFromReply(r: SmtpReply): string {
  return r.text;
}

function enhanced(line: string): string | undefined {
  return /^[245]\.\d{1,3}\.\d{1,3}(?=\s|$)/.exec(line)?.[0];
}

/** Encodes xtext (RFC 3461 §4). */
export function encodeXtext(value: string): string {
  return [...Buffer.from(value, 'utf8')]
    .map((b) =>
      b >= 33 && b <= 126 && b !== 43 && b !== 61
        ? String.fromCharCode(b)
        : `+${b.toString(16).toUpperCase().padStart(2, '0')}`,
    )
    .join('');
}

export class SmtpClient {
  private socket: net.Socket | tls.TLSSocket | undefined;
  private buffer = '';
  private waiting: { resolve: (r: SmtpReply) => void; reject: (e: Error) => void }[] = [];
  private closedError: Error | undefined;
  extensions = new Map<string, string>();
  greeting: SmtpReply | undefined;
  tlsActive = false;
  messagesSent = 0;
  /**
   * The last transaction did not end cleanly (refused after DATA, or broken off): the peer
   * may still hold part of it, so RSET comes before the next MAIL.
   */
  needsReset = false;

  constructor(private readonly o: ClientOptions) {}

  private log(event: string, data: string): void {
    this.o.log?.(event, data);
  }

  /** Connects, reads the banner, says EHLO, upgrades to TLS and authenticates as configured. */
  async open(): Promise<void> {
    this.log('*', `attempting to connect to ${this.o.host}:${this.o.port}`);
    const socket = await new Promise<net.Socket>((resolve, reject) => {
      const s = net.connect({
        host: this.o.host,
        port: this.o.port,
        ...sourceBinding(this.o.host, this.o.localAddress),
      });
      const timer = setTimeout(() => {
        this.log('*', `connection timed out after ${this.o.timeoutMs} ms`);
        s.destroy();
        reject(new TransportError(451, '4.4.1', `Connection to ${this.o.host}:${this.o.port} timed out`));
      }, this.o.timeoutMs);
      s.once('connect', () => {
        clearTimeout(timer);
        resolve(s);
      });
      s.once('error', (err: NodeJS.ErrnoException) => {
        clearTimeout(timer);
        this.log('*', `connection failed: ${err.code ?? err.message}`);
        reject(
          new TransportError(
            451,
            '4.4.1',
            `Cannot connect to ${this.o.host}:${this.o.port}: ${err.code ?? err.message}`,
          ),
        );
      });
    });
    socket.setNoDelay(true);
    this.attach(socket);
    this.log('+', '');
    this.greeting = await this.read();
    if (this.greeting.code !== 220) {
      throw this.failure(this.greeting, 'connect');
    }
    await this.hello();
    if (this.o.tls !== 'none' && this.extensions.has('STARTTLS')) {
      const r = await this.command('STARTTLS');
      if (r.code === 220) {
        await this.upgrade();
        await this.hello();
      } else if (this.o.tls === 'required') {
        throw this.failure(r, 'STARTTLS');
      }
    } else if (this.o.tls === 'required') {
      throw new TransportError(
        451,
        '4.7.5',
        `${this.o.host} does not offer STARTTLS, which this connector requires`,
      );
    }
    if (this.o.auth) await this.authenticate(this.o.auth);
  }

  /**
   * ATRN / TURN: the connection the remote side opened is turned around; we read its
   * banner and go on as the client (no STARTTLS or AUTH: the session was authenticated).
   */
  async adopt(socket: net.Socket | tls.TLSSocket): Promise<void> {
    socket.setNoDelay(true);
    this.attach(socket);
    this.tlsActive = socket instanceof tls.TLSSocket;
    this.log('+', 'connection reversed (ATRN)');
    this.greeting = await this.read();
    if (this.greeting.code !== 220) throw this.failure(this.greeting, 'banner after ATRN');
    await this.hello();
  }

  private attach(socket: net.Socket | tls.TLSSocket): void {
    this.socket = socket;
    socket.setEncoding('utf8');
    socket.setTimeout(this.o.timeoutMs);
    socket.on('data', (d: string) => this.onData(d));
    socket.on('timeout', () => {
      this.fail(new TransportError(451, '4.4.2', `Timed out waiting for ${this.o.host}`));
      socket.destroy();
    });
    socket.on('error', (err: NodeJS.ErrnoException) =>
      this.fail(
        new TransportError(451, '4.4.2', `Connection to ${this.o.host} lost: ${err.code ?? err.message}`),
      ),
    );
    socket.on('close', () =>
      this.fail(new TransportError(451, '4.4.2', `Connection to ${this.o.host} closed`)),
    );
  }

  private fail(err: Error): void {
    this.closedError ??= err;
    for (const w of this.waiting.splice(0)) w.reject(this.closedError);
  }

  private onData(d: string): void {
    this.buffer += d;
    for (;;) {
      const m = /^((?:\d{3}-[^\n]*\n)*\d{3}(?: [^\n]*)?\r?\n)/.exec(this.buffer);
      if (!m) {
        if (this.buffer.length > 4 * 1024 * 1024)
          this.fail(new TransportError(451, '4.5.0', 'Reply too long'));
        return;
      }
      this.buffer = this.buffer.slice(m[1]!.length);
      const lines = m[1]!.replace(/\r?\n$/, '').split(/\r?\n/);
      for (const l of lines) this.log('<', l);
      const code = Number(lines[0]!.slice(0, 3));
      const texts = lines.map((l) => l.slice(4));
      const status = enhanced(texts[0] ?? '');
      const reply: SmtpReply = { code, status, lines: texts, text: lines.join(' ') };
      const w = this.waiting.shift();
      if (w) w.resolve(reply);
    }
  }

  private read(): Promise<SmtpReply> {
    const p: Promise<SmtpReply> = this.closedError
      ? Promise.reject(this.closedError)
      : new Promise((resolve, reject) => this.waiting.push({ resolve, reject }));
    // Pipelined replies are read ahead; one that is never awaited (the transaction failed
    // earlier) must not become an unhandled rejection. Awaiting it still throws.
    p.catch(() => undefined);
    return p;
  }

  private write(line: string): void {
    this.log('>', /^AUTH /i.test(line) ? line.replace(/^(AUTH \S+).*/i, '$1 ****') : line);
    this.socket!.write(`${line}\r\n`);
  }

  async command(line: string): Promise<SmtpReply> {
    const p = this.read();
    this.write(line);
    return p;
  }

  private failure(r: SmtpReply, stage: string): TransportError {
    const code = r.code >= 400 && r.code < 600 ? r.code : 451;
    const status = r.status ?? (code >= 500 ? '5.0.0' : '4.0.0');
    const text = `${this.o.host} said at ${stage}: ${hostFromReply(r)}`;
    return code === r.code
      ? new RemoteReplyError(code, status, text, r.text)
      : new TransportError(code, status, text);
  }

  private async hello(): Promise<void> {
    this.extensions.clear();
    if (!this.o.heloOnly) {
      const r = await this.command(`EHLO ${this.o.heloName}`);
      if (r.code === 250) {
        for (const line of r.lines.slice(1)) {
          const [kw = '', ...rest] = line.split(' ');
          this.extensions.set(kw.toUpperCase(), rest.join(' '));
        }
        return;
      }
      if (r.code === 421) throw this.failure(r, 'EHLO');
    }
    const r = await this.command(`HELO ${this.o.heloName}`);
    if (r.code !== 250) throw this.failure(r, 'HELO');
  }

  private async upgrade(): Promise<void> {
    const raw = this.socket!;
    raw.removeAllListeners('data');
    raw.removeAllListeners('timeout');
    raw.removeAllListeners('close');
    raw.removeAllListeners('error');
    const verify = this.o.tls === 'required' && this.o.verifyCertificate !== false;
    const secure = tls.connect({
      socket: raw,
      servername: net.isIP(this.o.servername ?? this.o.host) ? undefined : (this.o.servername ?? this.o.host),
      rejectUnauthorized: verify,
    });
    await new Promise<void>((resolve, reject) => {
      secure.once('secureConnect', () => resolve());
      secure.once('error', (err) =>
        reject(
          new TransportError(451, '4.7.5', `TLS negotiation with ${this.o.host} failed: ${err.message}`),
        ),
      );
    });
    this.attach(secure);
    this.tlsActive = true;
    this.log('*', `TLS negotiated: ${secure.getProtocol() ?? ''}`);
  }

  private async authenticate(auth: { username: string; password: string }): Promise<void> {
    const mechs = (this.extensions.get('AUTH') ?? '').toUpperCase().split(/\s+/);
    let r: SmtpReply;
    if (mechs.includes('PLAIN')) {
      const token = Buffer.from(`\0${auth.username}\0${auth.password}`).toString('base64');
      r = await this.command(`AUTH PLAIN ${token}`);
    } else if (mechs.includes('LOGIN')) {
      r = await this.command('AUTH LOGIN');
      if (r.code === 334) r = await this.command(Buffer.from(auth.username).toString('base64'));
      if (r.code === 334) r = await this.command(Buffer.from(auth.password).toString('base64'));
    } else {
      throw new TransportError(451, '4.7.0', `${this.o.host} offers no AUTH mechanism this server can use`);
    }
    if (r.code !== 235) throw this.failure(r, 'AUTH');
  }

  /**
   * Sends one message. Resolves with per-recipient replies (accepted recipients carry the
   * final DATA reply); throws only when the whole transaction failed.
   */
  async send(
    envelope: Envelope,
    recipients: RecipientEnvelope[],
    message: Buffer,
    /** XEXCH50 message properties, sent when the peer (an organisation server) offers it. */
    properties?: Buffer,
  ): Promise<RecipientResult[]> {
    const ext = this.extensions;
    this.needsReset = true;
    const params: string[] = [];
    if (ext.has('SIZE')) params.push(`SIZE=${message.length}`);
    if (envelope.body === '8BITMIME' && ext.has('8BITMIME')) params.push('BODY=8BITMIME');
    if (envelope.body === 'BINARYMIME') {
      if (!ext.has('BINARYMIME') || !ext.has('CHUNKING')) {
        throw new TransportError(554, '5.6.3', `${this.o.host} cannot accept binary content (no BINARYMIME)`);
      }
      params.push('BODY=BINARYMIME');
    }
    if (envelope.smtputf8) {
      if (!ext.has('SMTPUTF8')) {
        throw new TransportError(
          553,
          '5.6.7',
          `${this.o.host} does not support SMTPUTF8 required by this message`,
        );
      }
      params.push('SMTPUTF8');
    }
    const dsn = ext.has('DSN');
    if (dsn && envelope.ret) params.push(`RET=${envelope.ret}`);
    if (dsn && envelope.envid) params.push(`ENVID=${encodeXtext(envelope.envid)}`);
    const rcptLine = (r: RecipientEnvelope) => {
      const p: string[] = [];
      if (dsn && r.notify) p.push(`NOTIFY=${r.notify.join(',')}`);
      if (dsn && r.orcpt) {
        const semi = r.orcpt.indexOf(';');
        p.push(`ORCPT=${r.orcpt.slice(0, semi)};${encodeXtext(r.orcpt.slice(semi + 1).trim())}`);
      }
      return `RCPT TO:<${r.address}>${p.length ? ' ' + p.join(' ') : ''}`;
    };
    const mailLine = `MAIL FROM:<${envelope.sender}>${params.length ? ' ' + params.join(' ') : ''}`;
    const sendProperties = properties !== undefined && ext.has('XEXCH50');
    // With properties to send, DATA waits until XEXCH50 is done: it is not pipelined.
    const chunking = ext.has('CHUNKING') && envelope.body === 'BINARYMIME';
    const holdData = chunking || sendProperties;
    const pipelining = ext.has('PIPELINING');

    let mailReply: SmtpReply;
    const rcptReplies: SmtpReply[] = [];
    let dataReply: SmtpReply | undefined;
    if (pipelining) {
      const pending = [this.read(), ...recipients.map(() => this.read())];
      const dataPending = holdData ? undefined : this.read();
      const lines = [mailLine, ...recipients.map(rcptLine), ...(holdData ? [] : ['DATA'])];
      for (const l of lines) this.log('>', l);
      this.socket!.write(lines.map((l) => `${l}\r\n`).join(''));
      const replies = await Promise.all(pending);
      mailReply = replies[0]!;
      rcptReplies.push(...replies.slice(1));
      if (dataPending) dataReply = await dataPending;
    } else {
      mailReply = await this.command(mailLine);
      if (mailReply.code === 250) {
        for (const r of recipients) rcptReplies.push(await this.command(rcptLine(r)));
      }
    }
    if (mailReply.code !== 250) {
      if (dataReply?.code === 354) await this.abortData();
      throw this.failure(mailReply, 'MAIL FROM');
    }
    const accepted = recipients.filter(
      (_, i) => rcptReplies[i]?.code === 250 || rcptReplies[i]?.code === 251,
    );
    const results: RecipientResult[] = recipients.map((r, i) => ({ recipient: r, reply: rcptReplies[i]! }));
    if (!accepted.length) {
      if (dataReply?.code === 354) await this.abortData();
      else if (!pipelining || chunking) await this.command('RSET').catch(() => undefined);
      else await this.command('RSET').catch(() => undefined);
      this.needsReset = false;
      return results;
    }
    if (sendProperties) {
      const r = await this.command(`XEXCH50 ${properties.length} 2`);
      if (r.code === 354) {
        const p = this.read();
        this.log('*', `sending ${properties.length} bytes of XEXCH50 properties`);
        this.socket!.write(properties);
        const done = await p;
        if (done.code !== 250) this.log('*', `XEXCH50 refused: ${done.text}`);
      }
    }
    let final: SmtpReply;
    if (chunking) {
      this.log('>', `BDAT ${message.length} LAST`);
      const p = this.read();
      this.socket!.write(`BDAT ${message.length} LAST\r\n`);
      this.socket!.write(message);
      final = await p;
    } else {
      if (!dataReply) dataReply = await this.command('DATA');
      if (dataReply.code !== 354) throw this.failure(dataReply, 'DATA');
      const p = this.read();
      this.log('*', `sending message (${message.length} bytes)`);
      // One write for body and end marker: no Nagle/delayed-ACK pause between them.
      this.socket!.cork();
      this.socket!.write(dotStuff(message));
      this.socket!.write('.\r\n');
      process.nextTick(() => this.socket?.uncork());
      final = await p;
    }
    this.messagesSent++;
    this.needsReset = final.code < 200 || final.code >= 300;
    return results.map((r) =>
      r.reply.code === 250 || r.reply.code === 251 ? { recipient: r.recipient, reply: final } : r,
    );
  }

  /** Ends a DATA phase opened by pipelining when no recipient was accepted. */
  private async abortData(): Promise<void> {
    const p = this.read();
    this.socket!.write('.\r\n');
    await p.catch(() => undefined);
  }

  /** RSET between messages; false when the connection is no longer usable. */
  async reset(): Promise<boolean> {
    try {
      const ok = (await this.command('RSET')).code === 250;
      if (ok) this.needsReset = false;
      return ok;
    } catch {
      return false;
    }
  }

  async quit(): Promise<void> {
    if (!this.socket || this.socket.destroyed) return;
    try {
      if (!this.closedError)
        await Promise.race([this.command('QUIT'), new Promise((r) => setTimeout(r, 2000))]);
    } catch {
      // the peer went away first; nothing to do
    } finally {
      this.socket.destroy();
      this.log('-', '');
    }
  }

  get usable(): boolean {
    return !!this.socket && !this.socket.destroyed && !this.closedError;
  }
}
