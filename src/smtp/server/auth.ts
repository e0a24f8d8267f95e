// NAME      auth: AUTH PLAIN and AUTH LOGIN against the directory
// SYNOPSIS  auth(session, arg) · authOffered(config, facts) · notYetAuthenticated
// DESCRIPTION
//   Either mechanism takes an initial response or prompts with 334; each response line
//   is read by the session in "auth" mode and never written to the protocol log. "*"
//   cancels. A good login sets the session's identity, with the submit and relay
//   permissions the directory resolved; a bad one counts as an error.
// DIAGNOSTICS  504 5.5.4 unknown mechanism · 538 5.7.11 outside TLS ·
//           501 5.5.2 bad base64 or PLAIN response · 501 5.7.0 cancelled · 535 5.7.8 bad credentials
// STANDARDS RFC 4954, 4616 (PLAIN); LOGIN as Exchange and Outlook speak it
// SECURITY  offered and accepted only inside TLS unless authentication.basicWithoutTls.
import { reply, TransportError } from '../status.js';
import type { VirtualServerConfig } from '../../config/schema.js';
import type { Precondition, SessionContext, SessionFacts } from './state.js';

const PROMPT_USERNAME = 'VXNlcm5hbWU6'; // "Username:"
const PROMPT_PASSWORD = 'UGFzc3dvcmQ6'; // "Password:"

type Step = (line: string) => Promise<void>;

export const notYetAuthenticated: Precondition = (session) =>
  session.facts.identity ? new TransportError(503, '5.5.1', 'Already authenticated') : undefined;

/** Whether EHLO lists AUTH. */
export function authOffered(
  config: VirtualServerConfig,
  facts: Pick<SessionFacts, 'identity' | 'tls'>,
): boolean {
  const settings = config.authentication;
  return settings.basic && !facts.identity && (facts.tls || settings.basicWithoutTls);
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
  if (!settings.basic || (mechanism !== 'PLAIN' && mechanism !== 'LOGIN')) {
    throw new TransportError(504, '5.5.4', 'Unrecognized authentication type');
  }
  if (!session.facts.tls && !settings.basicWithoutTls) {
    throw new TransportError(538, '5.7.11', 'Encryption required for requested authentication mechanism');
  }
  const cancelled = () => session.send(reply(501, '5.7.0', 'Authentication cancelled'));
  const finish = async (login: string, password: string) => {
    const identity = await session.server.directory.authenticate(login, password);
    if (!identity) {
      session.send(reply(535, '5.7.8', 'Authentication credentials invalid'));
      return session.countError();
    }
    session.facts.identity = identity;
    session.note(`authenticated as ${identity.name}`);
    session.send(reply(235, '2.7.0', 'Authentication successful.'));
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

  if (mechanism === 'PLAIN') {
    if (initial === undefined) return prompt('', plain);
    return plain(initial === '=' ? '' : initial);
  }
  if (initial !== undefined) return loginUser(initial);
  prompt(PROMPT_USERNAME, loginUser);
}
