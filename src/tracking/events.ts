// NAME      tracking events: one typed constructor per event a stage records
// DESCRIPTION
//   No I/O here. Stages build their message tracking events with these instead of object
//   literals, so an event's fields (source, recipients, statuses) are spelt one way.
import type { TrackingEvent } from './tracking.js';

/** The facts of a queued message most events carry. */
export interface TrackedMessage {
  id: string;
  messageId?: string;
  sender?: string;
  subject?: string;
  size?: number;
}

/** The tracked facts of a queued message, from its row and its envelope. */
export function trackedMessage(
  m: { id: string; sender: string; size: number },
  envelope: { messageId?: string; subject?: string },
): TrackedMessage {
  return {
    id: m.id,
    messageId: envelope.messageId,
    sender: m.sender,
    subject: envelope.subject,
    size: m.size,
  };
}

const base = (m: TrackedMessage) => ({
  internalMessageId: m.id,
  ...(m.messageId !== undefined ? { messageId: m.messageId } : {}),
  ...(m.sender !== undefined ? { sender: m.sender } : {}),
});

export const trackingEvent = {
  /** SMTP took the message (before the 250). */
  received(
    m: TrackedMessage & { recipients: string[]; clientIp: string; connectorId: string; originating: boolean },
  ): TrackingEvent {
    return {
      event: 'RECEIVE',
      source: 'SMTP',
      ...base(m),
      recipients: m.recipients,
      clientIp: m.clientIp,
      connectorId: m.connectorId,
      totalBytes: m.size,
      subject: m.subject,
      returnPath: m.sender,
      directionality: m.originating ? 'Originating' : 'Incoming',
    };
  },
  /** The message entered the queues. */
  submitted(m: TrackedMessage & { recipients: string[] }): TrackingEvent {
    return {
      event: 'SUBMIT',
      source: 'STOREDRIVER',
      ...base(m),
      recipients: m.recipients,
      totalBytes: m.size,
      subject: m.subject,
      returnPath: m.sender,
    };
  },
  /** A categorizer decision (expansion, redirection, ...). */
  categorized(
    m: TrackedMessage,
    e: { event: TrackingEvent['event']; recipient: string; related?: string; info?: string },
  ): TrackingEvent {
    return {
      event: e.event,
      source: 'CATEGORIZER',
      ...base(m),
      recipients: [e.recipient],
      relatedRecipientAddress: e.related,
      messageInfo: e.info,
    };
  },
  /** Delivered to a mailbox (or found already there after a crash). */
  delivered(
    m: TrackedMessage,
    r: { address: string; original: string; store: string; duplicate: boolean },
  ): TrackingEvent {
    return {
      event: r.duplicate ? 'DUPLICATEDELIVER' : 'DELIVER',
      source: 'STOREDRIVER',
      ...base(m),
      recipients: [r.address],
      recipientStatus: ['250 2.6.0'],
      totalBytes: m.size,
      subject: m.subject,
      relatedRecipientAddress: r.original !== r.address ? r.original : undefined,
      messageInfo: r.store,
    };
  },
  /** Handed to the next hop. */
  sent(
    m: TrackedMessage,
    recipients: string[],
    remoteMta: string,
    queue: string,
    /** More than one: the next hop's recipient limit split the message (452). */
    transactions = 1,
  ): TrackingEvent {
    return {
      event: 'SEND',
      source: 'SMTP',
      ...base(m),
      recipients,
      serverIp: remoteMta,
      connectorId: queue,
      totalBytes: m.size,
      subject: m.subject,
      ...(transactions > 1
        ? { messageInfo: `${transactions} transactions (the next hop's recipient limit: 452)` }
        : {}),
    };
  },
  deferred(m: TrackedMessage, recipients: string[], source: string): TrackingEvent {
    return { event: 'DEFER', source, ...base(m), recipients };
  },
  failed(m: TrackedMessage, failures: { address: string; status: string }[], source: string): TrackingEvent {
    return {
      event: 'FAIL',
      source,
      ...base(m),
      recipients: failures.map((f) => f.address),
      recipientStatus: failures.map((f) => f.status),
    };
  },
  /** An administrator deleted the message; with NDR each recipient failed with 5.0.0. */
  deletedByAdministrator(m: TrackedMessage, recipients: string[], withNdr: boolean): TrackingEvent {
    return {
      event: 'FAIL',
      source: 'ADMIN',
      ...base(m),
      recipients,
      ...(withNdr ? { recipientStatus: recipients.map(() => '5.0.0') } : {}),
      messageInfo: withNdr ? 'deleted by administrator with NDR' : 'deleted by administrator without NDR',
    };
  },
  /** A DSN was generated for `original`. */
  dsn(
    dsn: TrackedMessage & { recipients: string[] },
    original: { reference: string; recipients: string[]; statuses: string[]; actions: string[] },
  ): TrackingEvent {
    return {
      event: 'DSN',
      source: 'DSN',
      ...base(dsn),
      sender: '',
      recipients: dsn.recipients,
      reference: original.reference,
      relatedRecipientAddress: original.recipients.join(';'),
      recipientStatus: original.statuses,
      messageInfo: [...new Set(original.actions)].join(','),
    };
  },
  /** A filter refused (or archived) at connect, MAIL, RCPT or the header. */
  filtered(f: {
    stage: string;
    ip: string;
    sender?: string;
    recipient?: string;
    status?: string;
    detail: string;
    connectorId: string;
  }): TrackingEvent {
    return {
      event: 'FAIL',
      source: 'FILTER',
      internalMessageId: '',
      sender: f.sender,
      recipients: f.recipient ? [f.recipient] : [],
      recipientStatus: f.status ? [f.status] : [],
      clientIp: f.ip,
      connectorId: f.connectorId,
      messageInfo: `${f.stage}: ${f.detail}`,
      directionality: 'Incoming',
    };
  },
  /** Set aside in the badmail directory. */
  badmail(
    m: TrackedMessage & { recipients: string[]; statuses?: string[]; clientIp?: string },
    source: 'DSN' | 'FILTER',
    info: string,
  ): TrackingEvent {
    return {
      event: 'BADMAIL',
      source,
      ...base(m),
      recipients: m.recipients,
      ...(m.statuses ? { recipientStatus: m.statuses } : {}),
      ...(m.clientIp !== undefined ? { clientIp: m.clientIp } : {}),
      messageInfo: info,
    };
  },
};
