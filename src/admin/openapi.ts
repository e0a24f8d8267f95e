// The OpenAPI description the admin API serves at /api/v1/openapi.json.
import { TRACKING_EVENTS } from '../tracking/event-names.js';

const q = (name: string, description: string) => ({
  name,
  in: 'query',
  required: false,
  description,
  schema: { type: 'string' },
});
const p = (name: string) => ({ name, in: 'path', required: true, schema: { type: 'string' } });
const ok = (description: string) => ({ responses: { '200': { description } } });
const okOr404 = (description: string) => ({
  responses: { '200': { description }, '404': { description: 'no queue by that name' } },
});

export function openApiDocument(): Record<string, unknown> {
  const find = [
    q('sender', 'envelope sender'),
    q('recipient', 'recipient address'),
    q('queue', 'queue name (404 when there is no such queue)'),
    q('state', 'Ready | Active | Retry | Scheduled | Remote | Frozen'),
    q('limit', 'default 100'),
  ];
  return {
    openapi: '3.0.3',
    info: { title: 'Bridgehead admin API', version: '1' },
    components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
    security: [{ bearer: [] }],
    paths: {
      '/api/v1/server': { get: ok('server name, FQDN, virtual servers, uptime') },
      '/api/v1/queues': {
        get: ok('every queue: name, state, message count, size, oldest, next retry, last error'),
      },
      '/api/v1/queues/{name}': {
        get: { parameters: [p('name'), q('limit', 'messages shown')], ...ok('one queue and its messages') },
      },
      '/api/v1/queues/{name}/freeze': { post: { parameters: [p('name')], ...okOr404('queue frozen') } },
      '/api/v1/queues/{name}/unfreeze': { post: { parameters: [p('name')], ...okOr404('queue unfrozen') } },
      '/api/v1/queues/{name}/retry': {
        post: {
          parameters: [p('name')],
          ...okOr404(
            'force connection: {recipients} due now; {held} what a connector still holds (reason, ' +
              'recipients, detail, opens when its schedule opens); {frozen} the queue is frozen',
          ),
        },
      },
      '/api/v1/messages': { get: { parameters: find, ...ok('messages matching the filter') } },
      '/api/v1/messages/delete': {
        post: {
          requestBody: { content: { 'application/json': { schema: { type: 'object' } } } },
          ...ok('bulk delete by filter {sender, recipient, queue, state, ndr, all}'),
        },
      },
      '/api/v1/messages/{id}': {
        get: { parameters: [p('id')], ...ok('message properties and recipients') },
        delete: {
          parameters: [p('id'), q('ndr', 'true: send an NDR (not allowed on DSNs)')],
          ...ok('deleted'),
        },
      },
      '/api/v1/messages/{id}/export': {
        get: { parameters: [p('id')], ...ok('the message as message/rfc822') },
      },
      '/api/v1/messages/{id}/freeze': { post: { parameters: [p('id')], ...ok('message frozen') } },
      '/api/v1/messages/{id}/unfreeze': { post: { parameters: [p('id')], ...ok('message unfrozen') } },
      '/api/v1/tracking': {
        get: {
          parameters: [
            q('sender', ''),
            q('recipient', ''),
            q('messageId', 'Message-ID header'),
            q('internalMessageId', 'queue id'),
            {
              ...q('event', 'one event (400 for any other)'),
              schema: { type: 'string', enum: [...TRACKING_EVENTS] },
            },
            q('start', 'ISO date'),
            q('end', 'ISO date'),
            q('limit', 'default 1000'),
          ],
          ...ok('message tracking events'),
        },
      },
      '/api/v1/logging': { get: ok('diagnostic logging level per category') },
      '/api/v1/logging/{category}': { put: { parameters: [p('category')], ...ok('level changed: {level}') } },
      '/metrics': { get: ok('Prometheus metrics') },
    },
  };
}
