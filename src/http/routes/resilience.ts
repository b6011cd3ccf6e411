import type { KeelApp, KeelServices } from '../app.js';

/** `GET /v1/resilience` (operator token): every protected resource's breaker state, error counts and bulkhead. */
export function registerResilienceRoutes(app: KeelApp, services: KeelServices): void {
  app.get('/v1/resilience', { config: { auth: 'operator' }, schema: { hide: true } }, async () => ({
    object: 'list',
    data: services.resources.snapshot(),
    has_more: false,
  }));
}
