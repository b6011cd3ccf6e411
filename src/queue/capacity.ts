import type { Metrics } from '../observability/metrics.js';
import type { AdaptiveConcurrencyLimit } from '../resilience/adaptive-limit.js';
import type { ResourceSnapshot } from '../resilience/resources.js';

/**
 * This instance's checkout capacity per country, in admissions per second, from its own metrics:
 * - the API, found by feedback as the adaptive concurrency limit finds its own: once checkout saturates —
 *   something was shed, the limit is 90% full, or checkout requests (`POST /v1/payments`,
 *   `POST /pay/{cs}/approve`, at least `slowMinCheckouts` of them) take more than `slowFactor` times their quiet latency (its average over the unsaturated windows,
 *   smoothed over 30 s), over the last 2 s — the capacity drops to 80% of the checkouts just answered per second;
 *   the next decision waits for a window wholly after the drop. While nothing saturates and checkouts use at least
 *   90% of it, it grows by 10% a second (at least one admission). Before the first saturation it starts slow:
 *   twice the most checkouts answered per second over the last minute, and at least `slowStartFloorPerS`, so a
 *   sudden spike is let in at a rate Keel has shown it can take, doubling every window while it holds;
 * - the partner: Little's law, for each partner resource of the country whose breaker is not open, its bulkhead
 *   over the mean partner call latency times the partner calls a payment makes (over the last 10 s), at 80%, since
 *   queues form at 70-80% saturation; every breaker open leaves only the floor.
 *
 * The capacity is the lower of the two, at least one admission a second so a queue always moves; undefined while
 * neither bounds it.
 */
export const capacityWindowMs = 10_000;
export const feedbackWindowMs = 2_000;
export const capacityHeadroom = 0.8;
export const capacityFloorPerS = 1;
export const capacityGrowthPerS = 0.1;
export const baselineTauMs = 30_000;
/** Checkout this much slower than its quiet latency is saturated: admitted shoppers' payments stay near it. */
export const slowFactor = 1.5;
export const slowMinCheckouts = 20;
export const slowStartFloorPerS = 10;
const peakMemoryMs = 60_000;
const checkoutRoutes = new Set(['/v1/payments', '/pay/:session/approve']);

interface Sample {
  readonly at: number;
  /** Checkout requests answered (not 5xx) and their summed latency. */
  readonly checkouts: number;
  readonly checkoutSeconds: number;
  readonly shed: number;
  /** Per country: partner calls and their summed latency, and payment confirmations. */
  readonly partner: Map<string, { calls: number; seconds: number; payments: number }>;
}

export interface CapacityInputs {
  readonly metrics: Metrics;
  readonly limiter: () => AdaptiveConcurrencyLimit | undefined;
  readonly resources: () => readonly ResourceSnapshot[];
}

export class CapacityMeter {
  readonly #inputs: CapacityInputs;
  #samples: Sample[] = [];
  /** The API's admissions per second found by feedback; undefined until checkout first saturated. */
  #apiCapacity: number | undefined;
  #baselineLatencyS: number | undefined;
  #lastDropAt = -Infinity;
  /** The most checkouts answered per second in a window, per window over the last minute (slow start). */
  #throughputs: { at: number; perS: number }[] = [];

  constructor(inputs: CapacityInputs) {
    this.#inputs = inputs;
  }

  /** The API bound found so far (tests and the report read it). */
  get apiCapacity(): number | undefined {
    return this.#apiCapacity;
  }

  /** Takes a sample of the metrics (each tick), keeps a window's worth, and adjusts the API bound. */
  async sample(now: number): Promise<void> {
    const { metrics } = this.#inputs;
    const http = await metrics.httpRequestDurationSeconds.get();
    let checkouts = 0;
    let checkoutSeconds = 0;
    for (const value of http.values) {
      const labels = value.labels as Record<string, string>;
      if (labels['method'] !== 'POST' || !checkoutRoutes.has(labels['route'] ?? '') || labels['status_class'] === '5xx') continue;
      if (value.metricName?.endsWith('_count') === true) {
        checkouts += value.value;
      } else if (value.metricName?.endsWith('_sum') === true) {
        checkoutSeconds += value.value;
      }
    }
    const partner = new Map<string, { calls: number; seconds: number; payments: number }>();
    const row = (country: string) => {
      let entry = partner.get(country);
      if (entry === undefined) partner.set(country, (entry = { calls: 0, seconds: 0, payments: 0 }));
      return entry;
    };
    for (const value of (await metrics.partnerCallDurationSeconds.get()).values) {
      const country = String(value.labels['country'] ?? '');
      if (value.metricName?.endsWith('_count') === true) row(country).calls += value.value;
      else if (value.metricName?.endsWith('_sum') === true) row(country).seconds += value.value;
    }
    for (const value of (await metrics.paymentOutcomes.get()).values) row(String(value.labels['country'] ?? '')).payments += value.value;
    const shed = (await metrics.shedRequests.get()).values.reduce((sum, value) => sum + value.value, 0);
    this.#samples.push({ at: now, checkouts, checkoutSeconds, shed, partner });
    while (this.#samples.length > 2 && now - (this.#samples[1]?.at ?? now) >= capacityWindowMs) this.#samples.shift();
    this.#feedback(now);
  }

  #feedback(now: number): void {
    const last = this.#samples.at(-1);
    const previous = this.#samples.at(-2);
    const first = [...this.#samples].reverse().find((sample) => now - sample.at >= feedbackWindowMs);
    if (last === undefined || first === undefined || previous === undefined) return;
    const seconds = (last.at - first.at) / 1000;
    const checkouts = last.checkouts - first.checkouts;
    const checkoutsPerS = checkouts / seconds;
    const latencyS = checkouts > 0 ? (last.checkoutSeconds - first.checkoutSeconds) / checkouts : undefined;
    this.#throughputs.push({ at: now, perS: checkoutsPerS });
    while ((this.#throughputs[0]?.at ?? now) < now - peakMemoryMs) this.#throughputs.shift();
    const limiter = this.#inputs.limiter();
    // A few checkouts' mean is the partner's spread, not Keel's saturation: latency is judged over enough of them.
    const slow = latencyS !== undefined && checkouts >= slowMinCheckouts && this.#baselineLatencyS !== undefined && latencyS > slowFactor * this.#baselineLatencyS;
    const saturated = last.shed > first.shed || (limiter !== undefined && limiter.inFlight >= 0.9 * limiter.limit) || slow;
    if (!saturated && latencyS !== undefined) {
      const weight = 1 - Math.exp(-(last.at - previous.at) / baselineTauMs);
      this.#baselineLatencyS = this.#baselineLatencyS === undefined ? latencyS : this.#baselineLatencyS + weight * (latencyS - this.#baselineLatencyS);
    }
    // After a drop, the next decision waits for a window wholly after it.
    if (now - this.#lastDropAt <= feedbackWindowMs) return;
    if (saturated) {
      this.#lastDropAt = now;
      this.#apiCapacity = Math.max(capacityFloorPerS, capacityHeadroom * Math.min(this.#apiCapacity ?? Infinity, Math.max(checkoutsPerS, capacityFloorPerS)));
    } else if (this.#apiCapacity !== undefined && checkoutsPerS >= 0.9 * this.#apiCapacity) {
      const stepS = (last.at - previous.at) / 1000;
      this.#apiCapacity += Math.max(1, capacityGrowthPerS * this.#apiCapacity) * stepS;
    }
  }

  /** Admissions per second this instance can take for `country`; undefined while nothing bounds it. */
  capacityOf(country: string): number | undefined {
    const first = this.#samples[0];
    const last = this.#samples.at(-1);
    const partnerBound = first === undefined || last === undefined ? undefined : this.#partnerBound(country, first, last);
    const slowStart = this.#throughputs.length === 0 ? Infinity : Math.max(slowStartFloorPerS, 2 * Math.max(...this.#throughputs.map((entry) => entry.perS)));
    const bound = Math.min(this.#apiCapacity ?? slowStart, partnerBound === undefined ? Infinity : capacityHeadroom * partnerBound);
    return Number.isFinite(bound) ? Math.max(capacityFloorPerS, bound) : undefined;
  }
  #partnerBound(country: string, first: Sample, last: Sample): number | undefined {
    const now = last.partner.get(country);
    if (now === undefined) return undefined;
    const before = first.partner.get(country) ?? { calls: 0, seconds: 0, payments: 0 };
    const calls = now.calls - before.calls;
    const payments = now.payments - before.payments;
    if (calls <= 0 || payments <= 0) return undefined;
    const callLatencyS = Math.max(0.001, (now.seconds - before.seconds) / calls);
    const callsPerPayment = calls / payments;
    let slots = 0;
    for (const resource of this.#inputs.resources()) {
      if (resource.resource.split(':').at(-1) !== country || resource.state === 'open') continue;
      slots += resource.bulkhead.max;
    }
    return slots / (callLatencyS * callsPerPayment);
  }
}
