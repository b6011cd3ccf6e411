import { monitorEventLoopDelay } from 'node:perf_hooks';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { SystemSignals } from './signals.js';

/**
 * Golden signals: latency split by outcome, traffic, errors apart from declines, saturation. Partner series carry
 * the breakers' key (`gateway`, `country`); every label takes a bounded set of values (no ids, no free text).
 * Beside these: `keel_breaker_state`, `keel_bulkhead_in_flight` (resilience/resources.ts), `keel_event_backlog`,
 * `keel_projection_lag_seconds` (reports/backlog.ts), `keel_anomalies_open` (reconciliation/anomalies.ts).
 */
export interface Metrics {
  readonly registry: Registry;
  readonly httpRequestDurationSeconds: Histogram<'method' | 'route' | 'status_class'>;
  /** The same latency less the partner calls made within the request: Keel's own time. */
  readonly httpRequestOwnDurationSeconds: Histogram<'method' | 'route' | 'status_class'>;
  readonly paymentOutcomes: Counter<'outcome' | 'gateway' | 'country'>;
  readonly partnerCallDurationSeconds: Histogram<'gateway' | 'country' | 'operation' | 'outcome'>;
  readonly partnerCallsRefused: Counter<'gateway' | 'country' | 'operation' | 'reason'>;
  readonly shedRequests: Counter<'priority' | 'reason'>;
  readonly concurrency: Gauge<'kind'>;
  /** The same process's events for incident timelines (breakers, shedding, anomalies); see signals.ts. */
  readonly signals: SystemSignals;
}

export function createMetrics(options: { readonly collectProcessMetrics: boolean }): Metrics {
  const registry = new Registry();
  if (options.collectProcessMetrics) collectDefaultMetrics({ register: registry, prefix: 'keel_' });
  registerEventLoopDelay(registry);
  return {
    registry,
    signals: new SystemSignals(),
    httpRequestDurationSeconds: new Histogram({
      name: 'keel_http_request_duration_seconds',
      help: 'API request latency by route and status class',
      labelNames: ['method', 'route', 'status_class'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [registry],
    }),
    httpRequestOwnDurationSeconds: new Histogram({
      name: 'keel_http_request_own_duration_seconds',
      help: 'API request latency less the partner calls made within the request (Keel\'s own time), by route and status class',
      labelNames: ['method', 'route', 'status_class'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [registry],
    }),
    paymentOutcomes: new Counter({
      name: 'keel_payment_outcomes_total',
      help: 'Payment confirmations by the partner called, the merchant\'s country (the breakers\' key) and outcome: ok, declined (a failure, not an error), unknown, unreachable (never sent)',
      labelNames: ['outcome', 'gateway', 'country'],
      registers: [registry],
    }),
    partnerCallDurationSeconds: new Histogram({
      name: 'keel_partner_call_duration_seconds',
      help: 'Partner call latency by the partner called, country, operation and outcome: ok and declined are a healthy answer, unknown and unreachable an error (calls actually sent)',
      labelNames: ['gateway', 'country', 'operation', 'outcome'],
      buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10],
      registers: [registry],
    }),
    partnerCallsRefused: new Counter({
      name: 'keel_partner_calls_refused_total',
      help: 'Partner calls refused before sending, by partner, country, operation and reason (breaker_open, bulkhead_full)',
      labelNames: ['gateway', 'country', 'operation', 'reason'],
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

/**
 * Saturation of the process: the event loop's delay, its 99th percentile since the previous scrape (sampled
 * every 20 ms by `perf_hooks.monitorEventLoopDelay`, reset at each scrape).
 */
function registerEventLoopDelay(registry: Registry): void {
  const delay = monitorEventLoopDelay({ resolution: 20 });
  delay.enable();
  new Gauge({
    name: 'keel_event_loop_delay_seconds',
    help: 'Event loop delay, 99th percentile since the previous scrape',
    registers: [registry],
    collect() {
      const p99 = delay.percentile(99);
      this.set(Number.isFinite(p99) ? p99 / 1e9 : 0);
      delay.reset();
    },
  });
}

/** A connection pool's state at a scrape: connections open, idle, and requests waiting for one. */
export interface PoolState {
  readonly total: number;
  readonly idle: number;
  readonly waiting: number;
}

/** Saturation of the database pool, read at each scrape (nothing for the embedded engine, which has no pool). */
export function registerPoolMetrics(registry: Registry, state: () => PoolState | undefined): void {
  new Gauge({
    name: 'keel_db_pool_connections',
    help: 'Database pool: connections open (total), idle, and queries waiting for a connection (waiting)',
    labelNames: ['state'],
    registers: [registry],
    collect() {
      const now = state();
      if (now === undefined) return;
      this.set({ state: 'total' }, now.total);
      this.set({ state: 'idle' }, now.idle);
      this.set({ state: 'waiting' }, now.waiting);
    },
  });
}
