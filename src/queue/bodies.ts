// NAME      bodies: message bytes for the stages, from memory or from the spool
// DESCRIPTION
//   Bodies of recently accepted small messages stay in memory (64 MB, oldest out first), so
//   a fast relay does not read back what it has just written; a body that waits long (a
//   retry) is read from its spool file again, which checks the trailer.
import { promises as fsp } from 'node:fs';
import { Spool } from './spool.js';
import { TransportError } from '../message/status.js';

const CACHE_BYTES = 64 * 1024 * 1024;
const CACHE_ONE_MAX = 256 * 1024;

export class BodyCache {
  private readonly bodies = new Map<string, Buffer>();
  private bytes = 0;

  remember(id: string, body: Buffer): void {
    if (body.length > CACHE_ONE_MAX) return;
    this.bodies.set(id, body);
    this.bytes += body.length;
    for (const [key, cached] of this.bodies) {
      if (this.bytes <= CACHE_BYTES) break;
      this.bodies.delete(key);
      this.bytes -= cached.length;
    }
  }

  forget(id: string): void {
    const cached = this.bodies.get(id);
    if (!cached) return;
    this.bodies.delete(id);
    this.bytes -= cached.length;
  }

  /** The message bytes as spooled (Received header included). */
  async body(message: { id: string; file: string }): Promise<Buffer> {
    const cached = this.bodies.get(message.id);
    if (cached) return cached;
    const read = await Spool.readFile(message.file);
    if (!read) throw new TransportError(451, '4.3.0', `spool file of ${message.id} is incomplete`);
    return read.message;
  }

  /** The start of the message (its header block, for hop counting), without reading it all. */
  async head(message: { id: string; file: string }, bytes = 64 * 1024): Promise<string> {
    const cached = this.bodies.get(message.id);
    if (cached) return cached.subarray(0, bytes).toString('utf8');
    const handle = await fsp.open(message.file, 'r');
    try {
      const buffer = Buffer.alloc(bytes);
      const { bytesRead } = await handle.read(buffer, 0, bytes, 0);
      return buffer.subarray(0, bytesRead).toString('utf8');
    } finally {
      await handle.close();
    }
  }
}
