// NAME      status: replies and errors that carry their RFC 3463 enhanced status
// DESCRIPTION  No I/O here. From where a failure arises to the wire, the NDR and the
//   tracking log, it is a value with its code and status, never a bare Error.

/** An SMTP reply: basic code, enhanced status (may be empty for 220/354/334), text lines. */
export interface Reply {
  code: number;
  status?: string;
  text: string | string[];
}

/** A failure with its status; thrown or returned by every stage instead of a bare Error. */
export class TransportError extends Error {
  constructor(
    readonly code: number,
    readonly status: string,
    text: string,
    readonly closeConnection = false,
  ) {
    super(text);
    this.name = 'TransportError';
  }
  get reply(): Reply {
    return { code: this.code, status: this.status, text: this.message };
  }
  get permanent(): boolean {
    return this.code >= 500;
  }
}

export function reply(code: number, status: string | undefined, text: string | string[]): Reply {
  return { code, status, text };
}

/** Formats a reply as wire lines (multi-line replies use "code-"). */
export function formatReply(r: Reply): string {
  const lines = Array.isArray(r.text) ? r.text : [r.text];
  const prefix = r.status ? `${r.status} ` : '';
  return lines
    .map(
      (line, i) =>
        `${r.code}${i < lines.length - 1 ? '-' : ' '}${i === 0 || r.status ? prefix : ''}${line}\r\n`,
    )
    .join('');
}
