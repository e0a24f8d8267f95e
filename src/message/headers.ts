// NAME      header facts: what the stages read from a message's header block
// DESCRIPTION  No I/O here. The hop count is the number of Received fields in the header
//   block (the text before the first empty line), as RFC 5321 §6.3 counts loops.

/** The header block of a message's start (up to the first empty line). */
export function headerBlock(text: string): string {
  const end = text.search(/\r?\n\r?\n/);
  return end === -1 ? text : text.slice(0, end);
}

/** Received header fields in the header block of `text` (the message's start). */
export function countReceivedHeaders(text: string): number {
  return (headerBlock(text).match(/^Received:/gim) ?? []).length;
}
