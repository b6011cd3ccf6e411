import type { KeelApp, KeelServices } from '../app.js';

/** Liveness, readiness (every configured engine answers) and Prometheus metrics. */
export function registerHealthRoutes(app: KeelApp, services: KeelServices): void {
  app.get('/healthz', { schema: { hide: true } }, async () => ({ status: 'ok' }));

  app.get('/readyz', { schema: { hide: true } }, async (_request, reply) => {
    const checks = await services.readiness();
    const ready = Object.values(checks).every((value) => value === 'ok');
    return reply.status(ready ? 200 : 503).send({ status: ready ? 'ready' : 'unavailable', checks });
  });

  app.get('/metrics', { schema: { hide: true } }, async (_request, reply) => {
    const registry = services.deps.metrics.registry;
    return reply.header('content-type', registry.contentType).send(await registry.metrics());
  });
}
