import { getHeapStatistics } from 'node:v8';
import underPressure from '@fastify/under-pressure';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { KeelError } from '../errors.js';
import type { Metrics } from '../observability/metrics.js';
import { AdaptiveConcurrencyLimit, type AdaptiveLimitOptions, type WorkPriority } from '../resilience/adaptive-limit.js';
import type { KeelApp } from './app.js';
import { errorBody, sendError } from './app.js';

/**
 * Load shedding for the API, in front of everything that costs a database round trip: an adaptive concurrency
 * limit with priorities, and event-loop delay and heap pressure (@fastify/under-pressure). A shed request gets
 * 503 `overloaded` with `Retry-After` at once. Starting a new payment is shed first; confirming, capturing,
 * refunding, canceling and reading go on as long as the full limit allows. Authenticated requests are admitted
 * once their merchant is known (authentication is a cached lookup), and fairly: close to the limit, a merchant
 * holding its fair share or more is refused first, with 429 `rate_limited`, so one merchant's burst does not
 * shed the others.
 */
export interface SheddingOptions {
  readonly enabled: boolean;
  readonly limit: AdaptiveLimitOptions;
  readonly maxEventLoopDelayMs: number;
  /** Heap use beyond this share of the heap limit sheds new work. */
  readonly maxHeapShare: number;
}

declare module 'fastify' {
  interface FastifyRequest {
    keelAdmittedAt: number;
    /** The tenant the admission was counted for (the merchant), released with it. */
    keelTenant: string | undefined;
    /** New work refused at the limit whose route decides once its body is read (a queue ticket may let it in). */
    keelAdmissionDeferred: boolean;
  }
}

/** Admits an authenticated request for its tenant, or answers for it (429 over its share, 503 overloaded). */
export type TenantAdmission = (request: FastifyRequest, reply: FastifyReply, tenant: string, priority?: WorkPriority) => FastifyReply | undefined;

export interface Shedding {
  readonly limiter: AdaptiveConcurrencyLimit;
  readonly admitTenant: TenantAdmission;
}

// Queue tickets are the checkout queue's own admission (no database work): refusing them would defeat the queue.
const exempt = /^\/(healthz|readyz|metrics|openapi\.json|admin\/|v1\/queue_tickets)/;

/** New work starts a payment; everything else finishes one or reads. */
export function priorityOf(request: FastifyRequest): WorkPriority | undefined {
  const url = request.routeOptions.url ?? request.url;
  if (exempt.test(url) || !url.startsWith('/v1/')) return undefined;
  return request.method === 'POST' && url === '/v1/payments' ? 'new' : 'finish';
}

export async function registerShedding(app: KeelApp, options: SheddingOptions, metrics: Metrics): Promise<Shedding> {
  const limiter = new AdaptiveConcurrencyLimit(options.limit);
  metrics.concurrency.set({ kind: 'limit' }, limiter.limit);
  metrics.concurrency.set({ kind: 'in_flight' }, 0);
  if (!options.enabled) return { limiter, admitTenant: () => undefined };
  app.decorateRequest('keelAdmittedAt', 0);
  app.decorateRequest('keelTenant', undefined);
  app.decorateRequest('keelAdmissionDeferred', false);

  await app.register(underPressure, {
    maxEventLoopDelay: options.maxEventLoopDelayMs,
    maxHeapUsedBytes: Math.floor(getHeapStatistics().heap_size_limit * options.maxHeapShare),
    sampleInterval: 100,
    exposeStatusRoute: false,
    // Returning a body makes under-pressure send it; returning nothing lets the request through.
    pressureHandler: (request, reply, type) => {
      if (priorityOf(request) !== 'new') return undefined;
      metrics.shedRequests.inc({ priority: 'new', reason: type });
      metrics.signals.signal('shed', { reason: type });
      const error = new KeelError('overloaded', 'Keel is under pressure; retry shortly.', { retryAfterSeconds: 1 });
      void reply.status(error.status).header('retry-after', '1');
      return errorBody(request, error) as unknown as undefined;
    },
  });

  const refuseOverloaded = (request: FastifyRequest, reply: FastifyReply, priority: WorkPriority) => {
    metrics.shedRequests.inc({ priority, reason: 'concurrency_limit' });
    metrics.signals.signal('shed', { reason: 'concurrency_limit' });
    return sendError(request, reply, new KeelError('overloaded', 'Keel is at its concurrency limit; retry shortly.', { retryAfterSeconds: 1 }));
  };
  const admit = (request: FastifyRequest, reply: FastifyReply, tenant: string | undefined, given?: WorkPriority): FastifyReply | undefined => {
    const own = priorityOf(request);
    const priority = own === undefined ? undefined : (given ?? own);
    if (priority === undefined || reply.sent) return undefined;
    const admission = limiter.admit(priority, tenant);
    if (admission === 'over_share') {
      metrics.shedRequests.inc({ priority, reason: 'tenant_share' });
      return sendError(request, reply, new KeelError('rate_limited', 'This merchant holds more than its share of Keel\'s capacity right now; retry shortly.', { retryAfterSeconds: 1 }));
    }
    if (admission === 'overloaded') {
      // A payment that may carry an admitted queue ticket is decided once its body is read (app.ts).
      if (given === undefined && priority === 'new' && request.routeOptions.config.admitAfterBody === true) {
        request.keelAdmissionDeferred = true;
        return undefined;
      }
      return refuseOverloaded(request, reply, priority);
    }
    request.keelAdmittedAt = performance.now();
    request.keelTenant = tenant;
    metrics.concurrency.set({ kind: 'in_flight' }, limiter.inFlight);
    return undefined;
  };
  // Routes without a merchant are admitted here; authenticated ones once the merchant is known (app.ts). At the
  // ceiling nobody can be admitted, so those are refused here too, before authentication costs anything.
  app.addHook('onRequest', async (request, reply) => {
    const auth = request.routeOptions.config.auth;
    if (auth !== 'secret' && auth !== 'publishable') return admit(request, reply, auth === 'operator' ? 'operator' : undefined);
    // A route admitted after its body may turn out to finish a payment: only a limit full for that refuses it here.
    const own = priorityOf(request);
    const priority = request.routeOptions.config.admitAfterBody === true && own !== undefined ? 'finish' : own;
    return priority === undefined || !limiter.full(priority) ? undefined : refuseOverloaded(request, reply, priority);
  });

  const release = (request: FastifyRequest, sample: boolean) => {
    if (request.keelAdmittedAt === 0) return;
    // Keel's own latency: the partner's time is the breakers' and bulkheads' business, and its variance would
    // hide Keel's own queueing from the limit.
    const ownMs = performance.now() - request.keelAdmittedAt - (request.keelTiming?.partnerMs ?? 0);
    limiter.release(Math.max(0, ownMs), sample, request.keelTenant);
    request.keelAdmittedAt = 0;
    metrics.concurrency.set({ kind: 'in_flight' }, limiter.inFlight);
    metrics.concurrency.set({ kind: 'limit' }, limiter.limit);
  };
  app.addHook('onResponse', (request, reply, done) => {
    release(request, reply.statusCode < 500);
    done();
  });
  app.addHook('onRequestAbort', async (request) => release(request, false));
  return { limiter, admitTenant: admit };
}
