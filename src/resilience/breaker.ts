import assert from 'node:assert/strict';

/**
 * A circuit breaker per resource (`partner:host:port:merchant country`), opening on an error *rate*:
 * - closed: calls are counted in a sliding window of `windowMs` (ten buckets); it opens when the window holds at
 *   least `minimumCalls` calls and at least `failureRatePercent` of them failed (resilience4j's and Hystrix's
 *   rule, so a partner failing a tenth of its calls keeps being called while one failing half is left alone);
 * - open: every call is refused before anything is sent, for `errorTimeoutMs`;
 * - half-open (Semian's semantics): calls go through with a shorter read timeout; `successThreshold` successes
 *   in a row close it, and any error opens it again.
 * Only errors that say the resource is unhealthy count: timeouts, connection failures, 429 and 5xx. A decline or
 * another 4xx is an answer from a healthy partner, and counts as a call that succeeded. cockatiel's breaker
 * closes on the first half-open success, so this one is Keel's own (see docs/resilience.md).
 */
export interface BreakerOptions {
  /** Calls the window must hold before a rate is judged at all. */
  readonly minimumCalls: number;
  /** The share of the window's calls that failed at which it opens, in percent (1-100). */
  readonly failureRatePercent: number;
  readonly windowMs: number;
  readonly errorTimeoutMs: number;
  readonly successThreshold: number;
  readonly halfOpenReadTimeoutMs: number;
}

export const breakerDefaults: BreakerOptions = {
  minimumCalls: 20,
  failureRatePercent: 50,
  windowMs: 10_000,
  errorTimeoutMs: 10_000,
  successThreshold: 2,
  halfOpenReadTimeoutMs: 2_000,
};

/** The sliding window's resolution: calls age out a tenth of the window at a time. */
const windowBuckets = 10;

export type BreakerState = 'closed' | 'open' | 'half_open';

export type Permit = { readonly allowed: true; readonly halfOpen: boolean } | { readonly allowed: false; readonly retryAfterMs: number };

export interface BreakerSnapshot {
  readonly resource: string;
  readonly state: BreakerState;
  readonly calls_in_window: number;
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
  readonly #bucketMs: number;
  #state: BreakerState = 'closed';
  /** Per bucket: which tick of `bucketMs` it counts, and its calls and errors. */
  readonly #bucketTick = new Array<number>(windowBuckets).fill(-1);
  readonly #bucketCalls = new Array<number>(windowBuckets).fill(0);
  readonly #bucketErrors = new Array<number>(windowBuckets).fill(0);
  #openedAt: number | null = null;
  #halfOpenSuccesses = 0;
  #errorCount = 0;
  #successCount = 0;

  constructor(resource: string, options: BreakerOptions, onChange: StateChangeListener, now: () => number = Date.now) {
    assert.ok(options.minimumCalls >= 1 && options.successThreshold >= 1, 'breaker thresholds are at least 1');
    assert.ok(options.failureRatePercent >= 1 && options.failureRatePercent <= 100, 'the breaker failure rate is 1-100 percent');
    this.resource = resource;
    this.#options = options;
    this.#onChange = onChange;
    this.#now = now;
    this.#bucketMs = Math.max(1, Math.ceil(options.windowMs / windowBuckets));
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
    if (this.#state === 'closed') this.#count(false);
    if (this.#state !== 'half_open') return;
    this.#halfOpenSuccesses += 1;
    if (this.#halfOpenSuccesses >= this.#options.successThreshold) this.#transition('closed');
  }

  recordError(): void {
    this.#errorCount += 1;
    if (this.#state === 'half_open') {
      this.#transition('open');
      return;
    }
    if (this.#state === 'open') return;
    this.#count(true);
    const { calls, errors } = this.#window();
    if (calls >= this.#options.minimumCalls && errors * 100 >= calls * this.#options.failureRatePercent) this.#transition('open');
  }

  snapshot(): BreakerSnapshot {
    const { calls, errors } = this.#state === 'closed' ? this.#window() : { calls: 0, errors: 0 };
    return {
      resource: this.resource,
      state: this.#state,
      calls_in_window: calls,
      errors_in_window: errors,
      error_count: this.#errorCount,
      success_count: this.#successCount,
      half_open_successes: this.#halfOpenSuccesses,
      opened_at: this.#openedAt === null ? null : new Date(this.#openedAt).toISOString(),
      next_half_open_at: this.#state === 'open' && this.#openedAt !== null ? new Date(this.#openedAt + this.#options.errorTimeoutMs).toISOString() : null,
    };
  }

  #count(failed: boolean): void {
    const tick = Math.floor(this.#now() / this.#bucketMs);
    const slot = tick % windowBuckets;
    if (this.#bucketTick[slot] !== tick) {
      this.#bucketTick[slot] = tick;
      this.#bucketCalls[slot] = 0;
      this.#bucketErrors[slot] = 0;
    }
    this.#bucketCalls[slot] = (this.#bucketCalls[slot] ?? 0) + 1;
    if (failed) this.#bucketErrors[slot] = (this.#bucketErrors[slot] ?? 0) + 1;
  }

  /** The calls and errors of the last `windowBuckets` buckets. */
  #window(): { calls: number; errors: number } {
    const tick = Math.floor(this.#now() / this.#bucketMs);
    let calls = 0;
    let errors = 0;
    for (let slot = 0; slot < windowBuckets; slot += 1) {
      const age = tick - (this.#bucketTick[slot] ?? -1);
      if (age < 0 || age >= windowBuckets) continue;
      calls += this.#bucketCalls[slot] ?? 0;
      errors += this.#bucketErrors[slot] ?? 0;
    }
    return { calls, errors };
  }

  #transition(to: BreakerState): void {
    const from = this.#state;
    if (from === to) return;
    this.#state = to;
    if (to === 'open') this.#openedAt = this.#now();
    if (to === 'closed') this.#openedAt = null;
    this.#bucketTick.fill(-1);
    this.#halfOpenSuccesses = 0;
    this.#onChange(this.resource, from, to, this.snapshot());
  }
}
