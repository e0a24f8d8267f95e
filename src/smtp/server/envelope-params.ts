// NAME      envelope-params: MAIL FROM and RCPT TO parameters. No I/O here.
// SYNOPSIS  senderParameters(path, { esmtp, maxMessageSizeKb }) -> SenderParameters | TransportError
//           recipientParameters(path, smtputf8) -> RecipientParameters | TransportError
// DESCRIPTION
//   Reads the ESMTP parameters address.ts split off the path, in the order the client
//   sent them; the first bad one is the answer. MAIL knows SIZE, BODY, SMTPUTF8, RET,
//   ENVID and AUTH (RFC 4954 §5, accepted and not kept); RCPT knows NOTIFY and ORCPT.
//   A non-ASCII path needs SMTPUTF8 on MAIL, and parameters need EHLO: both are checked
//   after the parameters, so a bad parameter is reported first.
// DIAGNOSTICS  501 5.5.4 bad value · 552 5.3.4 SIZE over the limit ·
//           555 5.5.4 unknown parameter, or parameters after HELO · 553 5.6.7 UTF-8 path
// STANDARDS 1870 (SIZE), 3030 (BINARYMIME), 3461 (RET, ENVID, NOTIFY, ORCPT), 4954, 6152, 6531
import { decodeXtext, isValidXtext, type ParsedPath } from '../address.js';
import { TransportError } from '../status.js';
import type { Envelope } from '../../queue/spool.js';

export interface SenderParameters {
  body: Envelope['body'];
  smtputf8: boolean;
  ret?: 'FULL' | 'HDRS';
  envid?: string;
  declaredSize?: number;
}

export interface RecipientParameters {
  notify?: string[];
  orcpt?: string;
}

export interface SenderLimits {
  /** The client said EHLO (HELO sessions take no parameters). */
  esmtp: boolean;
  maxMessageSizeKb: number | null;
}

const NOTIFY_EVENTS = ['SUCCESS', 'FAILURE', 'DELAY'];

const invalid = (text: string) => new TransportError(501, '5.5.4', text);
const unsupported = (key: string) => new TransportError(555, '5.5.4', `Unsupported option: ${key}`);
const utf8WithoutSmtputf8 = () =>
  new TransportError(553, '5.6.7', 'Non-ASCII address requires the SMTPUTF8 parameter');

export function senderParameters(path: ParsedPath, limits: SenderLimits): SenderParameters | TransportError {
  const parsed: SenderParameters = { body: '7BIT', smtputf8: false };
  for (const [key, value] of path.params) {
    switch (key) {
      case 'SIZE': {
        if (!value || !/^\d+$/.test(value)) return invalid('Invalid SIZE parameter');
        parsed.declaredSize = Number(value);
        const limit = limits.maxMessageSizeKb;
        if (limit !== null && parsed.declaredSize > limit * 1024) {
          return new TransportError(552, '5.3.4', 'Message size exceeds fixed maximum message size');
        }
        break;
      }
      case 'BODY': {
        const body = (value ?? '').toUpperCase();
        if (body !== '7BIT' && body !== '8BITMIME' && body !== 'BINARYMIME') {
          return invalid(`Invalid BODY parameter: ${value ?? ''}`);
        }
        parsed.body = body;
        break;
      }
      case 'SMTPUTF8':
        if (value !== undefined) return invalid('SMTPUTF8 takes no value');
        parsed.smtputf8 = true;
        break;
      case 'RET': {
        const ret = (value ?? '').toUpperCase();
        if (ret !== 'FULL' && ret !== 'HDRS') return invalid('Invalid RET parameter');
        parsed.ret = ret;
        break;
      }
      case 'ENVID':
        if (!value || value.length > 100 || !isValidXtext(value)) return invalid('Invalid ENVID parameter');
        parsed.envid = decodeXtext(value);
        break;
      case 'AUTH':
        // RFC 4954 §5: the submitter's identity; kept only from a trusted session.
        break;
      default:
        return unsupported(key);
    }
  }
  if (path.utf8 && !parsed.smtputf8) return utf8WithoutSmtputf8();
  if (!limits.esmtp && path.params.size) return new TransportError(555, '5.5.4', 'Parameters need EHLO');
  return parsed;
}

/** `smtputf8`: the transaction's MAIL carried SMTPUTF8. */
export function recipientParameters(
  path: ParsedPath,
  smtputf8: boolean,
): RecipientParameters | TransportError {
  const parsed: RecipientParameters = {};
  for (const [key, value] of path.params) {
    if (key === 'NOTIFY') {
      const items = (value ?? '').toUpperCase().split(',');
      const valid =
        (items.length === 1 && items[0] === 'NEVER') ||
        (items.length > 0 && items.every((item) => NOTIFY_EVENTS.includes(item)));
      if (!valid) return invalid('Invalid NOTIFY parameter');
      parsed.notify = items;
    } else if (key === 'ORCPT') {
      if (!value || !/^[A-Za-z0-9-]+;/.test(value) || !isValidXtext(value.slice(value.indexOf(';') + 1))) {
        return invalid('Invalid ORCPT parameter');
      }
      parsed.orcpt = decodeXtext(value);
    } else {
      return unsupported(key);
    }
  }
  if (path.utf8 && !smtputf8) return utf8WithoutSmtputf8();
  return parsed;
}
