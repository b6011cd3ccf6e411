import type { KeelApp, KeelServices } from '../app.js';
import { inContext, sendError } from '../app.js';
import { checkAdminToken } from '../auth.js';
import { isKeelError } from '../../errors.js';

/** `GET /v1/resilience` (operator token): every protected resource's breaker state, error counts and bulkhead. */
export function registerResilienceRoutes(app: KeelApp, services: KeelServices): void {
  app.get('/v1/resilience', { schema: { hide: true } }, (request, reply) =>
    inContext(request, async () => {
      try {
        checkAdminToken(request.headers.authorization, services.adminToken);
      } catch (error) {
        if (isKeelError(error)) return sendError(request, reply, error);
        throw error;
      }
      return reply.send({ object: 'list', data: services.resources.snapshot(), has_more: false });
    }),
  );
}
