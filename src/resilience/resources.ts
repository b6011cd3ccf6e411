import type { BulkheadPolicy} from 'cockatiel';
import { BulkheadRejectedError, bulkhead } from 'cockatiel';
import type { Logger } from 'pino';
import { Gauge, type Registry } from 'prom-client';
import { CircuitBreaker, type BreakerOptions, type BreakerSnapshot } from './breaker.js';

/**
 * The registry of protected resources: one circuit breaker and one bulkhead per `partner:host:port:country`. A
 * bulkhead bounds the partner calls in flight for its resource and never queues by default (cockatiel's
 * `bulkhead(limit, 0)`): a full bulkhead refuses at once, before anything is sent.
 */
export interface ResourceOptions {
  readonly breaker: BreakerOptions;
  /** A partner's own rate rule over `breaker` (resources are named `partner:host:port:country`). */
  readonly breakerByPartner?: Readonly<Partial<Record<string, Partial<BreakerOptions>>>>;
  readonly bulkheadMax: number;
  readonly bulkheadQueueMax: number;
  /** Told of every breaker's change of state, with the partner and country of its resource. */
  readonly onBreakerChange?: (change: { gateway: string; country: string; to: 'open' | 'closed' | 'half_open' }) => void;
}

export interface ResourceSnapshot extends BreakerSnapshot {
  readonly bulkhead: { readonly max: number; readonly in_flight: number };
}

export class ResourceRegistry {
  readonly #options: ResourceOptions;
  readonly #logger: Logger;
  readonly #resources = new Map<string, { breaker: CircuitBreaker; bulkhead: BulkheadPolicy }>();
  readonly #now: () => number;

  constructor(options: ResourceOptions, logger: Logger, now: () => number = Date.now) {
    this.#options = options;
    this.#logger = logger;
    this.#now = now;
  }

  /** The resource's breaker and bulkhead; `partner` picks its breaker options. */
  get(resource: string, partner?: string): { breaker: CircuitBreaker; bulkhead: BulkheadPolicy } {
    let entry = this.#resources.get(resource);
    if (entry === undefined) {
      entry = {
        breaker: new CircuitBreaker(
          resource,
          { ...this.#options.breaker, ...(partner === undefined ? {} : this.#options.breakerByPartner?.[partner]) },
          (name, from, to, snapshot) => {
            const log = to === 'open' ? this.#logger.warn.bind(this.#logger) : this.#logger.info.bind(this.#logger);
            log({ resource: name, from, to, breaker: snapshot }, `circuit breaker ${from} -> ${to}`);
            this.#options.onBreakerChange?.({ ...resourceLabels(name), to });
          },
          this.#now,
        ),
        bulkhead: bulkhead(this.#options.bulkheadMax, this.#options.bulkheadQueueMax),
      };
      this.#resources.set(resource, entry);
    }
    return entry;
  }

  snapshot(): ResourceSnapshot[] {
    return [...this.#resources.values()].map(({ breaker, bulkhead: policy }) => ({
      ...breaker.snapshot(),
      bulkhead: { max: this.#options.bulkheadMax, in_flight: this.#options.bulkheadMax - policy.executionSlots },
    }));
  }
}

export function isBulkheadRejection(error: unknown): boolean {
  return error instanceof BulkheadRejectedError;
}

const breakerStateValue = { closed: 0, half_open: 1, open: 2 } as const;

/** A resource's name, `partner:host:port:country`, as the labels its series carry. */
function resourceLabels(resource: string): { gateway: string; country: string } {
  const parts = resource.split(':');
  return { gateway: parts[0] ?? 'unknown', country: parts.at(-1) ?? 'unknown' };
}

/**
 * `keel_breaker_state{gateway,country}` (0 closed, 1 half-open, 2 open) and `keel_bulkhead_in_flight` /
 * `keel_bulkhead_capacity`, read from the registry at each scrape. A partner reached at two hosts (test and live)
 * under one country shows its worst breaker and its calls in flight summed.
 */
export function registerResourceMetrics(registry: Registry, resources: ResourceRegistry): void {
  const byKey = () => {
    const rows = new Map<string, { labels: { gateway: string; country: string }; state: number; inFlight: number; capacity: number }>();
    for (const snapshot of resources.snapshot()) {
      const labels = resourceLabels(snapshot.resource);
      const key = `${labels.gateway}/${labels.country}`;
      const row = rows.get(key) ?? { labels, state: 0, inFlight: 0, capacity: 0 };
      row.state = Math.max(row.state, breakerStateValue[snapshot.state]);
      row.inFlight += snapshot.bulkhead.in_flight;
      row.capacity += snapshot.bulkhead.max;
      rows.set(key, row);
    }
    return [...rows.values()];
  };
  const gauges: readonly [name: string, help: string, value: (row: ReturnType<typeof byKey>[number]) => number][] = [
    ['keel_breaker_state', 'Circuit breaker per partner and country: 0 closed, 1 half-open, 2 open', (row) => row.state],
    ['keel_bulkhead_in_flight', 'Partner calls in flight per partner and country (saturation of its bulkhead)', (row) => row.inFlight],
    ['keel_bulkhead_capacity', 'Partner calls the bulkhead admits at once per partner and country', (row) => row.capacity],
  ];
  for (const [name, help, value] of gauges) {
    new Gauge({
      name,
      help,
      labelNames: ['gateway', 'country'],
      registers: [registry],
      collect() {
        for (const row of byKey()) this.set(row.labels, value(row));
      },
    });
  }
}
