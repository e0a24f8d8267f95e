// Operator commands over the admin API: queue viewer, messages, tracking, logging levels.
// Each prints a readable table by default and the API's JSON with --json.
import type { Command } from 'commander';
import { AdminClient, CliError, withApi, type ApiOptions } from './admin-client.js';
import { EXIT } from './exit-codes.js';
import { TRACKING_EVENTS, trackingEventName } from '../tracking/event-names.js';
import type { RetryReport } from '../queue/admin/index.js';

/** Some of what was asked was done and some refused: reported, exit status 1. */
const partialFailure = (text: string) => new CliError(text, EXIT.failed);

/**
 * What `queue retry` did, as lines: retried now, still held by a connector (until its
 * schedule opens, when known; until ETRN/TURN), or nothing sent from a frozen queue.
 */
export function retryLines(name: string, r: RetryReport): string[] {
  const lines: string[] = [];
  if (r.frozen) lines.push(`${name}: the queue is frozen: nothing is sent until \`queue unfreeze\``);
  else if (r.recipients > 0 || !r.held.length)
    lines.push(`${name}: ${r.recipients} recipient(s) retried now`);
  for (const h of r.held) {
    const until =
      h.reason === 'remote-triggered'
        ? 'until the remote side sends ETRN or TURN'
        : h.opens
          ? `until the connector schedule opens at ${h.opens}`
          : 'until its schedule is changed and the configuration reloaded (it never opens by itself)';
    lines.push(
      `${name}: ${h.recipients} recipient(s) stay held ${until}: ${h.detail}; retry does not send them`,
    );
  }
  return lines;
}

function table(rows: Record<string, unknown>[], columns: string[]): string {
  const cell = (v: unknown) => (v === undefined || v === null ? '' : String(v));
  const widths = columns.map((c) => Math.max(c.length, ...rows.map((r) => cell(r[c]).length)));
  const line = (vals: string[]) =>
    vals
      .map((v, i) => v.padEnd(widths[i]!))
      .join('  ')
      .trimEnd();
  return [
    line(columns),
    line(widths.map((w) => '-'.repeat(w))),
    ...rows.map((r) => line(columns.map((c) => cell(r[c])))),
  ].join('\n');
}

function print(o: ApiOptions, json: unknown, render: () => string): void {
  process.stdout.write(o.json ? `${JSON.stringify(json, null, 2)}\n` : `${render()}\n`);
}

function qs(params: Record<string, string | undefined>): string {
  const entries = Object.entries(params).filter(([, v]) => v !== undefined && v !== '') as [string, string][];
  return entries.length ? `?${new URLSearchParams(entries).toString()}` : '';
}

function progress(text: string): void {
  if (process.stderr.isTTY) process.stderr.write(`\r${text}`);
}

type MessageRow = {
  id: string;
  sender: string;
  size: number;
  receivedAt: string;
  state: string;
  queues: string[];
  subject?: string;
  recipients: { address: string; queue: string; state: string; status?: string; lastError?: string }[];
};

const messageRows = (list: MessageRow[]) =>
  list.map((m) => ({
    id: m.id,
    state: m.state,
    sender: m.sender || '<>',
    recipients: m.recipients.length,
    size: m.size,
    received: m.receivedAt,
    queues: m.queues.join('; '),
  }));

export function addAdminCommands(program: Command): void {
  // ---------------------------------------------------------------- queue
  const queue = program.command('queue').description('the queue viewer');
  withApi(
    queue
      .command('list')
      .description('every queue with state, messages, size, oldest, next retry, last error'),
  ).action(async (o: ApiOptions) => {
    const json = await AdminClient.of(o).get('/api/v1/queues');
    const rows = json as Record<string, unknown>[];
    print(o, json, () =>
      table(
        rows.map((r) => ({ ...r, messages: r.messageCount, size: r.totalSize })),
        ['name', 'state', 'messages', 'size', 'oldest', 'nextRetry', 'lastError'],
      ),
    );
  });
  withApi(
    queue.command('show').argument('<name>', 'queue name').description('one queue and its messages'),
  ).action(async (name: string, o: ApiOptions) => {
    const json = await AdminClient.of(o).get(`/api/v1/queues/${encodeURIComponent(name)}`);
    const q = json as Record<string, unknown> & { messages: MessageRow[] };
    print(o, json, () => {
      const head =
        `${q.name}: ${q.state}, ${q.messageCount} message(s), ${q.totalSize} bytes` +
        (q.nextRetry ? `, next retry ${q.nextRetry}` : '') +
        (q.lastError ? `\nlast error: ${q.lastError}` : '');
      return `${head}\n\n${table(messageRows(q.messages), ['id', 'state', 'sender', 'recipients', 'size', 'received'])}`;
    });
  });
  withApi(
    queue
      .command('find')
      .description('find messages (default 100)')
      .option('--sender <address>')
      .option('--recipient <address>')
      .option('--state <state>', 'Ready | Active | Retry | Scheduled | Remote | Frozen')
      .option('--queue <name>')
      .option('--limit <n>', 'default 100'),
  ).action(async (o: ApiOptions & Record<string, string>) => {
    const json = await AdminClient.of(o).get(
      `/api/v1/messages${qs({ sender: o.sender, recipient: o.recipient, state: o.state, queue: o.queue, limit: o.limit })}`,
    );
    print(o, json, () =>
      table(messageRows(json as MessageRow[]), [
        'id',
        'state',
        'sender',
        'recipients',
        'size',
        'received',
        'queues',
      ]),
    );
  });
  for (const action of ['freeze', 'unfreeze', 'retry'] as const) {
    withApi(
      queue
        .command(action)
        .argument('<name>', 'queue name')
        .description(action === 'retry' ? 'force connection: retry the queue now' : `${action} a queue`),
    ).action(async (name: string, o: ApiOptions) => {
      const json = await AdminClient.of(o).post(`/api/v1/queues/${encodeURIComponent(name)}/${action}`);
      print(o, json, () =>
        action === 'retry'
          ? retryLines(name, {
              held: [],
              frozen: false,
              ...(json as Partial<RetryReport>),
            } as RetryReport).join('\n')
          : `${name}: ${action === 'freeze' ? 'frozen' : 'unfrozen'}`,
      );
    });
  }
  withApi(
    queue
      .command('delete')
      .description('delete messages by queue or filter, with or without NDR')
      .option('--queue <name>')
      .option('--sender <address>')
      .option('--recipient <address>')
      .option('--state <state>')
      .option('--all', 'every message in every queue')
      .option('--ndr', 'send an NDR to each sender')
      .option('--no-ndr', 'delete silently'),
  ).action(
    async (
      o: ApiOptions & {
        queue?: string;
        sender?: string;
        recipient?: string;
        state?: string;
        all?: boolean;
        ndr?: boolean;
      },
    ) => {
      if (o.ndr === undefined) throw new CliError('say --ndr or --no-ndr');
      if (!o.queue && !o.sender && !o.recipient && !o.state && !o.all) {
        throw new CliError('give --queue, --sender, --recipient, --state or --all');
      }
      const api = AdminClient.of(o);
      const json = await api.get(
        `/api/v1/messages${qs({ sender: o.sender, recipient: o.recipient, state: o.state, queue: o.queue, limit: '100000' })}`,
      );
      const found = json as MessageRow[];
      let deleted = 0;
      const refused: { id: string; error: string }[] = [];
      for (const [i, m] of found.entries()) {
        try {
          await api.delete(`/api/v1/messages/${m.id}?ndr=${o.ndr}`);
          deleted++;
        } catch (err) {
          refused.push({ id: m.id, error: (err as Error).message });
        }
        progress(`deleting: ${i + 1}/${found.length}`);
      }
      progress('\n');
      const result = { matched: found.length, deleted, refused, ndr: o.ndr };
      print(o, result, () =>
        [
          `deleted ${deleted} of ${found.length} message(s) ${o.ndr ? 'with' : 'without'} NDR`,
          ...refused.map((r) => `  not deleted ${r.id}: ${r.error}`),
        ].join('\n'),
      );
      // Exit status 1 (not a usage error): `run` sets the exit code from what it catches,
      // so a process.exitCode set here would be overwritten with 0.
      if (refused.length) throw partialFailure(`${refused.length} message(s) not deleted`);
    },
  );

  // ---------------------------------------------------------------- message
  const message = program.command('message').description('one message in the queues');
  withApi(message.command('show').argument('<id>', 'queue id')).action(async (id: string, o: ApiOptions) => {
    const json = await AdminClient.of(o).get(`/api/v1/messages/${encodeURIComponent(id)}`);
    const m = json as MessageRow & { messageId?: string };
    print(o, json, () =>
      [
        `id:        ${m.id}`,
        `state:     ${m.state}`,
        `sender:    ${m.sender || '<>'}`,
        `subject:   ${m.subject ?? ''}`,
        `messageId: ${m.messageId ?? ''}`,
        `size:      ${m.size}`,
        `received:  ${m.receivedAt}`,
        '',
        table(m.recipients, ['address', 'queue', 'state', 'status', 'lastError']),
      ].join('\n'),
    );
  });
  for (const action of ['freeze', 'unfreeze'] as const) {
    withApi(message.command(action).argument('<id>', 'queue id')).action(
      async (id: string, o: ApiOptions) => {
        const json = await AdminClient.of(o).post(`/api/v1/messages/${encodeURIComponent(id)}/${action}`);
        print(o, json, () => `${id}: ${action === 'freeze' ? 'frozen' : 'unfrozen'}`);
      },
    );
  }
  withApi(
    message
      .command('delete')
      .argument('<id>', 'queue id')
      .option('--ndr', 'send an NDR')
      .option('--no-ndr', 'no NDR'),
  ).action(async (id: string, o: ApiOptions & { ndr?: boolean }) => {
    if (o.ndr === undefined) throw new CliError('say --ndr or --no-ndr');
    const json = await AdminClient.of(o).delete(`/api/v1/messages/${encodeURIComponent(id)}?ndr=${o.ndr}`);
    print(o, json, () => `${id}: deleted ${o.ndr ? 'with' : 'without'} NDR`);
  });
  withApi(
    message.command('export').argument('<id>', 'queue id').description('write the message (.eml) to stdout'),
  ).action(async (id: string, o: ApiOptions) => {
    process.stdout.write(await AdminClient.of(o).bytes(`/api/v1/messages/${encodeURIComponent(id)}/export`));
  });

  // ---------------------------------------------------------------- track
  withApi(
    program
      .command('track')
      .description('search message tracking; with --config, across every server of the organisation')
      .option('--sender <address>')
      .option('--recipient <address>')
      .option('--message-id <id>', 'Message-ID header')
      .option('--id <queueid>', 'internal message id')
      .option('--event <event>', TRACKING_EVENTS.join(', '))
      .option('--start <date>')
      .option('--end <date>')
      .option('--limit <n>')
      .option('--csv', 'CSV output'),
  ).action(async (o: ApiOptions & Record<string, string | boolean>) => {
    if (typeof o.event === 'string' && !trackingEventName(o.event))
      throw new CliError(`unknown event "${o.event}": the events are ${TRACKING_EVENTS.join(', ')}`);
    const apis = AdminClient.ofEach(o);
    const query = qs({
      sender: o.sender as string,
      recipient: o.recipient as string,
      messageId: o.messageId as string,
      internalMessageId: o.id as string,
      event: o.event as string,
      start: o.start as string,
      end: o.end as string,
      limit: o.limit as string,
    });
    const all: Record<string, unknown>[] = [];
    const silent: { name: string; error: CliError }[] = [];
    for (const [i, api] of apis.entries()) {
      if (apis.length > 1) progress(`searching ${api.name} (${i + 1}/${apis.length})   `);
      try {
        all.push(...((await api.get(`/api/v1/tracking${query}`)) as Record<string, unknown>[]));
      } catch (err) {
        if (apis.length === 1 || !(err instanceof CliError)) throw err;
        silent.push({ name: api.name, error: err });
      }
    }
    if (apis.length > 1) progress('\n');
    // Each error names its server; nobody answering is no result at all.
    for (const s of silent) process.stderr.write(`warning: ${s.error.message}\n`);
    if (silent.length && silent.length === apis.length) {
      const reached = silent.some((s) => s.error.exitCode !== EXIT.unreachable);
      throw new CliError(
        `no server answered (${silent.map((s) => s.name).join(', ')}): no tracking events to show`,
        reached ? EXIT.refused : EXIT.unreachable,
      );
    }
    all.sort((a, b) => String(a.dateTime).localeCompare(String(b.dateTime)));
    const rows = all.map((e) => ({
      ...e,
      recipients: ((e.recipients as string[]) ?? []).join(';'),
      recipientStatus: ((e.recipientStatus as string[]) ?? []).join(';'),
    }));
    const cols = [
      'dateTime',
      'serverHostname',
      'event',
      'source',
      'internalMessageId',
      'sender',
      'recipients',
      'recipientStatus',
      'messageId',
      'messageInfo',
    ];
    if (o.csv) {
      const esc = (v: unknown) => {
        const s = v === undefined || v === null ? '' : String(v);
        return /[",\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
      };
      process.stdout.write(
        [
          cols.join(','),
          ...rows.map((r) => cols.map((c) => esc((r as Record<string, unknown>)[c])).join(',')),
        ].join('\n') + '\n',
      );
    } else {
      print(o, all, () => table(rows, cols.slice(0, 8)));
    }
    if (silent.length)
      throw partialFailure(
        `${silent.length} of ${apis.length} server(s) did not answer (${silent.map((s) => s.name).join(', ')}): ` +
          'their events are missing from the result',
      );
  });

  // ---------------------------------------------------------------- log
  const log = program.command('log').description('diagnostic logging');
  withApi(log.command('show').description('level of every category')).action(async (o: ApiOptions) => {
    const json = await AdminClient.of(o).get('/api/v1/logging');
    print(o, json, () =>
      table(
        Object.entries(json as Record<string, string>).map(([category, level]) => ({ category, level })),
        ['category', 'level'],
      ),
    );
  });
  withApi(
    log
      .command('level')
      .argument('<category>', 'e.g. "Categorizer", "SMTP Protocol"')
      .argument('<level>', 'none | minimum | medium | maximum')
      .description("change a category's level while the server runs"),
  ).action(async (category: string, level: string, o: ApiOptions) => {
    const json = await AdminClient.of(o).put(`/api/v1/logging/${encodeURIComponent(category)}`, { level });
    print(o, json, () => `${(json as { category: string }).category}: ${level}`);
  });
}
