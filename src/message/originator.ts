// NAME      originator: the From and Sender mailboxes of a message, and their display names
// SYNOPSIS  originatorAddresses(message) · presentOriginators(message, names)
// DESCRIPTION
//   No I/O here. presentOriginators() rewrites the display names of the From and Sender
//   mailboxes whose address `names` lists: a string becomes the display name, null leaves
//   the bare address. Every other byte of the message is kept as it was: the fields are
//   found in the header section as bytes and only a rewritten field is re-encoded (one
//   unfolded line; a non-ASCII name as an RFC 2047 encoded word).
// STANDARDS RFC 5322 §3.4 (mailbox, mailbox-list), §3.6.2 (From, Sender); RFC 2047
// BUGS      a field with group syntax ("name: a, b;") or an unbalanced quote or bracket
//           is left as it is.

const FIELDS = /^(from|sender)$/i;
const MAX_HEADER = 256 * 1024;

interface Field {
  name: string;
  start: number;
  end: number;
  value: string;
}

/** The From and Sender fields of the header section, as byte ranges (latin1 = bytes). */
function originatorFields(message: Buffer): Field[] {
  const head = message.subarray(0, Math.min(message.length, MAX_HEADER)).toString('latin1');
  const fields: Field[] = [];
  let at = 0;
  while (at < head.length) {
    const lineEnd = head.indexOf('\n', at);
    if (lineEnd === -1 || head[at] === '\r' || head[at] === '\n') break; // end of the header section
    let end = lineEnd + 1;
    while (end < head.length && (head[end] === ' ' || head[end] === '\t')) {
      const next = head.indexOf('\n', end);
      if (next === -1) break;
      end = next + 1;
    }
    const colon = head.indexOf(':', at);
    const name = colon !== -1 && colon < lineEnd ? head.slice(at, colon) : '';
    if (FIELDS.test(name)) {
      const raw = message.subarray(colon + 1, end).toString('utf8');
      fields.push({ name, start: at, end, value: raw.replace(/\r?\n[ \t]/g, ' ').trim() });
    }
    at = end;
  }
  return fields;
}

interface Mailbox {
  text: string;
  address: string;
}

/** Splits a mailbox-list at top-level commas; undefined when it is not one we can rewrite. */
function mailboxes(value: string): Mailbox[] | undefined {
  const parts: string[] = [];
  let depth = 0;
  let quoted = false;
  let angle = false;
  let current = '';
  for (let i = 0; i < value.length; i++) {
    const ch = value[i]!;
    if (quoted) {
      if (ch === '\\') current += value[i++] ?? '';
      else if (ch === '"') quoted = false;
    } else if (depth > 0) {
      if (ch === '\\') current += value[i++] ?? '';
      else if (ch === '(') depth++;
      else if (ch === ')') depth--;
    } else if (ch === '"') quoted = true;
    else if (ch === '(') depth++;
    else if (ch === '<') angle = true;
    else if (ch === '>') angle = false;
    else if (ch === ':' && !angle)
      return undefined; // group syntax
    else if (ch === ',' && !angle) {
      parts.push(current);
      current = '';
      continue;
    }
    current += ch;
  }
  if (quoted || depth !== 0 || angle) return undefined;
  parts.push(current);
  const result: Mailbox[] = [];
  for (const part of parts.map((p) => p.trim()).filter(Boolean)) {
    const inAngle = /<([^<>]*)>\s*(?:\([^]*\))?\s*$/.exec(part);
    const spec = inAngle ? inAngle[1]!.replace(/^@[^:]*:/, '') : part.replace(/\([^()]*\)/g, '');
    const address = spec.trim();
    if (!/^[^\s@<>]+@[^\s@<>]+$/.test(address)) return undefined;
    result.push({ text: part, address });
  }
  return result;
}

/** The addresses of the From and Sender mailboxes, lower-cased, each once. */
export function originatorAddresses(message: Buffer): string[] {
  const found = new Set<string>();
  for (const field of originatorFields(message)) {
    for (const m of mailboxes(field.value) ?? []) found.add(m.address.toLowerCase());
  }
  return [...found];
}

/** A display name as a phrase: atoms as they are, else quoted, non-ASCII as an encoded word. */
export function displayPhrase(name: string): string {
  if (/[^\x20-\x7e]/.test(name)) return `=?UTF-8?B?${Buffer.from(name, 'utf8').toString('base64')}?=`;
  if (/^[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~ ]+$/.test(name) && name.trim() === name) return name;
  return `"${name.replace(/(["\\])/g, '\\$1')}"`;
}

/** `names`: lower-cased address -> display name, or null for the bare address. */
export function presentOriginators(message: Buffer, names: ReadonlyMap<string, string | null>): Buffer {
  const pieces: Buffer[] = [];
  let copied = 0;
  for (const field of originatorFields(message)) {
    const list = mailboxes(field.value);
    if (!list || !list.some((m) => names.has(m.address.toLowerCase()))) continue;
    const shown = list.map((m) => {
      const name = names.get(m.address.toLowerCase());
      if (name === undefined) return m.text;
      return name === null || name === '' ? m.address : `${displayPhrase(name)} <${m.address}>`;
    });
    const eol = message.subarray(field.start, field.end).toString('latin1').endsWith('\r\n') ? '\r\n' : '\n';
    pieces.push(
      message.subarray(copied, field.start),
      Buffer.from(`${field.name}: ${shown.join(', ')}${eol}`, 'utf8'),
    );
    copied = field.end;
  }
  if (!pieces.length) return message;
  pieces.push(message.subarray(copied));
  return Buffer.concat(pieces);
}
