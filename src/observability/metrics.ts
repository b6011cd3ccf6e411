import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/** Golden signals: latency split by outcome, traffic, errors apart from declines, partner calls. */
export interface Metrics {
  readonly registry: Registry;
  readonly httpRequestDurationSeconds: Histogram<'method' | 'route' | 'status_class'>;
  readonly paymentOutcomes: Counter<'outcome' | 'gateway'>;
  readonly partnerCallDurationSeconds: Histogram<'gateway' | 'operation' | 'outcome'>;
  readonly partnerCallsRefused: Counter<'gateway' | 'operation' | 'reason'>;
  readonly shedRequests: Counter<'priority' | 'reason'>;
  readonly concurrency: Gauge<'kind'>;
}

export function createMetrics(options: { readonly collectProcessMetrics: boolean }): Metrics {
  const registry = new Registry();
  if (options.collectProcessMetrics) collectDefaultMetrics({ register: registry, prefix: 'keel_' });
  return {
    registry,
    httpRequestDurationSeconds: new Histogram({
      name: 'keel_http_request_duration_seconds',
      help: 'API request latency by route and status class',
      labelNames: ['method', 'route', 'status_class'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [registry],
    }),
    paymentOutcomes: new Counter({
      name: 'keel_payment_outcomes_total',
      help: 'Payment confirmations by the partner called and outcome: ok, declined (a failure, not an error), unknown, unreachable (never sent)',
      labelNames: ['outcome', 'gateway'],
      registers: [registry],
    }),
    partnerCallDurationSeconds: new Histogram({
      name: 'keel_partner_call_duration_seconds',
      help: 'Partner call latency by the partner called, operation and outcome (calls actually sent)',
      labelNames: ['gateway', 'operation', 'outcome'],
      buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10],
      registers: [registry],
    }),
    partnerCallsRefused: new Counter({
      name: 'keel_partner_calls_refused_total',
      help: 'Partner calls refused before sending, by partner, operation and reason (breaker_open, bulkhead_full)',
      labelNames: ['gateway', 'operation', 'reason'],
      registers: [registry],
    }),
    shedRequests: new Counter({
      name: 'keel_shed_requests_total',
      help: 'Requests refused by load shedding, by priority and reason (concurrency limit, event loop, heap)',
      labelNames: ['priority', 'reason'],
      registers: [registry],
    }),
    concurrency: new Gauge({
      name: 'keel_api_concurrency',
      help: 'Saturation: API requests in flight and the adaptive concurrency limit',
      labelNames: ['kind'],
      registers: [registry],
    }),
  };
}
