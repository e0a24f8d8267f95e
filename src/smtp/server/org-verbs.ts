// NAME      org-verbs: X-LINK2STATE and XEXCH50, spoken between servers of the organisation
// SYNOPSIS  xLink2State(session, arg) · xexch50(session, arg) · isOrganisationServer(identity, server)
// DESCRIPTION
//   Both exist only when virtualServers[].exchangeVerbs is on (X-LINK2STATE also needs
//   link state, an organisation of more than one server); otherwise they are unknown
//   verbs. An organisation server is a session authenticated with the organisation
//   secret under a server's name.
//   X-LINK2STATE, after EHLO and AUTH and outside a transaction, hands each line to the
//   link state conversation of this session [003:9040-9230].
//   XEXCH50 <size> <flags>, after RCPT and before DATA, reads <size> bytes of message
//   properties. From an organisation server they carry the submitter's authenticated
//   identity and whether its anonymous sender is resolved (JSON { authenticatedAs,
//   resolveAnonymousEmail }); from anyone else (only if xexch50FromAnonymous)
//   they are read and ignored, as Exchange drops properties it cannot read.
// DIAGNOSTICS  504 5.7.4 Need to authenticate first · 501 5.5.4 syntax, or over 1 MiB
// SEE ALSO  linkstate/README.md
import { reply, TransportError, type Reply } from '../status.js';
import type { AuthenticatedIdentity } from '../../directory/directory.js';
import type { SessionHost } from './session-host.js';
import type { ByteReader, Input, Precondition, SessionContext } from './state.js';

const MAX_PROPERTIES = 1024 * 1024;

/** Is this identity a server of the organisation (organisation secret)? */
export function isOrganisationServer(
  identity: AuthenticatedIdentity | undefined,
  server: Pick<SessionHost, 'isServer'>,
): boolean {
  return identity !== undefined && identity.primaryAddress === '' && server.isServer(identity.name);
}

export const linkStateOffered = (server: SessionHost): boolean =>
  server.linkState !== undefined && server.config.exchangeVerbs;

export const exchangeVerbsOffered = (server: SessionHost): boolean => server.config.exchangeVerbs;

const needAuthentication = () => new TransportError(504, '5.7.4', 'Need to authenticate first');

export const organisationServer: Precondition = (session) =>
  isOrganisationServer(session.facts.identity, session.server) ? undefined : needAuthentication();

export const organisationServerOrAnyone: Precondition = (session) =>
  isOrganisationServer(session.facts.identity, session.server) || session.server.config.xexch50FromAnonymous
    ? undefined
    : needAuthentication();

/** One link state conversation per session, begun at its first X-LINK2STATE. */
const conversations = new WeakMap<SessionContext, (args: string) => Reply>();

export function xLink2State(session: SessionContext, arg: string): void {
  let conversation = conversations.get(session);
  if (!conversation) {
    conversation = session.server.linkState!.session();
    conversations.set(session, conversation);
  }
  session.send(conversation(arg));
}

export function xexch50(session: SessionContext, arg: string): void {
  const match = /^(\d+)\s+\d+$/.exec(arg);
  if (!match || Number(match[1]) > MAX_PROPERTIES) {
    throw new TransportError(501, '5.5.4', 'Syntax: XEXCH50 size flags');
  }
  const transaction = session.facts.transaction;
  if (!transaction || transaction.recipients.length === 0 || transaction.writer) {
    throw new TransportError(503, '5.5.1', 'XEXCH50 goes after RCPT and before DATA');
  }
  session.readBytes(new PropertiesReader(session, Number(match[1])), 'unchanged');
  session.send(reply(354, undefined, 'Send binary data'));
}

class PropertiesReader implements ByteReader {
  private parts: Buffer[] = [];

  constructor(
    private readonly session: SessionContext,
    private remaining: number,
  ) {}

  async read(input: Input): Promise<boolean> {
    if (this.remaining > 0) {
      if (input.pending.length === 0) return false;
      const take = Math.min(this.remaining, input.pending.length);
      this.parts.push(input.pending.subarray(0, take));
      input.pending = input.pending.subarray(take);
      this.remaining -= take;
      if (this.remaining > 0) return false;
    }
    this.session.readCommands('unchanged');
    const { facts, server } = this.session;
    if (isOrganisationServer(facts.identity, server) && facts.transaction) {
      try {
        const properties = JSON.parse(Buffer.concat(this.parts).toString('utf8')) as {
          authenticatedAs?: unknown;
          resolveAnonymousEmail?: unknown;
        };
        if (typeof properties.authenticatedAs === 'string') {
          facts.transaction.relayedIdentity = properties.authenticatedAs;
        }
        if (properties.resolveAnonymousEmail === true) facts.transaction.relayedResolveAnonymous = true;
      } catch {
        // Properties we cannot read are dropped, as Exchange drops foreign ones.
      }
    }
    this.session.send(reply(250, '2.0.0', 'XEXCH50 OK'));
    return true;
  }
}
