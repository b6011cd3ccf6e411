import type { BulkheadPolicy} from 'cockatiel';
import { BulkheadRejectedError, bulkhead } from 'cockatiel';
import type { Logger } from 'pino';
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
