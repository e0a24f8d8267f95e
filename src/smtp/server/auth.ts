// NAME      auth: AUTH SCRAM-SHA-256, PLAIN and LOGIN against the directory
// SYNOPSIS  auth(session, arg) · authMechanisms(config, facts) · notYetAuthenticated
// DESCRIPTION
//   Each mechanism takes an initial response or prompts with 334; each response line
//   is read by the session in "auth" mode and never written to the protocol log. "*"
//   cancels. A good login sets the session's identity, with the submit and relay
//   permissions the directory resolved; a bad one counts as an error.
//   SCRAM-SHA-256 (authentication.integrated) checks the client's proof against the
//   user's stored verifier (../../directory/scram.ts); an unknown user gets a decoy salt
//   and fails at the proof like a wrong password. The server signature goes out as a
//   334 challenge, answered by an empty line, then 235 (RFC 4954 §4).
// DIAGNOSTICS  504 5.5.4 unknown or switched-off mechanism · 538 5.7.11 outside TLS ·
//           501 5.5.2 bad base64 or PLAIN response · 501 5.7.0 cancelled · 535 5.7.8 bad
//           credentials; for SCRAM the reply names the RFC 5802 error (e.g.
//           channel-binding-not-supported for a client that demands -PLUS)
// STANDARDS RFC 4954, 4616 (PLAIN), 5802 and 7677 (SCRAM-SHA-256); LOGIN as Exchange
//           and Outlook speak it
// SECURITY  offered and accepted only inside TLS unless authentication.basicWithoutTls.
import { reply, TransportError } from '../status.js';
import type { VirtualServerConfig } from '../../config/schema.js';
import type { AuthenticatedIdentity } from '../../directory/directory.js';
import type { Precondition, SessionContext, SessionFacts } from './state.js';
import {
  checkProof,
  decoyVerifier,
  isFailure,
  readClientFinal,
  readClientFirst,
  SCRAM_MECHANISM,
  serverFirst,
  serverNonce,
  type ScramFailure,
} from '../../directory/scram.js';

const PROMPT_USERNAME = 'VXNlcm5hbWU6'; // "Username:"
const PROMPT_PASSWORD = 'UGFzc3dvcmQ6'; // "Password:"

type Step = (line: string) => Promise<void>;

export const notYetAuthenticated: Precondition = (session) =>
  session.facts.identity ? new TransportError(503, '5.5.1', 'Already authenticated') : undefined;

/** The mechanisms this virtual server accepts, strongest first (whatever the session). */
function mechanismsOf(config: VirtualServerConfig): string[] {
  const settings = config.authentication;
  return [...(settings.integrated ? [SCRAM_MECHANISM] : []), ...(settings.basic ? ['LOGIN', 'PLAIN'] : [])];
}

/** What EHLO lists after AUTH now; empty: no AUTH line. */
export function authMechanisms(
  config: VirtualServerConfig,
  facts: Pick<SessionFacts, 'identity' | 'tls'>,
): string[] {
  const open = !facts.identity && (facts.tls || config.authentication.basicWithoutTls);
  return open ? mechanismsOf(config) : [];
}

/** undefined: the client cancelled with "*". */
function decode(line: string): string | undefined {
  if (line === '*') return undefined;
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(line)) throw new TransportError(501, '5.5.2', 'Cannot decode response');
  return Buffer.from(line, 'base64').toString('utf8');
}

/** AUTH, after the table's checks (hello, not yet authenticated, outside a transaction). */
export async function auth(session: SessionContext, arg: string): Promise<void> {
  const [requested = '', initial] = arg.split(/\s+/);
  const mechanism = requested.toUpperCase();
  const settings = session.server.config.authentication;
  if (!mechanismsOf(session.server.config).includes(mechanism)) {
    throw new TransportError(504, '5.5.4', 'Unrecognized authentication type');
  }
  if (!session.facts.tls && !settings.basicWithoutTls) {
    throw new TransportError(538, '5.7.11', 'Encryption required for requested authentication mechanism');
  }
  const cancelled = () => session.send(reply(501, '5.7.0', 'Authentication cancelled'));
  const refuse = (why?: string) => {
    session.send(reply(535, '5.7.8', `Authentication credentials invalid${why ? ` (${why})` : ''}`));
    session.countError();
  };
  const succeed = (identity: AuthenticatedIdentity) => {
    session.facts.identity = identity;
    session.note(`authenticated as ${identity.name}`);
    session.send(reply(235, '2.7.0', 'Authentication successful.'));
  };
  const finish = async (login: string, password: string) => {
    const identity = await session.server.directory.authenticate(login, password);
    return identity ? succeed(identity) : refuse();
  };
  // A refusal of a response is a reply, not a counted error, and the exchange ends.
  const guarded =
    (step: Step): Step =>
    async (line) => {
      try {
        await step(line);
      } catch (err) {
        if (err instanceof TransportError) session.send(err.reply);
        else throw err;
      }
    };
  const prompt = (text: string, next: Step) => {
    session.readAuthResponse(guarded(next));
    session.send(reply(334, undefined, text));
  };

  const plain: Step = async (line) => {
    const decoded = decode(line);
    if (decoded === undefined) return cancelled();
    const parts = decoded.split('\0');
    if (parts.length !== 3) throw new TransportError(501, '5.5.2', 'Invalid PLAIN response');
    await finish(parts[1]!, parts[2]!);
  };
  const loginPassword =
    (user: string): Step =>
    async (line) => {
      const password = decode(line);
      if (password === undefined) return cancelled();
      await finish(user, password);
    };
  const loginUser: Step = async (line) => {
    const user = decode(line);
    if (user === undefined) return cancelled();
    prompt(PROMPT_PASSWORD, loginPassword(user));
  };

  const scramFirst: Step = async (line) => {
    const text = decode(line);
    if (text === undefined) return cancelled();
    const first = readClientFirst(text);
    if (isFailure(first)) return refuse(first.failure);
    const credentials = await session.server.directory.scramCredentials(first.username);
    // An authorisation identity other than the user's own is not supported.
    if (first.authzid && first.authzid.toLowerCase() !== first.username.toLowerCase()) {
      return refuse('other-error');
    }
    const verifier = credentials?.verifier ?? decoyVerifier(first.username);
    const challenge = serverFirst(first, verifier, serverNonce());
    const scramFinal: Step = async (finalLine) => {
      const finalText = decode(finalLine);
      if (finalText === undefined) return cancelled();
      const final = readClientFinal(finalText, first, challenge);
      const checked: { serverFinal: string } | ScramFailure = isFailure(final)
        ? final
        : checkProof(first, challenge, final, verifier);
      if (isFailure(checked) || !credentials) {
        return refuse(isFailure(checked) ? checked.failure : 'invalid-proof');
      }
      prompt(Buffer.from(checked.serverFinal).toString('base64'), async (ack) => {
        if (ack === '*') return cancelled();
        if (ack !== '' && ack !== '=') throw new TransportError(501, '5.5.2', 'Expected an empty response');
        succeed(credentials.identity);
      });
    };
    prompt(Buffer.from(challenge).toString('base64'), scramFinal);
  };

  if (mechanism === SCRAM_MECHANISM) {
    if (initial === undefined) return prompt('', scramFirst);
    return scramFirst(initial);
  }
  if (mechanism === 'PLAIN') {
    if (initial === undefined) return prompt('', plain);
    return plain(initial === '=' ? '' : initial);
  }
  if (initial !== undefined) return loginUser(initial);
  prompt(PROMPT_USERNAME, loginUser);
}
