// NAME      session-verbs: the verbs that carry no mail: EHLO/HELO (and the extension
//           list), RSET, NOOP, QUIT, HELP, VRFY, EXPN
// DESCRIPTION
//   EHLO or HELO ends any transaction and records the client's name; EHLO lists what
//   this virtual server offers now (STARTTLS until TLS is up, AUTH where it may be used,
//   the organisation verbs where configured). VRFY answers 252 unless vrfy is on, and
//   for a user hidden from address lists.
// STANDARDS RFC 5321 §4.1.1, §3.5.3 (252 for VRFY), 1869
import { reply, TransportError } from '../status.js';
import { authMechanisms } from './auth.js';
import { linkStateOffered } from './org-verbs.js';
import { resetTransaction } from './transaction.js';
import type { SessionContext } from './state.js';
import { askSinks } from './sinks.js';

export async function greet(session: SessionContext, arg: string, verb: string): Promise<void> {
  if (!arg || /\s/.test(arg)) throw new TransportError(501, '5.5.4', `Syntax: ${verb} hostname`);
  await askSinks(session, 'helo', arg);
  const { facts, server } = session;
  const config = server.config;
  void resetTransaction(facts);
  facts.helo = arg;
  facts.esmtp = verb === 'EHLO';
  const greeting = `${server.fqdn} Hello [${session.remoteAddress}]`;
  if (verb === 'HELO') return session.send(reply(250, undefined, greeting));
  const lines = [greeting, 'TURN', 'ATRN'];
  const max = config.messages.maxMessageSizeKb;
  lines.push(max === null ? 'SIZE' : `SIZE ${max * 1024}`);
  lines.push('ETRN', 'PIPELINING', 'DSN', 'ENHANCEDSTATUSCODES', '8BITMIME', 'BINARYMIME', 'CHUNKING');
  if (config.vrfy) lines.push('VRFY');
  if (server.tlsContext && !facts.tls) lines.push('STARTTLS');
  const mechanisms = authMechanisms(config, facts);
  if (mechanisms.length) lines.push(`AUTH ${mechanisms.join(' ')}`);
  lines.push('SMTPUTF8');
  if (linkStateOffered(server)) lines.push('X-LINK2STATE', 'XEXCH50');
  lines.push('OK');
  session.send(reply(250, undefined, lines));
}

export async function reset(session: SessionContext): Promise<void> {
  await resetTransaction(session.facts);
  session.send(reply(250, '2.0.0', 'Resetting'));
}

export function quit(session: SessionContext): void {
  session.send(reply(221, '2.0.0', `${session.server.fqdn} Service closing transmission channel`));
  session.close();
}

export function help(session: SessionContext): void {
  session.send(
    reply(214, '2.0.0', [
      'Commands:',
      'HELO EHLO MAIL RCPT DATA BDAT RSET NOOP QUIT HELP',
      'VRFY ETRN TURN ATRN STARTTLS AUTH',
      'End of HELP info',
    ]),
  );
}

export async function vrfy(session: SessionContext, arg: string): Promise<void> {
  const cannot = reply(252, '2.1.5', 'Cannot VRFY user, but will accept message and attempt delivery');
  if (!session.server.config.vrfy) return session.send(cannot);
  const address = arg.replace(/^<|>$/g, '');
  const entry = await session.server.directory.findByAddress(address);
  if (!entry) throw new TransportError(550, '5.1.1', `${address}... User unknown`);
  // Hidden from address lists: answered as if VRFY were off, so it is neither shown nor denied.
  if (entry.kind === 'user' && entry.user.hidden) return session.send(cannot);
  session.send(reply(250, '2.1.5', `${entry.name} <${entry.primaryAddress}>`));
}

export function noop(session: SessionContext): void {
  session.send(reply(250, '2.0.0', 'OK'));
}

export function expn(session: SessionContext): void {
  session.send(reply(502, '5.3.3', 'EXPN is not available'));
}
