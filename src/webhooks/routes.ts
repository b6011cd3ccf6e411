import { Type } from 'typebox';
import { KeelError } from '../errors.js';
import type { KeelApp, KeelServices } from '../http/app.js';
import { inContext } from '../http/app.js';
import { idempotent } from '../payments/keyed.js';
import { ok } from '../payments/operations/context.js';
import { createEndpoint, deleteEndpoint, deliveryToApi, endpointOr404, endpointToApi, eventToApi, findEvent, listEndpoints, listEvents, redeliver, updateEndpoint } from './webhooks.js';
import { ListQuery, listOf, pageOf, paged } from '../http/lists.js';

/** Webhook endpoints (create, list, update, delete), their delivery logs, events and manual redelivery (secret key). */
const EventTypes = Type.Array(Type.String({ pattern: '^(\\*|[a-z_]+(\\.[a-z_]+)+)$' }), { minItems: 1, maxItems: 50, uniqueItems: true });
const EndpointBody = Type.Object(
  { url: Type.String({ minLength: 8, maxLength: 2000 }), events: EventTypes },
  { additionalProperties: false },
);
const UpdateEndpointBody = Type.Object(
  { url: Type.Optional(Type.String({ minLength: 8, maxLength: 2000 })), events: Type.Optional(EventTypes), disabled: Type.Optional(Type.Boolean()) },
  { additionalProperties: false, minProperties: 1 },
);
const ListEventsQuery = ListQuery({ type: Type.Optional(Type.String({ pattern: '^[a-z_]+(\\.[a-z_]+)+$', maxLength: 100 })) });
const ListEndpointsQuery = ListQuery({});
const IdParams = Type.Object({ id: Type.String({ maxLength: 64 }) });
const EmptyBody = Type.Object({}, { additionalProperties: false });

export function registerWebhookRoutes(app: KeelApp, services: KeelServices): void {
  const { deps } = services;
  const secret = { auth: 'secret' } as const;

  app.post('/v1/webhook_endpoints', { config: secret, schema: { body: EndpointBody, tags: ['webhooks'] } }, (request, reply) =>
    inContext(request, async () =>
      idempotent(services, request, reply, async () =>
        // The answer carries the signing secret, so its stored copy under the key is encrypted.
        ok(200, await createEndpoint(deps.db, deps.cipher, request.merchant, request.body.url, request.body.events), { sensitive: true }),
      ),
    ),
  );

  app.get('/v1/webhook_endpoints', { config: secret, schema: { querystring: ListEndpointsQuery, tags: ['webhooks'] } }, (request) =>
    inContext(request, async () => {
      const page = pageOf(request.query, 'webhookEndpoint');
      return listOf(await listEndpoints(deps.db, request.merchant.id, page), page, (row) => endpointToApi(row));
    }),
  );

  app.get('/v1/webhook_endpoints/:id', { config: secret, schema: { params: IdParams, tags: ['webhooks'] } }, (request) =>
    inContext(request, async () => endpointToApi(await endpointOr404(deps.db, request.merchant.id, request.params.id))),
  );

  app.post('/v1/webhook_endpoints/:id', { config: secret, schema: { params: IdParams, body: UpdateEndpointBody, tags: ['webhooks'] } }, (request, reply) =>
    inContext(request, async () =>
      idempotent(services, request, reply, async (context) => ok(200, await updateEndpoint(deps.db, context.merchant, request.params.id, request.body))),
    ),
  );

  app.delete('/v1/webhook_endpoints/:id', { config: secret, schema: { params: IdParams, tags: ['webhooks'] } }, (request) =>
    inContext(request, async () => deleteEndpoint(deps.db, request.merchant.id, request.params.id)),
  );

  app.get('/v1/webhook_endpoints/:id/deliveries', { config: secret, schema: { params: IdParams, querystring: ListEndpointsQuery, tags: ['webhooks'] } }, (request) =>
    inContext(request, async () => {
      const endpoint = await endpointOr404(deps.db, request.merchant.id, request.params.id);
      const page = pageOf(request.query, 'webhookDelivery');
      const rows = await paged(deps.db.selectFrom('webhook_deliveries').selectAll().where('endpoint_id', '=', endpoint.id), page).execute();
      return listOf(rows, page, deliveryToApi);
    }),
  );

  app.get('/v1/events', { config: secret, schema: { querystring: ListEventsQuery, tags: ['webhooks'] } }, (request) =>
    inContext(request, async () => {
      const page = pageOf(request.query, 'event');
      return listOf(await listEvents(deps.db, request.merchant.id, request.query.type, page), page, eventToApi);
    }),
  );

  app.get('/v1/events/:id', { config: secret, schema: { params: IdParams, tags: ['webhooks'] } }, (request) =>
    inContext(request, async () => {
      const event = await findEvent(deps.db, request.merchant.id, request.params.id);
      if (event === undefined) throw new KeelError('resource_missing', `No such event: ${request.params.id}.`, { param: 'id' });
      return eventToApi(event);
    }),
  );

  app.post('/v1/events/:id/redeliver', { config: secret, schema: { params: IdParams, body: EmptyBody, tags: ['webhooks'] } }, (request, reply) =>
    inContext(request, async () =>
      idempotent(services, request, reply, async () => {
        const rows = await redeliver(deps.db, request.merchant.id, request.params.id);
        return ok(200, { object: 'list', data: rows.map(deliveryToApi), has_more: false });
      }),
    ),
  );
}
