// Reads the messages a server holds in its spool (every queued message has one file there).
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { Spool } from '../../src/queue/spool.js';

export async function spooledMessages(dataDir: string) {
  const dir = path.join(dataDir, 'spool');
  let names: string[] = [];
  try {
    names = readdirSync(dir).filter((n) => n.endsWith('.msg'));
  } catch {
    return [];
  }
  const out = [];
  for (const n of names) {
    const read = await Spool.readFile(path.join(dir, n));
    if (read) out.push({ file: n, ...read });
  }
  return out;
}
