import assert from 'node:assert/strict';

/**
 * A circuit breaker with Semian's semantics, per resource (`partner host:port:merchant country`):
 * - closed: it opens after `errorThreshold` errors within `errorThresholdTimeoutMs`;
 * - open: every call is refused before anything is sent, for `errorTimeoutMs`;
 * - half-open: calls go through (with a shorter read timeout); `successThreshold` successes in a row close it,
 *   and any error opens it again.
 * Only errors that say the resource is unhealthy count: timeouts, connection failures, 429 and 5xx. A decline or
 * another 4xx is an answer from a healthy partner. cockatiel's breaker closes on the first half-open success and
 * counts failures per call rather than per time window, so this one is Keel's own (see docs/resilience.md).
 */
export interface BreakerOptions {
  readonly errorThreshold: number;
  readonly errorThresholdTimeoutMs: number;
  readonly errorTimeoutMs: number;
  readonly successThreshold: number;
  readonly halfOpenReadTimeoutMs: number;
}

export const breakerDefaults: BreakerOptions = {
  errorThreshold: 5,
  errorThresholdTimeoutMs: 10_000,
  errorTimeoutMs: 10_000,
  successThreshold: 2,
  halfOpenReadTimeoutMs: 2_000,
};

export type BreakerState = 'closed' | 'open' | 'half_open';

export type Permit = { readonly allowed: true; readonly halfOpen: boolean } | { readonly allowed: false; readonly retryAfterMs: number };

export interface BreakerSnapshot {
  readonly resource: string;
  readonly state: BreakerState;
  readonly errors_in_window: number;
  readonly error_count: number;
  readonly success_count: number;
  readonly half_open_successes: number;
  readonly opened_at: string | null;
  readonly next_half_open_at: string | null;
}

export type StateChangeListener = (resource: string, from: BreakerState, to: BreakerState, snapshot: BreakerSnapshot) => void;

export class CircuitBreaker {
  readonly resource: string;
  readonly #options: BreakerOptions;
  readonly #onChange: StateChangeListener;
  readonly #now: () => number;
  #state: BreakerState = 'closed';
  #errorTimes: number[] = [];
  #openedAt: number | null = null;
  #halfOpenSuccesses = 0;
  #errorCount = 0;
  #successCount = 0;

  constructor(resource: string, options: BreakerOptions, onChange: StateChangeListener, now: () => number = Date.now) {
    assert.ok(options.errorThreshold >= 1 && options.successThreshold >= 1, 'breaker thresholds are at least 1');
    this.resource = resource;
    this.#options = options;
    this.#onChange = onChange;
    this.#now = now;
  }

  get state(): BreakerState {
    return this.#state;
  }

  /** Asks to make a call. An open breaker past its timeout turns half-open here. */
  acquire(): Permit {
    if (this.#state === 'open') {
      const waitedMs = this.#now() - (this.#openedAt ?? 0);
      if (waitedMs < this.#options.errorTimeoutMs) return { allowed: false, retryAfterMs: this.#options.errorTimeoutMs - waitedMs };
      this.#transition('half_open');
    }
    return { allowed: true, halfOpen: this.#state === 'half_open' };
  }

  recordSuccess(): void {
    this.#successCount += 1;
    if (this.#state !== 'half_open') return;
    this.#halfOpenSuccesses += 1;
    if (this.#halfOpenSuccesses >= this.#options.successThreshold) this.#transition('closed');
  }

  recordError(): void {
    this.#errorCount += 1;
    const now = this.#now();
    if (this.#state === 'half_open') {
      this.#transition('open');
      return;
    }
    if (this.#state === 'open') return;
    this.#errorTimes = this.#errorTimes.filter((time) => now - time < this.#options.errorThresholdTimeoutMs);
    this.#errorTimes.push(now);
    if (this.#errorTimes.length >= this.#options.errorThreshold) this.#transition('open');
  }

  snapshot(): BreakerSnapshot {
    const now = this.#now();
    const inWindow = this.#errorTimes.filter((time) => now - time < this.#options.errorThresholdTimeoutMs).length;
    return {
      resource: this.resource,
      state: this.#state,
      errors_in_window: this.#state === 'closed' ? inWindow : 0,
      error_count: this.#errorCount,
      success_count: this.#successCount,
      half_open_successes: this.#halfOpenSuccesses,
      opened_at: this.#openedAt === null ? null : new Date(this.#openedAt).toISOString(),
      next_half_open_at: this.#state === 'open' && this.#openedAt !== null ? new Date(this.#openedAt + this.#options.errorTimeoutMs).toISOString() : null,
    };
  }

  #transition(to: BreakerState): void {
    const from = this.#state;
    if (from === to) return;
    this.#state = to;
    if (to === 'open') this.#openedAt = this.#now();
    if (to === 'closed') this.#openedAt = null;
    this.#errorTimes = [];
    this.#halfOpenSuccesses = 0;
    this.#onChange(this.resource, from, to, this.snapshot());
  }
}
