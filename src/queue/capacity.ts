import type { Metrics } from '../observability/metrics.js';
import type { AdaptiveConcurrencyLimit } from '../resilience/adaptive-limit.js';
import type { ResourceSnapshot } from '../resilience/resources.js';

/**
 * This instance's checkout capacity per country, in admissions per second, measured from its own metrics over
 * the last `windowMs` (Little's law, throughput = concurrency / latency):
 * - the API: the adaptive limit's share for new work over the mean latency of checkout requests
 *   (`POST /v1/payments`, `POST /pay/{cs}/approve`);
 * - the partner: for each partner resource of the country whose breaker is not open, its bulkhead over the mean
 *   partner call latency times the partner calls a payment makes (none when every breaker is open);
 * - saturated (something was shed in the window, or the limit is 90% full): no more than the measured goodput.
 *
 * The capacity is 80% of the lower bound, since queues form at 70-80% saturation, and at least one admission a
 * second so a queue always moves. Undefined until a checkout has been measured: the queue then has no bound of
 * this instance's.
 */
export const capacityWindowMs = 10_000;
export const capacityHeadroom = 0.8;
export const capacityFloorPerS = 1;
const checkoutRoutes = new Set(['/v1/payments', '/pay/:session/approve']);

interface Sample {
  readonly at: number;
  /** Checkout requests answered (not 5xx), their summed latency, and those answered 2xx. */
  readonly checkouts: number;
  readonly checkoutSeconds: number;
  readonly goodput: number;
  readonly shed: number;
  /** Per country: partner calls and their summed latency, and payment confirmations. */
  readonly partner: Map<string, { calls: number; seconds: number; payments: number }>;
}

export interface CapacityInputs {
  readonly metrics: Metrics;
  readonly limiter: () => AdaptiveConcurrencyLimit | undefined;
  readonly newWorkShare: number;
  readonly resources: () => readonly ResourceSnapshot[];
}

export class CapacityMeter {
  readonly #inputs: CapacityInputs;
  #samples: Sample[] = [];

  constructor(inputs: CapacityInputs) {
    this.#inputs = inputs;
  }

  /** Takes a sample of the metrics (each tick); keeps a window's worth. */
  async sample(now: number): Promise<void> {
    const { metrics } = this.#inputs;
    const http = await metrics.httpRequestDurationSeconds.get();
    let checkouts = 0;
    let checkoutSeconds = 0;
    let goodput = 0;
    for (const value of http.values) {
      const labels = value.labels as Record<string, string>;
      if (labels['method'] !== 'POST' || !checkoutRoutes.has(labels['route'] ?? '') || labels['status_class'] === '5xx') continue;
      if (value.metricName?.endsWith('_count') === true) {
        checkouts += value.value;
        if (labels['status_class'] === '2xx') goodput += value.value;
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
    this.#samples.push({ at: now, checkouts, checkoutSeconds, goodput, shed, partner });
    while (this.#samples.length > 2 && now - (this.#samples[1]?.at ?? now) >= capacityWindowMs) this.#samples.shift();
  }

  /** Admissions per second this instance can take for `country`; undefined while nothing is measured. */
  capacityOf(country: string): number | undefined {
    const first = this.#samples[0];
    const last = this.#samples.at(-1);
    if (first === undefined || last === undefined || last.at - first.at < 1_000) return undefined;
    const seconds = (last.at - first.at) / 1000;
    const checkouts = last.checkouts - first.checkouts;
    if (checkouts <= 0) return undefined;
    const latencyS = Math.max(0.001, (last.checkoutSeconds - first.checkoutSeconds) / checkouts);
    const limiter = this.#inputs.limiter();
    const limit = limiter?.limit ?? 1;
    let bound = (limit * this.#inputs.newWorkShare) / latencyS;
    const partnerBound = this.#partnerBound(country, first, last);
    if (partnerBound !== undefined) bound = Math.min(bound, partnerBound);
    const saturated = last.shed > first.shed || (limiter !== undefined && limiter.inFlight >= 0.9 * limiter.limit);
    if (saturated) bound = Math.min(bound, (last.goodput - first.goodput) / seconds);
    return Math.max(capacityFloorPerS, capacityHeadroom * bound);
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
