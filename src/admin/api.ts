// The admin API: the queue viewer, message tracking, diagnostic logging and counters of one
// server, as JSON over HTTP. Bound to loopback by default, and never open unless `open` says
// so: with no token at all every call but the OpenAPI description gets 401 (the wiring gives
// it the token of <dataDir>/admin.token when none is configured, see token.ts).
// Two roles, as the guide's view-only and full administrators: GET needs the read-only or
// the administrator token, everything that changes state needs the administrator token.
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import type { QueueAdmin, QueueState } from '../queue/admin/index.js';
import type { MessageTracking } from '../tracking/tracking.js';
import { CATEGORIES, type Category, type DiagnosticLevel, type EventLog } from '../logs/event-log.js';
import { TransportError } from '../smtp/status.js';
import { TRACKING_EVENTS, trackingEventName } from '../tracking/event-names.js';
import type { TransportMetrics } from './metrics.js';
import { openApiDocument } from './openapi.js';
import { bearerToken, tokenMatches } from './token.js';

export interface AdminDeps {
  serverName: string;
  fqdn: string;
  engine: QueueAdmin;
  tracking: MessageTracking;
  eventLog: EventLog;
  metrics: TransportMetrics;
  token?: string;
  readOnlyToken?: string;
  /** adminApi.open: no token asked of anyone (loopback only, checked by the config). */
  open?: boolean;
  info: () => Record<string, unknown>;
  linkState: () => Record<string, unknown> | undefined;
}

const STATES: QueueState[] = ['Ready', 'Active', 'Retry', 'Scheduled', 'Remote', 'Frozen'];
const LEVELS: DiagnosticLevel[] = ['none', 'minimum', 'medium', 'maximum'];

class HttpError extends Error {
  constructor(
    readonly statusCode: number,
    message: string,
  ) {
    super(message);
  }
}

function str(v: unknown): string | undefined {
  return typeof v === 'string' && v !== '' ? v : undefined;
}

function bool(v: unknown, name: string): boolean {
  if (v === 'true' || v === true || v === '1') return true;
  if (v === 'false' || v === false || v === '0') return false;
  throw new HttpError(400, `${name} must be true or false`);
}

function date(v: unknown, name: string): Date | undefined {
  const s = str(v);
  if (!s) return undefined;
  const d = new Date(s);
  if (Number.isNaN(d.getTime())) throw new HttpError(400, `${name} is not a date: ${s}`);
  return d;
}

function limit(v: unknown, fallback: number): number {
  const s = str(v);
  if (!s) return fallback;
  const n = Number(s);
  if (!Number.isInteger(n) || n < 1 || n > 100_000) throw new HttpError(400, 'limit must be 1..100000');
  return n;
}

export function buildAdminApi(d: AdminDeps): FastifyInstance {
  const app = Fastify({ logger: false, bodyLimit: 1024 * 1024 });

  app.addHook('onRequest', async (req: FastifyRequest, reply: FastifyReply) => {
    if (d.open === true || req.url === '/api/v1/openapi.json') return;
    const token = bearerToken(req.headers.authorization);
    const matches = (expected: string | undefined) =>
      token !== undefined && expected !== undefined && tokenMatches(token, expected);
    const admin = matches(d.token);
    const reader = admin || matches(d.readOnlyToken);
    if (!reader) return reply.code(401).send({ error: 'a valid bearer token is required' });
    if (req.method !== 'GET' && req.method !== 'HEAD' && !admin) {
      return reply.code(403).send({ error: 'this token is read-only (view-only administrator)' });
    }
  });

  app.setErrorHandler((err: unknown, _req, reply) => {
    if (err instanceof HttpError) return reply.code(err.statusCode).send({ error: err.message });
    if (err instanceof TransportError) {
      // "no message …", "no queue …": nothing there by that name.
      const code = /^no (message|queue) /.test(err.message) ? 404 : 409;
      return reply.code(code).send({ error: err.message, status: err.status });
    }
    const e = err as { statusCode?: number; message?: string };
    return reply.code(e.statusCode ?? 500).send({ error: e.message ?? String(err) });
  });

  app.get('/api/v1/openapi.json', async () => openApiDocument());
  app.get('/api/v1/server', async () => ({ name: d.serverName, fqdn: d.fqdn, ...d.info() }));
  app.get('/api/v1/linkstate', async () => {
    const ls = d.linkState();
    if (!ls) throw new HttpError(404, 'this organisation has one server: there is no link state to exchange');
    return ls;
  });

  // ---- queues
  app.get('/api/v1/queues', async () => d.engine.listQueues());
  app.get<{ Params: { name: string }; Querystring: Record<string, string> }>(
    '/api/v1/queues/:name',
    async (req) => {
      const q = d.engine.listQueues().find((x) => x.name === req.params.name);
      if (!q) throw new HttpError(404, `no queue "${req.params.name}"`);
      return { ...q, messages: d.engine.findMessages({ queue: q.name, limit: limit(req.query.limit, 100) }) };
    },
  );
  for (const action of ['freeze', 'unfreeze', 'retry'] as const) {
    app.post<{ Params: { name: string } }>(`/api/v1/queues/:name/${action}`, async (req) => {
      const name = req.params.name;
      // An unknown name is refused by the engine (404): a freeze never creates a queue.
      if (action === 'retry') return { queue: name, ...d.engine.retryNow(name) };
      d.engine.freezeQueue(name, action === 'freeze');
      return { queue: name, frozen: action === 'freeze' };
    });
  }

  // ---- messages
  const findQuery = (q: Record<string, string>) => {
    const state = str(q.state);
    if (state && !STATES.includes(state as QueueState)) {
      throw new HttpError(400, `state must be one of ${STATES.join(', ')}`);
    }
    const queue = str(q.queue);
    if (queue !== undefined && !d.engine.queueExists(queue)) throw new HttpError(404, `no queue "${queue}"`);
    return {
      sender: str(q.sender),
      recipient: str(q.recipient),
      queue,
      state: state as QueueState | undefined,
      limit: limit(q.limit, 100),
    };
  };
  app.get<{ Querystring: Record<string, string> }>('/api/v1/messages', async (req) =>
    d.engine.findMessages(findQuery(req.query)),
  );
  app.get<{ Params: { id: string } }>('/api/v1/messages/:id', async (req) => {
    const m = d.engine.getMessage(req.params.id);
    if (!m) throw new HttpError(404, `no message ${req.params.id} in the queues`);
    return m;
  });
  app.get<{ Params: { id: string } }>('/api/v1/messages/:id/export', async (req, reply) => {
    const bytes = await d.engine.exportMessage(req.params.id);
    return reply
      .header('content-type', 'message/rfc822')
      .header('content-disposition', `attachment; filename="${req.params.id}.eml"`)
      .send(bytes);
  });
  for (const action of ['freeze', 'unfreeze'] as const) {
    app.post<{ Params: { id: string } }>(`/api/v1/messages/:id/${action}`, async (req) => {
      d.engine.freezeMessage(req.params.id, action === 'freeze');
      return { id: req.params.id, frozen: action === 'freeze' };
    });
  }
  app.delete<{ Params: { id: string }; Querystring: Record<string, string> }>(
    '/api/v1/messages/:id',
    async (req) => {
      const ndr = bool(req.query.ndr ?? 'false', 'ndr');
      d.engine.deleteMessage(req.params.id, ndr);
      return { id: req.params.id, deleted: true, ndr };
    },
  );
  // Bulk clean-up by filter (the clean-up of [000] in one call): every message found is
  // deleted; those that cannot be (a DSN with ndr=true) are reported, not silently skipped.
  app.post<{ Body: Record<string, string> }>('/api/v1/messages/delete', async (req) => {
    const body = req.body ?? {};
    const ndr = bool(body.ndr ?? 'false', 'ndr');
    const q = findQuery({ ...body, limit: body.limit ?? '100000' });
    if (!q.sender && !q.recipient && !q.queue && !q.state && body.all !== 'true') {
      throw new HttpError(400, 'give a filter (sender, recipient, queue, state) or all=true');
    }
    const found = d.engine.findMessages(q);
    const refused: { id: string; error: string }[] = [];
    let deleted = 0;
    for (const m of found) {
      try {
        d.engine.deleteMessage(m.id, ndr);
        deleted++;
      } catch (err) {
        refused.push({ id: m.id, error: (err as Error).message });
      }
    }
    return { matched: found.length, deleted, refused, ndr };
  });

  // ---- tracking
  app.get<{ Querystring: Record<string, string> }>('/api/v1/tracking', async (req) => {
    const q = req.query;
    const event = str(q.event);
    if (event !== undefined && !trackingEventName(event))
      throw new HttpError(400, `event must be one of ${TRACKING_EVENTS.join(', ')}`);
    return d.tracking.search({
      sender: str(q.sender),
      recipient: str(q.recipient),
      messageId: str(q.messageId),
      internalMessageId: str(q.internalMessageId),
      event,
      start: date(q.start, 'start'),
      end: date(q.end, 'end'),
      limit: limit(q.limit, 1000),
    });
  });

  // ---- diagnostic logging
  app.get('/api/v1/logging', async () => d.eventLog.levels());
  app.put<{ Params: { category: string }; Body: { level?: string } }>(
    '/api/v1/logging/:category',
    async (req) => {
      const category = CATEGORIES.find((c) => c.toLowerCase() === req.params.category.toLowerCase()) as
        Category | undefined;
      if (!category)
        throw new HttpError(404, `no logging category "${req.params.category}" (${CATEGORIES.join(', ')})`);
      const level = (req.body?.level ?? '').toLowerCase() as DiagnosticLevel;
      if (!LEVELS.includes(level)) throw new HttpError(400, `level must be one of ${LEVELS.join(', ')}`);
      d.eventLog.setLevel(category, level);
      return { category, level };
    },
  );

  app.get('/metrics', async (_req, reply) =>
    reply.header('content-type', d.metrics.registry.contentType).send(await d.metrics.registry.metrics()),
  );
  return app;
}
