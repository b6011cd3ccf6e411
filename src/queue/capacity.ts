import type { Metrics } from '../observability/metrics.js';
import type { AdaptiveConcurrencyLimit } from '../resilience/adaptive-limit.js';
import type { ResourceSnapshot } from '../resilience/resources.js';

/**
 * This instance's checkout capacity per country, in admissions per second, from its own metrics:
 * - the API, found by feedback as the adaptive concurrency limit finds its own. Checkout saturates when, over the
 *   last 2 s, something was shed, the limit is 90% full, or checkout requests (`POST /v1/payments`,
 *   `POST /pay/{cs}/approve`, at least `slowMinCheckouts` of them) spent more of Keel's own time (their latency
 *   less the partner calls within them) than when quiet, by more than `slowFactor - 1` of their quiet latency —
 *   the partner's time is left out, its spread being the partner's, not Keel's saturation. Then the capacity drops
 *   to `dropFactor` of the checkouts just answered a second, once: while checkout answers at least what is
 *   admitted it is draining what came in before the drop, and drops again only if that lasts past `drainMs`; the
 *   next decision waits for a window wholly after the drop. While admissions use it (checkouts at 90% of it) and
 *   checkout's added own time stays within `targetFactor - 1` of its quiet latency, it regains half the gap to the
 *   throughput it saturated at each second, then probes past it by `probeGrowthPerS` a second — steadily, so the
 *   estimated waits (checkout-queue.ts) can count on it. Before it first saturates it starts slow: twice the most
 *   checkouts answered a second over the last minute, at least `slowStartFloorPerS`, doubling while it holds;
 *   once shoppers wait under it, the capacity holds there and probes from it;
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
/** A saturated checkout's capacity drops to this share of what it answered. */
export const dropFactor = 0.9;
export const capacityFloorPerS = 1;
/** Past the last saturation's throughput the capacity grows this much a second; below it, it regains half the gap a second. */
export const probeGrowthPerS = 0.05;
export const recoveryPerS = 0.5;
export const baselineTauMs = 30_000;
/** Checkout this much slower than its quiet latency is saturated: admitted shoppers' payments stay near it. */
export const slowFactor = 1.5;
/** The capacity grows only while checkout answers within this much of its quiet latency. */
export const targetFactor = 1.25;
export const slowMinCheckouts = 20;
export const slowStartFloorPerS = 10;
const peakMemoryMs = 60_000;
/** How long checkout may stay saturated while it drains before the capacity drops anyway. */
const drainMs = 2 * feedbackWindowMs;
const checkoutRoutes = new Set(['/v1/payments', '/pay/:session/approve']);

interface Sample {
  readonly at: number;
  /** Checkout requests answered (not 5xx) and their summed latency. */
  readonly checkouts: number;
  readonly checkoutSeconds: number;
  /** Their summed latency less the partner calls made within them: Keel's own time. */
  readonly ownSeconds: number;
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
  /** Checkout's mean latency and own time while nothing presses it, smoothed over `baselineTauMs`. */
  #quiet: { totalS: number; ownS: number } | undefined;
  #lastDropAt = -Infinity;
  #drainingSince: number | undefined;
  /** The checkouts answered per second when checkout last saturated: regained quickly after a drop, probed past slowly. */
  #ceiling: number | undefined;
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
  async sample(now: number, queueing = false): Promise<void> {
    const { metrics } = this.#inputs;
    const total = checkoutSums(await metrics.httpRequestDurationSeconds.get());
    const own = checkoutSums(await metrics.httpRequestOwnDurationSeconds.get());
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
    this.#samples.push({ at: now, checkouts: total.count, checkoutSeconds: total.seconds, ownSeconds: own.seconds, shed, partner });
    while (this.#samples.length > 2 && now - (this.#samples[1]?.at ?? now) >= capacityWindowMs) this.#samples.shift();
    this.#feedback(now, queueing);
  }

  #feedback(now: number, queueing: boolean): void {
    const last = this.#samples.at(-1);
    const previous = this.#samples.at(-2);
    const first = [...this.#samples].reverse().find((sample) => now - sample.at >= feedbackWindowMs);
    if (last === undefined || first === undefined || previous === undefined) return;
    const seconds = (last.at - first.at) / 1000;
    const checkouts = last.checkouts - first.checkouts;
    const checkoutsPerS = checkouts / seconds;
    // The slow start this window was admitted under, before its own throughput raises it.
    const slowStart = this.#slowStart();
    this.#throughputs.push({ at: now, perS: checkoutsPerS });
    while ((this.#throughputs[0]?.at ?? now) < now - peakMemoryMs) this.#throughputs.shift();
    const stepS = (last.at - previous.at) / 1000;
    const latency = checkouts > 0 ? { totalS: (last.checkoutSeconds - first.checkoutSeconds) / checkouts, ownS: (last.ownSeconds - first.ownSeconds) / checkouts } : undefined;
    const limiter = this.#inputs.limiter();
    // Keel's own time added to checkout over its quiet own time, as a share of the quiet latency: the partner's
    // time is left out, its spread being the partner's and not Keel's saturation. Judged over enough checkouts.
    const quiet = this.#quiet;
    const added = latency !== undefined && quiet !== undefined && checkouts >= slowMinCheckouts ? (latency.ownS - quiet.ownS) / quiet.totalS : undefined;
    const saturated = last.shed > first.shed || (limiter !== undefined && limiter.inFlight >= 0.9 * limiter.limit) || (added ?? 0) > slowFactor - 1;
    const pressed = checkoutsPerS >= 0.9 * (this.#apiCapacity ?? slowStart ?? Infinity);
    // The quiet latency is learnt while nothing saturates or presses checkout.
    if (!saturated && !pressed && latency !== undefined) {
      const weight = 1 - Math.exp(-(stepS * 1000) / baselineTauMs);
      this.#quiet = quiet === undefined ? latency : { totalS: quiet.totalS + weight * (latency.totalS - quiet.totalS), ownS: quiet.ownS + weight * (latency.ownS - quiet.ownS) };
    }
    // After a drop, the next decision waits for a window wholly after it.
    if (now - this.#lastDropAt <= feedbackWindowMs) return;
    if (saturated) {
      // Answering at least what is admitted, checkout is draining the backlog let in before the last drop: dropping
      // again would compound. It drops only when it falls behind the admissions, or stays saturated past the drain.
      if (this.#apiCapacity !== undefined && checkoutsPerS >= this.#apiCapacity && (this.#drainingSince ?? now) > now - drainMs) {
        this.#drainingSince ??= now;
        return;
      }
      this.#drainingSince = undefined;
      this.#lastDropAt = now;
      this.#apiCapacity = Math.max(capacityFloorPerS, dropFactor * Math.min(this.#apiCapacity ?? Infinity, Math.max(checkoutsPerS, capacityFloorPerS)));
      this.#ceiling = Math.max(this.#apiCapacity, checkoutsPerS);
      return;
    }
    this.#drainingSince = undefined;
    // Shoppers waiting under the slow start: it holds there, and from here probes upwards.
    if ((pressed || queueing) && this.#apiCapacity === undefined) this.#apiCapacity = slowStart;
    // Grows while admissions use it and checkout stays near its quiet latency.
    if (pressed && (added ?? 0) <= targetFactor - 1 && this.#apiCapacity !== undefined) {
      const cap = this.#apiCapacity;
      const ceiling = this.#ceiling ?? cap;
      this.#apiCapacity = cap < ceiling ? Math.min(ceiling, cap + Math.max(1, recoveryPerS * (ceiling - cap)) * stepS) : cap * Math.exp(Math.log(1 + probeGrowthPerS) * stepS);
    }
  }

  /** Before checkout first saturates: twice the most checkouts answered in a window over the last minute. */
  #slowStart(): number | undefined {
    return this.#throughputs.length === 0 ? undefined : Math.max(slowStartFloorPerS, 2 * Math.max(...this.#throughputs.map((entry) => entry.perS)));
  }

  /** Admissions per second this instance can take for `country`; undefined while nothing bounds it. */
  capacityOf(country: string): number | undefined {
    const { api, partner } = this.#bounds(country);
    const bound = Math.min(api, partner);
    return Number.isFinite(bound) ? Math.max(capacityFloorPerS, bound) : undefined;
  }

  /** Whether `country`'s capacity is the API's probing one (it grows by `probeGrowthPerS` while used). */
  probes(country: string): boolean {
    const { api, partner } = this.#bounds(country);
    return this.#apiCapacity !== undefined && api <= partner;
  }

  #bounds(country: string): { api: number; partner: number } {
    const first = this.#samples[0];
    const last = this.#samples.at(-1);
    const partnerBound = first === undefined || last === undefined ? undefined : this.#partnerBound(country, first, last);
    return { api: this.#apiCapacity ?? this.#slowStart() ?? Infinity, partner: partnerBound === undefined ? Infinity : capacityHeadroom * partnerBound };
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

function checkoutSums(metric: { values: { labels: Record<string, string | number>; value: number; metricName?: string }[] }): { count: number; seconds: number } {
  let count = 0;
  let seconds = 0;
  for (const value of metric.values) {
    const labels = value.labels;
    if (labels['method'] !== 'POST' || !checkoutRoutes.has(String(labels['route'] ?? '')) || labels['status_class'] === '5xx') continue;
    if (value.metricName?.endsWith('_count') === true) count += value.value;
    else if (value.metricName?.endsWith('_sum') === true) seconds += value.value;
  }
  return { count, seconds };
}
