// NAME      link state wire: the channel between a routing group master and its members
// DESCRIPTION
//   One JSON object a line over TCP on the link state port; a line over 16 MB or one that
//   does not parse ends the connection. A member proves it knows the organisation secret
//   with an HMAC of the master's nonce and its own name; the secret never travels.
import { createHmac } from 'node:crypto';
import type net from 'node:net';

export function proof(secret: string, nonce: string, server: string): string {
  return createHmac('sha256', secret).update(`${nonce}|${server}`).digest('hex');
}

export function sendLine(socket: net.Socket | undefined, msg: unknown): void {
  if (socket && !socket.destroyed) socket.write(`${JSON.stringify(msg)}\n`);
}

export function readLines(socket: net.Socket, onLine: (msg: Record<string, unknown>) => void): void {
  let buf = '';
  socket.setEncoding('utf8');
  socket.on('data', (d: string) => {
    buf += d;
    if (buf.length > 16 * 1024 * 1024) socket.destroy();
    let nl: number;
    while ((nl = buf.indexOf('\n')) !== -1) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      try {
        onLine(JSON.parse(line) as Record<string, unknown>);
      } catch {
        socket.destroy();
        return;
      }
    }
  });
}
