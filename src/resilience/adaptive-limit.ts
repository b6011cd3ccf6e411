import assert from 'node:assert/strict';

/**
 * An adaptive concurrency limit (Little's law: the right number of requests in flight is throughput x latency,
 * and both move). It follows the gradient algorithm of Netflix's concurrency-limits: a long-term average of
 * latency is the baseline; when recent latency rises above it (queueing), the limit shrinks in proportion;
 * when latency is at the baseline the limit grows by about its square root, the allowance for queueing that
 * keeps throughput up. No maintained Node library implements this, so it is Keel's own, and small.
 *
 * Priorities: work that finishes a payment (confirming an existing one, capture, refund, cancel, reads) may use
 * the whole limit; work that starts a new payment only `newWorkShare` of it, so under overload Keel finishes
 * what it started before it accepts more.
 */
export interface AdaptiveLimitOptions {
  readonly initialLimit: number;
  readonly minLimit: number;
  readonly maxLimit: number;
  /** Latency may exceed the long-term baseline by this factor before the limit shrinks. */
  readonly tolerance: number;
  /** Weight of one window's new limit in the smoothed limit. */
  readonly smoothing: number;
  /** Samples per window for the short-term latency. */
  readonly windowSize: number;
  /** Samples the long-term baseline averages over. */
  readonly longWindowSize: number;
  readonly newWorkShare: number;
  /**
   * The share of the limit kept for tenants below their fair share: once in flight reaches the rest, a tenant
   * holding its (max-min) fair share of it or more is refused, so the others keep being served.
   */
  readonly tenantHeadroom: number;
  /** A tenant seen within this long counts as present: the headroom is kept only while two or more are. */
  readonly tenantMemoryMs: number;
}

export const adaptiveLimitDefaults: AdaptiveLimitOptions = {
  initialLimit: 128,
  minLimit: 8,
  maxLimit: 2_000,
  tolerance: 2,
  smoothing: 0.2,
  windowSize: 50,
  longWindowSize: 600,
  newWorkShare: 0.8,
  tenantHeadroom: 0.1,
  tenantMemoryMs: 10_000,
};

export type WorkPriority = 'finish' | 'new';

/** Admitted; refused because Keel is at its limit; refused because this tenant holds more than its fair share. */
export type Admission = 'admitted' | 'overloaded' | 'over_share';

export class AdaptiveConcurrencyLimit {
  readonly #options: AdaptiveLimitOptions;
  #limit: number;
  #inFlight = 0;
  #longRttMs = 0;
  #windowSum = 0;
  #windowCount = 0;
  #windowMaxInFlight = 0;
  readonly #tenants = new Map<string, number>();
  /** When each tenant last asked for admission (admitted or not). */
  readonly #lastSeen = new Map<string, number>();
  #prunedAt = 0;

  constructor(options: AdaptiveLimitOptions = adaptiveLimitDefaults) {
    assert.ok(options.minLimit >= 1 && options.minLimit <= options.initialLimit && options.initialLimit <= options.maxLimit);
    this.#options = options;
    this.#limit = options.initialLimit;
  }

  get limit(): number {
    return Math.floor(this.#limit);
  }

  get inFlight(): number {
    return this.#inFlight;
  }

  /** Requests in flight for this tenant. */
  inFlightOf(tenant: string): number {
    return this.#tenants.get(tenant) ?? 0;
  }

  /** True when no request of this priority can be admitted now, whoever it is for. */
  full(priority: WorkPriority): boolean {
    return this.#inFlight >= this.#ceiling(priority);
  }

  #ceiling(priority: WorkPriority): number {
    return Math.max(1, Math.floor(priority === 'finish' ? this.#limit : this.#limit * this.#options.newWorkShare));
  }

  /** Admits a request of this priority, or refuses it; an admitted request must be released once. */
  tryAcquire(priority: WorkPriority): boolean {
    return this.admit(priority) === 'admitted';
  }

  /**
   * Admits a request of this priority for this tenant (a merchant), or says why not. While another tenant has
   * been seen within `tenantMemoryMs`, the last `tenantHeadroom` of the priority's ceiling (at least one slot) is
   * kept for tenants below their fair share: once in flight reaches the rest, a tenant holding its fair share of
   * it or more is refused ('over_share'), so a burst of one merchant sheds that merchant and the others still
   * find room. The fair share is max-min: what the other tenants hold below an equal split is theirs, and the
   * tenant's share is an equal split of what is left, so a burster may use what a quiet merchant does not. A
   * tenant alone may use the whole ceiling.
   */
  admit(priority: WorkPriority, tenant?: string): Admission {
    const ceiling = this.#ceiling(priority);
    if (tenant !== undefined && ceiling > 1 && this.#othersPresent(tenant)) {
      const shared = Math.min(ceiling - 1, Math.floor(ceiling * (1 - this.#options.tenantHeadroom)));
      const held = this.#tenants.get(tenant) ?? 0;
      if (this.#inFlight >= shared && held >= this.#fairShare(tenant, shared)) return 'over_share';
    }
    if (this.#inFlight >= ceiling) return 'overloaded';
    this.#inFlight += 1;
    if (tenant !== undefined) this.#tenants.set(tenant, (this.#tenants.get(tenant) ?? 0) + 1);
    this.#windowMaxInFlight = Math.max(this.#windowMaxInFlight, this.#inFlight);
    return 'admitted';
  }

  /** Records the tenant's visit; true when another tenant was seen within `tenantMemoryMs` (pruned each second). */
  #othersPresent(tenant: string): boolean {
    const now = performance.now();
    if (now - this.#prunedAt > 1_000) {
      this.#prunedAt = now;
      for (const [name, seenAt] of this.#lastSeen) if (now - seenAt > this.#options.tenantMemoryMs) this.#lastSeen.delete(name);
    }
    this.#lastSeen.set(tenant, now);
    return this.#lastSeen.size > 1;
  }

  /** The tenant's max-min share of `shared` slots, given what the others hold now (water-filling). */
  #fairShare(tenant: string, shared: number): number {
    const others = [...this.#tenants].filter(([name]) => name !== tenant).map(([, held]) => held).sort((a, b) => a - b);
    let remaining = shared;
    let claimants = others.length + 1;
    for (const held of others) {
      if (held >= remaining / claimants) break;
      remaining -= held;
      claimants -= 1;
    }
    return Math.max(1, Math.floor(remaining / claimants));
  }

  /** Ends an admitted request, with its latency; `sample` false for answers that say nothing of load. */
  release(latencyMs: number, sample = true, tenant?: string): void {
    assert.ok(this.#inFlight > 0, 'release matches an acquire');
    this.#inFlight -= 1;
    if (tenant !== undefined) {
      const held = (this.#tenants.get(tenant) ?? 0) - 1;
      if (held > 0) this.#tenants.set(tenant, held);
      else this.#tenants.delete(tenant);
    }
    if (!sample) return;
    this.#windowSum += latencyMs;
    this.#windowCount += 1;
    if (this.#windowCount >= this.#options.windowSize) this.#update();
  }

  #update(): void {
    const shortRttMs = this.#windowSum / this.#windowCount;
    const samples = this.#windowCount;
    const maxInFlight = this.#windowMaxInFlight;
    this.#windowSum = 0;
    this.#windowCount = 0;
    this.#windowMaxInFlight = this.#inFlight;
    if (this.#longRttMs === 0) this.#longRttMs = shortRttMs;
    const overloaded = shortRttMs > this.#options.tolerance * this.#longRttMs;
    // The baseline is what latency is when Keel is not queueing. While overloaded it barely moves (a tenth of its
    // usual weight), so sustained overload cannot pass itself off as the new normal; a lasting change of the
    // partner's own latency still becomes the baseline, over a few thousand requests.
    const weight = Math.min(1, samples / this.#options.longWindowSize) * (overloaded ? 0.1 : 1);
    this.#longRttMs = this.#longRttMs * (1 - weight) + shortRttMs * weight;
    // Do not grow a limit the traffic never reached: the latency says nothing about a larger one.
    if (maxInFlight < this.#limit / 2) return;
    const gradient = Math.max(0.5, Math.min(1, (this.#options.tolerance * this.#longRttMs) / shortRttMs));
    const next = this.#limit * gradient + Math.sqrt(this.#limit);
    const smoothed = this.#limit * (1 - this.#options.smoothing) + next * this.#options.smoothing;
    this.#limit = Math.max(this.#options.minLimit, Math.min(this.#options.maxLimit, smoothed));
  }
}
