// NAME      header-scan: the header section of a message as it streams in. No I/O here.
// SYNOPSIS  scan.feed(chunk) ... scan.done · scan.text() · headerFields(text)
// DESCRIPTION
//   Keeps the message's first bytes until the blank line that ends the header section
//   (CRLF or LF), or 256 KiB without one, so the hop count and the header facts can be
//   read before the message is committed, and before a large one spills to disk.
// BUGS      a header section over 256 KiB is read only that far.

const MAX_HEADER_BYTES = 256 * 1024;

export interface HeaderField {
  name: string;
  value: string;
}

export class HeaderScan {
  private parts: Buffer[] = [];
  private length = 0;
  done = false;

  feed(chunk: Buffer): void {
    if (this.done) return;
    this.parts.push(chunk);
    this.length += chunk.length;
    const joined = this.parts.length > 1 ? Buffer.concat(this.parts) : chunk;
    this.parts = [joined];
    if (joined.indexOf('\r\n\r\n') !== -1 || joined.indexOf('\n\n') !== -1 || joined.indexOf('\n') === 0) {
      this.done = true;
    } else if (this.length > MAX_HEADER_BYTES) this.done = true;
  }

  /** The header section, without the blank line that ends it. */
  text(): string {
    const all = Buffer.concat(this.parts).toString('utf8');
    const end = all.search(/\r?\n\r?\n/);
    return end === -1 ? all : all.slice(0, end);
  }
}

/** Unfolded header fields of a header section, in order. */
export function headerFields(headerText: string): HeaderField[] {
  const unfolded = headerText.replace(/\r?\n[ \t]/g, ' ');
  return unfolded
    .split(/\r?\n/)
    .map((line) => {
      const colon = line.indexOf(':');
      return colon > 0
        ? { name: line.slice(0, colon).trim(), value: line.slice(colon + 1).trim() }
        : undefined;
    })
    .filter((field): field is HeaderField => field !== undefined);
}
