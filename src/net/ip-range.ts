// IP ranges as the guide writes them in connection control, relay and filter lists:
// a single address, address/prefix, or address/dotted-mask; IPv4 and IPv6.
import net from 'node:net';

export interface IpRange {
  family: 4 | 6;
  /** Network address as a bigint of 32 or 128 bits. */
  network: bigint;
  prefix: number;
  text: string;
}

function v4ToBig(ip: string): bigint {
  return ip.split('.').reduce((acc, octet) => (acc << 8n) | BigInt(Number(octet)), 0n);
}

function v6ToBig(ip: string): bigint {
  // Expand "::" and an embedded IPv4 tail, then read eight 16-bit groups.
  let text = ip;
  const v4tail = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (v4tail) {
    const n = v4ToBig(v4tail[1]!);
    text =
      text.slice(0, -v4tail[1]!.length) +
      ((n >> 16n) & 0xffffn).toString(16) +
      ':' +
      (n & 0xffffn).toString(16);
  }
  const [head, tail] = text.split('::') as [string, string | undefined];
  const headGroups = head ? head.split(':') : [];
  const tailGroups = tail !== undefined && tail !== '' ? tail.split(':') : [];
  const missing = 8 - headGroups.length - tailGroups.length;
  const groups = [...headGroups, ...Array<string>(tail !== undefined ? missing : 0).fill('0'), ...tailGroups];
  return groups.reduce((acc, g) => (acc << 16n) | BigInt(parseInt(g, 16)), 0n);
}

/** The address as a number plus its family; IPv4-mapped IPv6 counts as IPv4. */
export function ipToBig(ip: string): { family: 4 | 6; value: bigint } | undefined {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip);
  if (mapped) ip = mapped[1]!;
  const family = net.isIP(ip);
  if (family === 4) return { family: 4, value: v4ToBig(ip) };
  if (family === 6) return { family: 6, value: v6ToBig(ip) };
  return undefined;
}

function maskToPrefix(mask: string): number | undefined {
  const parsed = ipToBig(mask);
  if (!parsed || parsed.family !== 4) return undefined;
  const bits = parsed.value.toString(2).padStart(32, '0');
  if (!/^1*0*$/.test(bits)) return undefined;
  return bits.indexOf('0') === -1 ? 32 : bits.indexOf('0');
}

export function parseIpRange(text: string): IpRange | undefined {
  const [addr, suffix] = text.trim().split('/') as [string, string | undefined];
  const parsed = ipToBig(addr);
  if (!parsed) return undefined;
  const width = parsed.family === 4 ? 32 : 128;
  let prefix = width;
  if (suffix !== undefined) {
    if (/^\d+$/.test(suffix)) prefix = Number(suffix);
    else if (parsed.family === 4) {
      const p = maskToPrefix(suffix);
      if (p === undefined) return undefined;
      prefix = p;
    } else return undefined;
    if (prefix > width) return undefined;
  }
  const shift = BigInt(width - prefix);
  const network = (parsed.value >> shift) << shift;
  return { family: parsed.family, network, prefix, text: text.trim() };
}

export function rangeContains(range: IpRange, ip: string): boolean {
  const parsed = ipToBig(ip);
  if (!parsed || parsed.family !== range.family) return false;
  const shift = BigInt((range.family === 4 ? 32 : 128) - range.prefix);
  return parsed.value >> shift === range.network >> shift;
}

/** A compiled list; entries that do not parse are reported by config check, skipped here. */
export class IpRangeList {
  private readonly ranges: IpRange[];
  constructor(entries: readonly string[]) {
    this.ranges = entries.map(parseIpRange).filter((r): r is IpRange => r !== undefined);
  }
  contains(ip: string): boolean {
    return this.ranges.some((r) => rangeContains(r, ip));
  }
  get size(): number {
    return this.ranges.length;
  }
}
