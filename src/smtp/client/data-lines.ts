// NAME      data lines: a message as it goes over DATA
// SYNOPSIS  dotStuff(message) · crlfLines(message)
// DESCRIPTION
//   No I/O here. Over DATA every line ends in CRLF and a line that starts with "." gets
//   another one (RFC 5321 §2.3.8, §4.5.2). The SMTP client and the LMTP store driver use it.
// STANDARDS RFC 5321 §2.3.8, §4.5.2

/**
 * Lines end in CRLF over DATA (RFC 5321 §2.3.8): a message taken in over BDAT may hold bare
 * LFs, which a strict next hop (Postfix 3.9, Bridgehead itself) refuses over DATA. Each bare
 * LF becomes CRLF; a message without one is returned as it is.
 */
export function crlfLines(message: Buffer): Buffer {
  let i = message.indexOf(0x0a);
  while (i !== -1 && i > 0 && message[i - 1] === 0x0d) i = message.indexOf(0x0a, i + 1);
  if (i === -1) return message;
  const parts: Buffer[] = [];
  let start = 0;
  for (; i !== -1; i = message.indexOf(0x0a, i + 1)) {
    if (i > 0 && message[i - 1] === 0x0d) continue;
    parts.push(message.subarray(start, i), Buffer.from('\r\n'));
    start = i + 1;
  }
  parts.push(message.subarray(start));
  return Buffer.concat(parts);
}

/** Dot-stuffs a message for DATA (its lines made CRLF first) and makes sure it ends with CRLF. */
export function dotStuff(raw: Buffer): Buffer {
  const message = crlfLines(raw);
  const parts: Buffer[] = [];
  let start = 0;
  if (message[0] === 0x2e) {
    parts.push(Buffer.from('.'));
  }
  let i = message.indexOf('\n.', 0);
  while (i !== -1) {
    parts.push(message.subarray(start, i + 1), Buffer.from('.'));
    start = i + 1;
    i = message.indexOf('\n.', start);
  }
  parts.push(message.subarray(start));
  const stuffed = Buffer.concat(parts);
  return stuffed.length >= 2 && stuffed[stuffed.length - 2] === 0x0d && stuffed[stuffed.length - 1] === 0x0a
    ? stuffed
    : Buffer.concat([stuffed, Buffer.from('\r\n')]);
}
