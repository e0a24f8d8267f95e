// NAME      LMTP store driver: hands a store's copies of a message to an LMTP server
// SYNOPSIS  new LmtpStore(settings).deliver(message, copies)
// DESCRIPTION
//   One connection per call (TCP host:port or a Unix socket): greeting, LHLO, then one
//   transaction for every copy of the message bound for the store, MAIL, one RCPT each and
//   DATA pipelined when the server offers PIPELINING, and one reply per accepted recipient
//   after the message (RFC 2033 §4.2); QUIT. lmtp-replies.ts turns the replies into results.
//   The LMTP server adds Return-Path (and, for a single recipient, Delivered-To) itself,
//   so nothing is added here.
// DIAGNOSTICS  cannot connect, or no greeting in time: every copy 451 4.4.1; the store
//   closes or stops answering (timeout): the copies without a reply 451 4.4.2. Never an NDR.
// BUGS      LMTP cannot be asked whether a copy was already saved: a recipient whose reply
//   was cut off (the store went away after the message, or this server crashed before it
//   recorded the reply) is delivered again, a duplicate rather than a loss. No STARTTLS:
//   an LMTP store is reached on loopback, a Unix socket or a trusted network. No
//   SMTPUTF8 or BODY= parameters: addresses and bytes go as they are.
// STANDARDS RFC 2033, RFC 2920 (PIPELINING), RFC 5321
import net from 'node:net';
import { TransportError } from '../../message/status.js';
import { dotStuff } from '../../smtp/client/client.js';
import type { CopyResult, StoreCopy, StoreDriver, StoreMessage } from './store-driver.js';
import { lmtpRecipient } from './lmtp-recipient.js';
import {
  storeUnavailable,
  transactionResults,
  type LmtpReply,
  type LmtpTransaction,
} from './lmtp-replies.js';

export interface LmtpSettings {
  /** The mailbox store's name, for texts. */
  store: string;
  /** TCP host and port, or a Unix socket path. */
  endpoint: { host: string; port: number } | { socket: string };
  /** Name announced in LHLO (this server's FQDN). */
  lhloName: string;
  /** RCPT TO template over the primary address (lmtp-replies.ts). */
  rcptTo: string;
  /** Connection and reply time-out. */
  timeoutMs: number;
  log?: (event: string, data: string) => void;
}

/** One LMTP connection: reads replies in order, fails every waiting read when it breaks. */
class LmtpConnection {
  private buffer = '';
  private waiting: { resolve: (r: LmtpReply) => void; reject: (e: TransportError) => void }[] = [];
  private broken: TransportError | undefined;

  private constructor(
    private readonly socket: net.Socket,
    where: string,
    private readonly log: (event: string, data: string) => void,
  ) {
    socket.setEncoding('utf8');
    socket.on('data', (d: string) => this.onData(d));
    socket.on('timeout', () => {
      this.fail(new TransportError(451, '4.4.2', `Mailbox store ${where} did not answer in time`));
      socket.destroy();
    });
    socket.on('error', (err: NodeJS.ErrnoException) =>
      this.fail(new TransportError(451, '4.4.2', `Connection to ${where} lost: ${err.code ?? err.message}`)),
    );
    socket.on('close', () => this.fail(new TransportError(451, '4.4.2', `Connection to ${where} closed`)));
  }

  static open(
    s: LmtpSettings,
    where: string,
    log: (event: string, data: string) => void,
  ): Promise<LmtpConnection> {
    return new Promise((resolve, reject) => {
      const socket =
        'socket' in s.endpoint
          ? net.connect({ path: s.endpoint.socket })
          : net.connect({ host: s.endpoint.host, port: s.endpoint.port });
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new TransportError(451, '4.4.1', `Connection to mailbox store ${where} timed out`));
      }, s.timeoutMs);
      socket.once('connect', () => {
        clearTimeout(timer);
        socket.removeAllListeners('error');
        socket.setNoDelay(true);
        socket.setTimeout(s.timeoutMs);
        resolve(new LmtpConnection(socket, where, log));
      });
      socket.once('error', (err: NodeJS.ErrnoException) => {
        clearTimeout(timer);
        reject(
          new TransportError(
            451,
            '4.4.1',
            `Cannot connect to mailbox store ${where}: ${err.code ?? err.message}`,
          ),
        );
      });
    });
  }

  private fail(err: TransportError): void {
    this.broken ??= err;
    for (const w of this.waiting.splice(0)) w.reject(this.broken);
  }

  private onData(d: string): void {
    this.buffer += d;
    for (let done = false; !done;) {
      const m = /^((?:\d{3}-[^\n]*\n)*\d{3}(?: [^\n]*)?\r?\n)/.exec(this.buffer);
      if (!m) {
        if (this.buffer.length > 1024 * 1024) this.fail(new TransportError(451, '4.5.0', 'Reply too long'));
        done = true;
        continue;
      }
      this.buffer = this.buffer.slice(m[1]!.length);
      const lines = m[1]!.replace(/\r?\n$/, '').split(/\r?\n/);
      for (const l of lines) this.log('<', l);
      const texts = lines.map((l) => l.slice(4));
      const status = /^[245]\.\d{1,3}\.\d{1,3}(?=\s|$)/.exec(texts[0] ?? '')?.[0];
      const reply: LmtpReply = { code: Number(lines[0]!.slice(0, 3)), text: lines.join(' ') };
      if (status) reply.status = status;
      this.waiting.shift()?.resolve(reply);
    }
  }

  /** The next reply; rejected with the connection's error once it broke. */
  read(): Promise<LmtpReply> {
    const p: Promise<LmtpReply> = this.broken
      ? Promise.reject(this.broken)
      : new Promise((resolve, reject) => this.waiting.push({ resolve, reject }));
    p.catch(() => undefined); // read ahead when pipelining; awaiting it still throws
    return p;
  }

  write(lines: string[]): void {
    for (const l of lines) this.log('>', l);
    this.socket.write(lines.map((l) => `${l}\r\n`).join(''));
  }

  writeMessage(body: Buffer): void {
    this.log('*', `sending message (${body.length} bytes)`);
    this.socket.cork();
    this.socket.write(dotStuff(body));
    this.socket.write('.\r\n');
    process.nextTick(() => this.socket.uncork());
  }

  async quit(): Promise<void> {
    if (!this.broken) {
      const bye = this.read();
      this.write(['QUIT']);
      await Promise.race([bye.catch(() => undefined), new Promise((r) => setTimeout(r, 2000))]);
    }
    this.socket.destroy();
  }
}

/** A transaction's replies as they arrive. */
interface Transaction extends LmtpTransaction {
  mail: LmtpReply;
  rcpts: LmtpReply[];
  data?: LmtpReply;
  finals: LmtpReply[];
  lost?: TransportError;
}

export class LmtpStore implements StoreDriver {
  private readonly where: string;

  constructor(private readonly s: LmtpSettings) {
    const endpoint = 'socket' in s.endpoint ? s.endpoint.socket : `${s.endpoint.host}:${s.endpoint.port}`;
    this.where = `${s.store} (${endpoint})`;
  }

  private log(event: string, data: string): void {
    this.s.log?.(event, data);
  }

  async deliver(message: StoreMessage, copies: readonly StoreCopy[]): Promise<CopyResult[]> {
    if (!copies.length) return [];
    let conn: LmtpConnection;
    try {
      conn = await LmtpConnection.open(this.s, this.where, (e, d) => this.log(e, d));
    } catch (err) {
      if (!(err instanceof TransportError)) throw err;
      return storeUnavailable(err, copies.length);
    }
    try {
      return await this.transaction(conn, message, copies);
    } finally {
      await conn.quit();
    }
  }

  private async transaction(
    conn: LmtpConnection,
    message: StoreMessage,
    copies: readonly StoreCopy[],
  ): Promise<CopyResult[]> {
    let pipelining: boolean;
    try {
      const greeting = await conn.read();
      if (greeting.code !== 220) return this.refusedAtStart(greeting, copies.length);
      const lhlo = conn.read();
      conn.write([`LHLO ${this.s.lhloName}`]);
      const hello = await lhlo;
      if (hello.code !== 250) return this.refusedAtStart(hello, copies.length);
      pipelining = /\b250[- ]PIPELINING\b/i.test(hello.text);
    } catch (err) {
      if (!(err instanceof TransportError)) throw err;
      return storeUnavailable(err, copies.length);
    }
    const commands = [
      `MAIL FROM:<${message.sender}>`,
      ...copies.map((c) => `RCPT TO:<${lmtpRecipient(this.s.rcptTo, c.mailbox.address)}>`),
    ];
    const t: Transaction = { mail: { code: 0, text: '' }, rcpts: [], finals: [] };
    try {
      if (pipelining) {
        const pending = [...commands, 'DATA'].map(() => conn.read());
        conn.write([...commands, 'DATA']);
        const [mail, ...rest] = await Promise.all(pending);
        t.mail = mail!;
        t.rcpts = rest.slice(0, copies.length);
        t.data = rest[copies.length]!;
      } else {
        t.mail = await this.command(conn, commands[0]!);
        if (t.mail.code === 250)
          for (const line of commands.slice(1)) t.rcpts.push(await this.command(conn, line));
        else t.rcpts = copies.map(() => t.mail);
        if (t.rcpts.some((r) => r.code >= 200 && r.code < 300)) t.data = await this.command(conn, 'DATA');
      }
    } catch (err) {
      if (!(err instanceof TransportError)) throw err;
      return storeUnavailable(err, copies.length);
    }
    const accepted = t.mail.code === 250 ? t.rcpts.filter((r) => r.code >= 200 && r.code < 300).length : 0;
    if (t.data?.code === 354) {
      if (accepted === 0) {
        // Pipelined DATA went through although nobody was accepted: end it empty.
        const end = conn.read();
        conn.write(['.']);
        await end.catch(() => undefined);
      } else {
        const finals = Array.from({ length: accepted }, () => conn.read());
        conn.writeMessage(message.body);
        for (const p of finals) {
          try {
            t.finals.push(await p);
          } catch (err) {
            if (!(err instanceof TransportError)) throw err;
            t.lost = err;
            break;
          }
        }
      }
    }
    return transactionResults(t, this.where);
  }

  private async command(conn: LmtpConnection, line: string): Promise<LmtpReply> {
    const p = conn.read();
    conn.write([line]);
    return p;
  }

  /** A greeting or LHLO other than expected: the store is not taking mail now; all retry. */
  private refusedAtStart(reply: LmtpReply, count: number): CopyResult[] {
    return storeUnavailable(
      new TransportError(451, '4.4.2', `Mailbox store ${this.where} is not taking mail: ${reply.text}`),
      count,
    );
  }
}
