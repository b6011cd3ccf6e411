import { Type } from 'typebox';
import { KeelError } from '../errors.js';
import type { KeelApp, KeelServices } from '../http/app.js';
import { inContext } from '../http/app.js';
import { idempotent } from '../payments/keyed.js';
import { ok } from '../payments/operations/context.js';
import { publicToUuid } from '../storage/ids.js';
import { createEndpoint, deliveryToApi, findEvent, redeliver } from './webhooks.js';

/** Webhook endpoints, their delivery logs, events and manual redelivery (secret key). */
const EndpointBody = Type.Object(
  { url: Type.String({ minLength: 8, maxLength: 2000 }), events: Type.Array(Type.String({ pattern: '^(\\*|[a-z_]+(\\.[a-z_]+)+)$' }), { minItems: 1, maxItems: 50, uniqueItems: true }) },
  { additionalProperties: false },
);
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

  app.get('/v1/webhook_endpoints/:id/deliveries', { config: secret, schema: { params: IdParams, tags: ['webhooks'] } }, (request) =>
    inContext(request, async () => {
      const endpointId = publicToUuid('webhookEndpoint', request.params.id);
      const endpoint = endpointId === undefined ? undefined : await deps.db.selectFrom('webhook_endpoints').select('id').where('merchant_id', '=', request.merchant.id).where('id', '=', endpointId).executeTakeFirst();
      if (endpoint === undefined) throw new KeelError('resource_missing', `No such webhook endpoint: ${request.params.id}.`, { param: 'id' });
      const rows = await deps.db.selectFrom('webhook_deliveries').selectAll().where('endpoint_id', '=', endpoint.id).orderBy('id', 'desc').limit(100).execute();
      return { object: 'list', data: rows.map(deliveryToApi), has_more: rows.length === 100 };
    }),
  );

  app.get('/v1/events/:id', { config: secret, schema: { params: IdParams, tags: ['webhooks'] } }, (request) =>
    inContext(request, async () => {
      const event = await findEvent(deps.db, request.merchant.id, request.params.id);
      if (event === undefined) throw new KeelError('resource_missing', `No such event: ${request.params.id}.`, { param: 'id' });
      return { id: event.id, object: 'event', type: event.type, created_at: event.created_at, data: event.data };
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
