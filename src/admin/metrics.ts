// Prometheus counters named after the guide's performance objects [003:7034-7243]. Message
// counters are derived from tracking events, so every stage is counted without carrying a
// metrics object through it; gauges are read when /metrics is scraped.
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import type { TrackingEvent } from '../tracking/tracking.js';
import type { QueueSummary } from '../queue/admin/index.js';

export interface MetricSources {
  queues: () => QueueSummary[];
  inboundConnections: () => { virtualServer: string; count: number }[];
  /** The LDAP directory's counters (directory/ldap-pool.ts), when that backend is in use. */
  directory?: () => Readonly<Record<string, number>> | undefined;
}

/**
 * The guide's "Cat: LDAP ..." and categorizer look-up counters [003:7034-7243]: name on
 * /metrics, key in the directory's counters, help.
 */
const DIRECTORY_COUNTERS: [string, string, string][] = [
  ['ldap_connections_total', 'connections', 'LDAP connections opened'],
  ['ldap_connection_failures_total', 'connectionFailures', 'Connection failures to LDAP servers'],
  ['ldap_binds_total', 'binds', 'Successful LDAP binds (service account)'],
  ['ldap_bind_failures_total', 'bindFailures', 'LDAP bind failures'],
  ['ldap_searches_total', 'searches', 'LDAP searches completed'],
  ['ldap_search_failures_total', 'searchFailures', 'LDAP searches that failed'],
  ['categorizer_directory_lookups_total', 'addressLookups', 'Directory look-ups for individual addresses'],
  [
    'categorizer_directory_lookups_not_found_total',
    'addressLookupsNotFound',
    'Address look-ups that found no object',
  ],
  ['categorizer_directory_cache_hits_total', 'cacheHits', 'Look-ups answered from the directory cache'],
  [
    'categorizer_directory_failures_total',
    'lookupFailures',
    'Categorizations deferred: the directory could not answer',
  ],
];

export class TransportMetrics {
  readonly registry = new Registry();
  private readonly received: Counter;
  private readonly receivedBytes: Counter;
  private readonly submitted: Counter;
  private readonly categorized: Counter;
  private readonly expanded: Counter;
  private readonly resolved: Counter;
  private readonly delivered: Counter;
  private readonly sent: Counter;
  private readonly deferred: Counter;
  private readonly ndr: Counter;
  private readonly dsn: Counter;
  private readonly badmail: Counter;
  private readonly filtered: Counter;

  constructor(sources: MetricSources) {
    const r = this.registry;
    // Process and Node.js runtime metrics as bridgehead_process_* and bridgehead_nodejs_*.
    collectDefaultMetrics({ register: r, prefix: 'bridgehead_' });
    const counter = (name: string, help: string, labelNames: string[] = []) =>
      new Counter({ name: `bridgehead_${name}`, help, labelNames, registers: [r] });
    this.received = counter('smtp_receive_messages_total', 'Messages received over SMTP', ['virtual_server']);
    this.receivedBytes = counter('smtp_receive_bytes_total', 'Message bytes received over SMTP');
    this.submitted = counter('messages_submitted_total', 'Messages submitted to the queuing engine');
    this.categorized = counter('categorizer_recipients_total', 'Recipients resolved by the categorizer');
    this.expanded = counter('categorizer_groups_expanded_total', 'Distribution groups expanded');
    this.resolved = counter('categorizer_address_lookups_total', 'Addresses resolved or redirected', [
      'kind',
    ]);
    this.delivered = counter('store_driver_delivered_total', 'Recipients delivered to local mailboxes');
    this.sent = counter('smtp_send_recipients_total', 'Recipients delivered to a remote next hop');
    this.deferred = counter('recipients_deferred_total', 'Recipient deliveries deferred for retry');
    this.ndr = counter('recipients_ndr_total', "Recipients NDR'd, by enhanced status", ['status']);
    this.dsn = counter('dsn_generated_total', 'Delivery status notifications generated');
    this.badmail = counter('badmail_total', 'Messages set aside as badmail');
    this.filtered = counter('filter_rejections_total', 'Sessions refused by a filter, by filter', ['filter']);
    for (const [name, key, help] of DIRECTORY_COUNTERS) {
      new Counter({
        name: `bridgehead_${name}`,
        help,
        registers: [r],
        collect() {
          const value = sources.directory?.()?.[key];
          this.reset();
          if (value) this.inc(value);
        },
      });
    }
    new Gauge({
      name: 'bridgehead_ldap_connections_open',
      help: 'LDAP connections currently open',
      registers: [r],
      collect() {
        this.set(sources.directory?.()?.connectionsOpen ?? 0);
      },
    });
    new Gauge({
      name: 'bridgehead_queue_length',
      help: 'Messages in each queue',
      labelNames: ['queue'],
      registers: [r],
      collect() {
        this.reset();
        for (const q of sources.queues()) this.set({ queue: q.name }, q.messageCount);
      },
    });
    new Gauge({
      name: 'bridgehead_smtp_receive_connections',
      help: 'Open inbound SMTP connections per virtual server',
      labelNames: ['virtual_server'],
      registers: [r],
      collect() {
        this.reset();
        for (const c of sources.inboundConnections()) this.set({ virtual_server: c.virtualServer }, c.count);
      },
    });
  }

  observe(e: TrackingEvent): void {
    const n = e.recipients?.length ?? 0;
    switch (e.event) {
      case 'RECEIVE':
        this.received.inc({ virtual_server: e.connectorId?.split('\\').pop() ?? '' });
        this.receivedBytes.inc(e.totalBytes ?? 0);
        break;
      case 'SUBMIT':
        this.submitted.inc();
        this.categorized.inc(n);
        break;
      case 'EXPAND':
        this.expanded.inc();
        break;
      case 'RESOLVE':
      case 'REDIRECT':
        this.resolved.inc({ kind: e.event.toLowerCase() });
        break;
      case 'DELIVER':
        this.delivered.inc(n);
        break;
      case 'SEND':
        this.sent.inc(n);
        break;
      case 'DEFER':
        this.deferred.inc(n);
        break;
      case 'FAIL':
        if (e.source === 'FILTER') {
          this.filtered.inc({ filter: e.messageInfo?.split(':')[0] ?? '' });
          break;
        }
        (e.recipientStatus ?? []).forEach((status) => this.ndr.inc({ status }));
        break;
      case 'DSN':
        this.dsn.inc();
        break;
      case 'BADMAIL':
        this.badmail.inc();
        break;
      default:
        break;
    }
  }
}
