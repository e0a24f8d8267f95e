// NAME      unavailable: the directory cannot answer now
// DESCRIPTION
//   No I/O here. A directory that cannot be reached, refuses the service account or fails a
//   search is not an answer: nothing may bounce because of it. The categorizer retries the
//   message (4.4.3), the RCPT-time filter answers 451 4.4.3, SMTP AUTH answers 454 4.7.0.
import { TransportError } from '../message/status.js';

export class DirectoryUnavailableError extends TransportError {
  constructor(readonly reason: string) {
    super(451, '4.4.3', `Directory lookup failed, try again later (${reason})`);
    this.name = 'DirectoryUnavailableError';
  }
}
