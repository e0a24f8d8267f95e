// NAME      starttls: STARTTLS refusals and the server side of the handshake
// SYNOPSIS  starttls(session) · tlsAvailable, tlsNotYetActive (preconditions)
//           secureSocket(raw, context, note) · forgetForTls(facts)
// DESCRIPTION
//   After the 220 the session stops reading the plain socket, wraps it, and starts again:
//   input pipelined after STARTTLS is discarded, and everything learned before TLS
//   (HELO name, identity, transaction) is forgotten, so the client must say EHLO again.
// STANDARDS RFC 3207 (§4.2: the session restarts after the handshake)
// SECURITY  the TLS context is the virtual server's (self-signed when it names no
//           certificate); peers are not asked for certificates.
import type net from 'node:net';
import tls from 'node:tls';
import { reply, TransportError } from '../status.js';
import type { Precondition, SessionContext, SessionFacts } from './state.js';

export const tlsAvailable: Precondition = (session) =>
  session.server.tlsContext ? undefined : new TransportError(454, '4.7.0', 'TLS not available');

export const tlsNotYetActive: Precondition = (session) =>
  session.facts.tls ? new TransportError(503, '5.5.1', 'TLS already active') : undefined;

/** Wraps a plain socket the session has let go of; `note` logs the negotiated protocol. */
export function secureSocket(
  raw: net.Socket,
  context: tls.SecureContext,
  note: (text: string) => void,
): tls.TLSSocket {
  const secure = new tls.TLSSocket(raw, { isServer: true, secureContext: context });
  secure.on('secure', () =>
    note(`TLS negotiated: ${secure.getProtocol() ?? ''} ${secure.getCipher()?.name ?? ''}`),
  );
  return secure;
}

/** What the session knew before TLS does not carry over (RFC 3207 §4.2). */
export function forgetForTls(facts: SessionFacts): void {
  facts.tls = true;
  facts.helo = undefined;
  facts.esmtp = false;
  facts.identity = undefined;
  facts.transaction = undefined;
}

/** STARTTLS, after the table's checks (no argument, available, not active, outside a transaction). */
export function starttls(session: SessionContext): void {
  session.send(reply(220, '2.0.0', 'SMTP server ready'));
  session.startTls();
}
