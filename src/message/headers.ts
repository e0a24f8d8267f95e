// NAME      headers: facts read from a message's header section. No I/O here.
// SYNOPSIS  countReceivedHeaders(headerText) -> number of Received fields (hop count)
// DESCRIPTION
//   The header section is the text before the first blank line (CRLF or LF line ends);
//   text without a blank line is all header. A Received field is a line that starts with
//   "Received:", in any case; folded continuation lines never do.
// STANDARDS RFC 5321 §6.3 (loop detection by counting Received), RFC 5322 §2.1

const HEADER_END = /\r?\n\r?\n/;
const RECEIVED_LINE = /^Received:/gim;

export function countReceivedHeaders(headerText: string): number {
  const end = headerText.search(HEADER_END);
  const header = end === -1 ? headerText : headerText.slice(0, end);
  return (header.match(RECEIVED_LINE) ?? []).length;
}
