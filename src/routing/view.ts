// NAME      routing view: the organisation as routing decisions see it
// DESCRIPTION  No I/O here. Routing groups, servers and connectors with their address
//   spaces, costs, restrictions and link state, built by topology.ts from the file and
//   the link state table; and the stable choice among equals.
import { createHash } from 'node:crypto';

export interface AddressSpace {
  type: string;
  pattern: string;
  cost: number;
  /** "Allow messages to be relayed to these domains" [003:2939]; absent in the string form. */
  allowRelay?: boolean;
}

export interface ConnectorView {
  name: string;
  type: 'routingGroup' | 'smtp';
  /** Routing group the connector belongs to (its source). */
  group: string;
  cost: number;
  /** Routing group connector: the group it leads to. */
  to?: string;
  addressSpaces: AddressSpace[];
  /** SMTP connector: routing groups it connects (treated like a routing group connector). */
  connectedRoutingGroups: string[];
  scope: 'organisation' | 'routingGroup';
  /** Empty: any server of the group may send over it. */
  localBridgeheads: string[];
  remoteBridgeheads: string[];
  smartHosts: string[];
  restrictions: { enabled: boolean; acceptFrom: string[]; rejectFrom: string[] };
  /** Content restrictions: priorities, system / non-system messages, size [003:4752-4811]. */
  content?: {
    priorities: ('high' | 'normal' | 'low')[];
    systemMessages: boolean;
    nonSystemMessages: boolean;
    maxSizeKb: number | null;
  };
  state: 'up' | 'down';
}

export interface ServerView {
  name: string;
  group: string;
  up: boolean;
}

export interface Topology {
  groups: string[];
  servers: ServerView[];
  connectors: ConnectorView[];
}

export type RouteDecision =
  | {
      kind: 'connector';
      connector: ConnectorView;
      /** Address-space cost plus the path cost to reach the connector's group. */
      totalCost: number;
      /** The server to hand the message to; this server itself when it sends over the connector. */
      nextHop: string;
      path: string[];
      why: string[];
    }
  | { kind: 'none'; why: string[] }
  | { kind: 'unreachable'; why: string[] }
  | { kind: 'restricted'; why: string[] };

/** MD5s stablePick has computed (pure function of its input; bounded). */
const pickHashes = new Map<string, string>();

function pickHash(text: string): string {
  let h = pickHashes.get(text);
  if (h === undefined) {
    if (pickHashes.size >= 100_000) pickHashes.clear();
    h = createHash('md5').update(text).digest('hex');
    pickHashes.set(text, h);
  }
  return h;
}

/** Stable per-server choice among equals (hash of server and candidate). */
export function stablePick<T>(server: string, items: T[], key: (t: T) => string): T {
  let best = items[0] as T;
  let bestHash = '';
  for (const item of items) {
    const h = pickHash(`${server}|${key(item)}`);
    if (!bestHash || h < bestHash) {
      best = item;
      bestHash = h;
    }
  }
  return best;
}
