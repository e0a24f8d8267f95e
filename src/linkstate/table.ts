// The link state table (OrgInfo) [003:8754-8975], pure. Each routing group's part is kept
// by that group's routing group master and carries its own version major.minor.user:
// major for a topology (configuration) change, minor for an up/down change, user for
// membership and service start/stop. Servers compare the MD5 digest of the canonical table
// and merge per routing group, the higher version winning, so every server converges on
// the same table [003:9040-9230].
import { createHash } from 'node:crypto';

export interface Version {
  major: number;
  minor: number;
  user: number;
}

export interface GroupState {
  name: string;
  master: string;
  version: Version;
  /** Digest of the configuration the master built this part from. */
  config: string;
  servers: Record<string, 'up' | 'down'>;
  connectors: Record<string, 'up' | 'down'>;
}

export interface LinkStateTable {
  groups: Record<string, GroupState>;
}

export function compareVersions(a: Version, b: Version): number {
  return a.major - b.major || a.minor - b.minor || a.user - b.user;
}

export function versionText(v: Version): string {
  return `${v.major}.${v.minor}.${v.user}`;
}

export function canonical(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`;
  if (value && typeof value === 'object') {
    return `{${Object.keys(value)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonical((value as Record<string, unknown>)[k])}`)
      .join(',')}}`;
  }
  return JSON.stringify(value);
}

export function digest(t: LinkStateTable): string {
  return createHash('md5').update(canonical(t)).digest('hex');
}

/** Merges `incoming` into `mine`: per routing group, the higher version wins. */
export function mergeTables(
  mine: LinkStateTable,
  incoming: LinkStateTable,
  keepOwn?: string,
): { table: LinkStateTable; changed: string[] } {
  const groups = { ...mine.groups };
  const changed: string[] = [];
  for (const [name, theirs] of Object.entries(incoming.groups)) {
    // A master is the authority for its own group; nobody overrides it from outside.
    if (name === keepOwn) continue;
    const ours = groups[name];
    if (!ours || compareVersions(theirs.version, ours.version) > 0) {
      groups[name] = theirs;
      changed.push(name);
    }
  }
  return { table: { groups }, changed };
}

/** A master's state change: minor for up/down, user for membership / start-stop. */
export function bump(g: GroupState, kind: 'major' | 'minor' | 'user'): GroupState {
  const v = g.version;
  const version =
    kind === 'major'
      ? { major: v.major + 1, minor: 0, user: 0 }
      : kind === 'minor'
        ? { ...v, minor: v.minor + 1 }
        : { ...v, user: v.user + 1 };
  return { ...g, version };
}

/** Splits a table into chunks for X-LINK2STATE (FIRST / NEXT / LAST CHUNK). */
export function toChunks(t: LinkStateTable, size = 400): string[] {
  const b64 = Buffer.from(JSON.stringify(t), 'utf8').toString('base64');
  const out: string[] = [];
  for (let i = 0; i < b64.length; i += size) out.push(b64.slice(i, i + size));
  return out.length ? out : [''];
}

export function fromChunks(chunks: string[]): LinkStateTable | undefined {
  try {
    const t = JSON.parse(Buffer.from(chunks.join(''), 'base64').toString('utf8')) as LinkStateTable;
    if (!t || typeof t !== 'object' || typeof t.groups !== 'object') return undefined;
    for (const g of Object.values(t.groups)) {
      if (typeof g.name !== 'string' || typeof g.version?.major !== 'number') return undefined;
    }
    return t;
  } catch {
    return undefined;
  }
}

/** A server's state as the table holds it; a server it does not know is up. */
export function serverUpIn(t: LinkStateTable, name: string): boolean {
  for (const g of Object.values(t.groups)) {
    const s = g.servers[name];
    if (s) return s === 'up';
  }
  return true;
}

/** A connector's state as its routing group's master published it, if it did. */
export function connectorStateIn(t: LinkStateTable, name: string): 'up' | 'down' | undefined {
  for (const g of Object.values(t.groups)) {
    const s = g.connectors[name];
    if (s) return s;
  }
  return undefined;
}
