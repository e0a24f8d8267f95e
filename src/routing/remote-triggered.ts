// NAME      remote triggered delivery: ETRN, ATRN and TURN release policy
// DESCRIPTION
//   Connectors with queueForRemoteTriggeredDelivery hold mail for their address spaces
//   until the remote side asks [003:534-539]. ETRN (RFC 1985) opens the connectors whose
//   address spaces cover the node and makes their held mail due now. ATRN / TURN (RFC
//   2645) turn the client's own connection around and deliver the held mail for the
//   domains asked (or every domain of the connectors the account may dequeue) over it.
//   Accounts listed on a connector are the only ones it serves.
// SECURITY  ATRN/TURN require an authenticated identity (the session checks AUTH first).
import type { Socket } from 'node:net';
import type { OrganisationConfig } from '../config/schema.js';
import { reply, type Reply } from '../message/status.js';
import { addressInDomain } from '../message/domains.js';
import type { QueueCore } from '../queue/core.js';
import { QUEUE, STAGE } from '../queue/names.js';

export interface TurnResult {
  reply: Reply;
  /** Set when the connection turns around: delivers the held mail over it. */
  reverse?: (socket: Socket) => Promise<void>;
}

/** The delivery side of ATRN/TURN (delivery/remote/worker.ts). */
export interface HeldDelivery {
  heldFor(queues: string[], domains: string[]): number;
  deliverOverConnection(socket: Socket, queues: string[], domains: string[]): Promise<void>;
}

export interface RemoteTriggeredOptions {
  organisation: () => OrganisationConfig;
  /** Opens the connectors holding mail for `domain` (router.releaseRemoteTriggered). */
  releaseConnectors: (domain: string) => string[];
  core: Pick<QueueCore, 'store' | 'wake'>;
  delivery: HeldDelivery;
}

export class RemoteTriggered {
  constructor(private readonly options: RemoteTriggeredOptions) {}

  /** ETRN (RFC 1985): release mail held for remote triggered delivery to `node`. */
  etrn(node: string): Reply {
    const domain = node.replace(/^[@#]/, '').toLowerCase();
    if (node.startsWith('#')) return reply(458, '4.3.0', `Unable to queue messages for node ${node}`);
    const connectors = this.options.releaseConnectors(domain);
    if (!connectors.length) return reply(459, '4.7.0', `Node ${domain} not allowed: no queue is held for it`);
    const { store } = this.options.core;
    const inDomain = (address: string) => addressInDomain(address, domain);
    const held = store.holds.heldRows(connectors).filter((r) => inDomain(r.address));
    store.holds.releaseHolds(held.map((r) => r.id));
    // Mail not routed yet will meet the released connector when it is.
    const pending = store.holds.countOpenFor([QUEUE.categorizer, QUEUE.routing], inDomain);
    if (held.length) this.options.core.wake(STAGE.routing);
    if (!held.length && !pending) return reply(251, '2.0.0', `No messages waiting for node ${domain}`);
    return reply(250, '2.0.0', `Queuing for node ${domain} started`);
  }

  /** ATRN / TURN (RFC 2645) for an authenticated account. */
  atrn(arg: string, identity: { name: string; primaryAddress: string }): TurnResult {
    const ids = [identity.name, identity.primaryAddress].filter(Boolean).map((x) => x.toLowerCase());
    const connectors = this.options
      .organisation()
      .routingGroups.flatMap((g) => g.connectors)
      .filter((c): c is Extract<typeof c, { type: 'smtp' }> => c.type === 'smtp')
      .filter((c) => c.queueForRemoteTriggeredDelivery.enabled);
    const mayDequeue = connectors.filter((c) => {
      const accounts = c.queueForRemoteTriggeredDelivery.accounts.map((a) => a.toLowerCase());
      return !accounts.length || accounts.some((a) => ids.includes(a));
    });
    const spaces = (c: (typeof connectors)[number]) =>
      c.addressSpaces.map((a) =>
        (typeof a === 'string' ? a.split(':')[1]! : a.pattern).replace(/^\*\.?/, ''),
      );
    const asked = arg
      .split(',')
      .map((d) => d.trim().toLowerCase())
      .filter(Boolean);
    const domains = asked.length ? asked : [...new Set(mayDequeue.flatMap(spaces))].filter(Boolean);
    const serving = mayDequeue.filter((c) =>
      domains.some((d) => spaces(c).some((s) => d === s || d.endsWith(`.${s}`) || s === '')),
    );
    if (asked.length && !serving.length && connectors.length > mayDequeue.length) {
      return {
        reply: reply(530, '5.7.1', 'Access denied: this account may not dequeue mail for those domains'),
      };
    }
    const queues = serving.map((c) => c.name);
    if (!this.options.delivery.heldFor(queues, domains))
      return { reply: reply(453, '4.3.0', 'You have no mail') };
    return {
      reply: reply(250, '2.0.0', 'OK now reversing the connection'),
      reverse: (socket) => this.options.delivery.deliverOverConnection(socket, queues, domains),
    };
  }
}
