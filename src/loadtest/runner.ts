import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import * as hdr from 'hdr-histogram-js';
import { Pool } from 'undici';
import { createRandom } from '../simulator/latency.js';
import { arrivalKinds, type ArrivalKind, type Scenario } from './scenario.js';
import { apiPayment, brandPayCheckout, clientOf, registerShopper, type BrandPayShopper, type QueueWait, type ShopperResult } from './shoppers.js';

/**
 * Drives the public API with open-loop arrivals: each shopper is sent at the moment the profile says it arrives,
 * whatever Keel is doing with the others (no coordinated omission: a slow answer never delays the next
 * arrival), and its latency is measured from that moment. Latencies go into HDR histograms (one for the run,
 * one per second). Every second the runner samples what is in flight, and the partner calls in flight per
 * partner and country from the target's `/metrics`.
 */
export interface Target {
  readonly url: string;
  /** A merchant's secret key: the shoppers pay it. */
  readonly secretKey: string;
}

/** How a shopper ended; whether they waited in the queue first is counted apart (`queued`). */
export type Outcome = 'succeeded' | 'declined' | 'shed' | 'errors';

export interface StepReport {
  readonly at_s: number;
  readonly offered: number;
  readonly succeeded: number;
  readonly declined: number;
  readonly shed: number;
  readonly queued: number;
  readonly errors: number;
  readonly p50_ms: number;
  readonly p99_ms: number;
  /** The mean latency of the second's shoppers (Little's law per second). */
  readonly mean_ms: number;
  readonly in_flight: number;
  /** Partner calls in flight per `gateway/country` at the second's end. */
  readonly partner_in_flight: Readonly<Record<string, number>>;
  /** Shoppers waiting in the checkout queue at the second's end (the longest country's queue). */
  readonly queue_length: number;
  /** The queue's admission rate at the second's end (the highest country's); null when unbounded or unknown. */
  readonly queue_capacity_per_s: number | null;
}

/** The checkout queue as the shoppers met it. */
export interface QueueResult {
  readonly enabled: boolean;
  /** Every join, with the server's times and the first estimate. */
  readonly waits: readonly QueueWait[];
  /** Shoppers whose wait ended without an admission or an honest answer. */
  readonly lost: number;
  readonly maxLength: number;
  readonly maxCapacityPerS: number | null;
  readonly lapsed: number;
}

export interface RunResult {
  readonly steps: StepReport[];
  readonly latency: { readonly p50: number; readonly p90: number; readonly p99: number; readonly p999: number; readonly max: number; readonly mean: number };
  readonly arrivals: number;
  readonly outcomes: Readonly<Record<Outcome, number>>;
  readonly elapsedS: number;
  /** Every order a shopper paid for, with the amount Keel was asked for (the invariants check the partner). */
  readonly orders: ReadonlyMap<string, number>;
  readonly meanInFlight: number;
  readonly queue: QueueResult;
  /** For a flash sale: the p99 of the payments of shoppers who arrived before the spike, and during its peak. */
  readonly phases: { readonly quietP99: number; readonly spikeP99: number } | undefined;
}

export interface RunOptions {
  readonly seed?: number;
  readonly onStep?: (step: StepReport, elapsedS: number) => void;
  /** Whether API card payments first take a queue ticket (the target's checkout queue is on). */
  readonly queue?: boolean;
}

/** Brand Pay shoppers are reused at most this often a minute (the PIN limit is 10 per customer a minute). */
export const brandPayUsesPerMinute = 5;

const clientTimeoutMs = 30_000;
const tickMs = 5;

function histogram(): hdr.Histogram {
  return hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 3_600_000, numberOfSignificantValueDigits: 3, useWebAssembly: false });
}

/** What one answer means for the shopper: a payment made, declined, refused for load, or an error. */
export function outcomeOf(status: number, code: string | undefined): Outcome {
  if (status === 200 || status === 201 || status === 202) return 'succeeded';
  if (status === 402) return 'declined';
  if ((status === 503 && code === 'overloaded') || status === 429) return 'shed';
  return 'errors';
}

export async function runLoad(target: Target, scenario: Scenario, options: RunOptions = {}): Promise<RunResult> {
  const client = new Pool(target.url, { connections: 2_048, pipelining: 1, headersTimeout: clientTimeoutMs, bodyTimeout: clientTimeoutMs });
  const api = clientOf(client, target.secretKey);
  const queue = options.queue === true;
  const shoppers = await registerShoppers(api, scenario);
  let shopperTurn = 0;
  // Seeded, so a scenario's mix falls the same way every run.
  const random = createRandom(options.seed ?? 20261202);
  const weights = arrivalKinds.map((kind) => scenario.mix[kind]);
  const totalWeight = weights.reduce((sum, weight) => sum + weight, 0);
  const pick = (): ArrivalKind => {
    let roll = random() * totalWeight;
    for (const [index, kind] of arrivalKinds.entries()) {
      roll -= weights[index] ?? 0;
      if (roll < 0) return kind;
    }
    return 'card';
  };
  const overall = histogram();
  const seconds = Math.ceil(scenario.durationS);
  const perSecond = Array.from({ length: seconds }, () => ({ histogram: histogram(), offered: 0, succeeded: 0, declined: 0, shed: 0, queued: 0, errors: 0 }));
  const waits: QueueWait[] = [];
  let lost = 0;
  const outcomes: Record<Outcome, number> = { succeeded: 0, declined: 0, shed: 0, errors: 0 };
  const orders = new Map<string, number>();
  const pending = new Set<Promise<void>>();
  let inFlight = 0;

  const shopper = async (kind: ArrivalKind, second: number, arrivedAt: number) => {
    const orderId = `lt_${randomUUID()}`;
    const amount = 1000 + Math.floor(random() * 90) * 100;
    orders.set(orderId, amount);
    const step = perSecond[Math.min(second, seconds - 1)];
    let outcome: Outcome;
    let result: ShopperResult | undefined;
    try {
      if (kind === 'brandpay' && shoppers.length > 0) {
        const index = shopperTurn++;
        // Each shopper from an address of their own, as shoppers are (the PIN limit also counts per IP).
        result = await brandPayCheckout(api, shoppers[index % shoppers.length] as BrandPayShopper, { orderId, amount }, `10.${(index >> 16) & 255}.${(index >> 8) & 255}.${index & 255}`);
      } else {
        const card = kind === 'decline' ? '4000000000000002' : '4242424242424242';
        const body = { amount, currency: 'KRW', order_id: orderId, confirm: true, payment_method: { type: 'card', card: { number: card, exp_month: 12, exp_year: 2034, cvc: '123' } } };
        const paid = await apiPayment(api, body, queue);
        result = paid;
        // A shopper whose connection dropped sends the same request again under the same key: it must not pay twice.
        if (kind === 'duplicate' && !paid.lost) await api.call('POST', '/v1/payments', { body: paid.sent, key: paid.key }).catch(() => undefined);
        if (kind === 'refund' && outcomeOf(paid.status, paid.code) === 'succeeded' && paid.paymentId !== undefined) {
          await api.call('POST', '/v1/refunds', { body: { payment: paid.paymentId, amount: Math.floor(amount / 2) }, key: randomUUID() });
        }
      }
      outcome = result.lost ? 'errors' : outcomeOf(result.status, result.code);
    } catch {
      outcome = 'errors';
    }
    if (result?.wait !== undefined) waits.push(result.wait);
    if (result?.lost === true) lost += 1;
    if (result?.wait?.waited === true && step !== undefined) step.queued += 1;
    // A queued shopper's payment counts from their admission: the wait is the queue's, reported apart.
    const latencyMs = Math.max(1, Math.round(performance.now() - (result?.wait?.waited === true ? (result.admittedAtMs ?? arrivedAt) : arrivedAt)));
    overall.recordValue(latencyMs);
    if (step !== undefined) {
      step.histogram.recordValue(latencyMs);
      step[outcome] += 1;
    }
    outcomes[outcome] += 1;
  };

  const started = performance.now();
  let sent = 0;
  let expected = 0;
  let lastT = 0;
  let nextStep = 1;
  const samples: { in_flight: number; partner_in_flight: Record<string, number>; queue_length: number; queue_capacity_per_s: number | null }[] = [];
  let maxCapacity: number | null = null;
  let lapsed = 0;
  const reportOf = (index: number): StepReport => {
    const step = perSecond[index];
    const sample = samples[index] ?? { in_flight: 0, partner_in_flight: {}, queue_length: 0, queue_capacity_per_s: null };
    const count = step?.histogram.totalCount ?? 0;
    return {
      at_s: index,
      offered: step?.offered ?? 0,
      succeeded: step?.succeeded ?? 0,
      declined: step?.declined ?? 0,
      shed: step?.shed ?? 0,
      queued: step?.queued ?? 0,
      errors: step?.errors ?? 0,
      p50_ms: count === 0 ? 0 : (step?.histogram.getValueAtPercentile(50) ?? 0),
      p99_ms: count === 0 ? 0 : (step?.histogram.getValueAtPercentile(99) ?? 0),
      mean_ms: count === 0 ? 0 : Math.round(step?.histogram.mean ?? 0),
      ...sample,
    };
  };
  // At each second's end: what is in flight, and the partner calls in flight; the live line shows the second
  // as answered so far (the report, written at the end, counts every answer of the shoppers who arrived in it).
  const sampleStep = async (index: number) => {
    const scraped = await scrape(target.url).catch(() => undefined);
    const capacity = scraped?.capacity === undefined || scraped.capacity < 0 ? null : Math.round(scraped.capacity * 10) / 10;
    samples[index] = { in_flight: inFlight, partner_in_flight: scraped?.partnerInFlight ?? {}, queue_length: scraped?.queueLength ?? 0, queue_capacity_per_s: capacity };
    if (scraped?.capacity !== undefined && scraped.capacity >= 0) maxCapacity = Math.max(maxCapacity ?? 0, scraped.capacity);
    options.onStep?.(reportOf(index), (performance.now() - started) / 1000);
  };
  for (;;) {
    const t = (performance.now() - started) / 1000;
    if (t >= scenario.durationS) break;
    // Arrivals due by now: the integral of the rate, sent at once when the loop was late (never skipped).
    expected += ((scenario.rateAt(lastT) + scenario.rateAt(t)) / 2) * (t - lastT);
    lastT = t;
    const second = Math.floor(t);
    while (sent < Math.floor(expected)) {
      sent += 1;
      const step = perSecond[second];
      if (step !== undefined) step.offered += 1;
      inFlight += 1;
      const run = shopper(pick(), second, performance.now()).finally(() => {
        inFlight -= 1;
        pending.delete(run);
      });
      pending.add(run);
    }
    if (t >= nextStep) {
      const index = nextStep - 1;
      nextStep += 1;
      void sampleStep(index);
    }
    await sleep(tickMs);
  }
  // The arrivals are over; the shoppers still waiting get their answers (or time out).
  for (let index = nextStep - 1; index < seconds; index += 1) await sampleStep(index);
  await Promise.allSettled([...pending]);
  lapsed = (await scrape(target.url).catch(() => undefined))?.lapsed ?? 0;
  await client.close();
  const percentile = (value: number) => (overall.totalCount === 0 ? 0 : overall.getValueAtPercentile(value));
  const inFlightSamples = samples.map((sample) => sample.in_flight);
  return {
    steps: Array.from({ length: seconds }, (_, index) => reportOf(index)),
    latency: { p50: percentile(50), p90: percentile(90), p99: percentile(99), p999: percentile(99.9), max: overall.maxValue, mean: overall.mean },
    arrivals: sent,
    outcomes,
    elapsedS: (performance.now() - started) / 1000,
    orders,
    meanInFlight: inFlightSamples.length === 0 ? 0 : inFlightSamples.reduce((sum, value) => sum + value, 0) / inFlightSamples.length,
    phases: phasesOf(scenario, perSecond.map((step) => step.histogram)),
    queue: { enabled: queue, waits, lost, maxLength: Math.max(0, ...samples.map((sample) => sample.queue_length)), maxCapacityPerS: maxCapacity, lapsed },
  };
}

/** The p99 over every shopper of the quiet seconds before a spike, and over every shopper of its peak. */
function phasesOf(scenario: Scenario, seconds: readonly hdr.Histogram[]): RunResult['phases'] {
  const { spikeAtS, spikeEndS } = scenario;
  if (spikeAtS === undefined || spikeEndS === undefined) return undefined;
  const quiet = histogram();
  const spike = histogram();
  seconds.forEach((second, at) => {
    if (at < spikeAtS) quiet.add(second);
    else if (at < spikeEndS) spike.add(second);
  });
  const p99 = (merged: hdr.Histogram) => (merged.totalCount === 0 ? 0 : merged.getValueAtPercentile(99));
  return { quietP99: p99(quiet), spikeP99: p99(spike) };
}

/**
 * Enough Brand Pay shoppers, registered before the arrivals, that none is reused more than
 * `brandPayUsesPerMinute` times a minute at the scenario's peak.
 */
async function registerShoppers(api: ReturnType<typeof clientOf>, scenario: Scenario): Promise<BrandPayShopper[]> {
  const weights = arrivalKinds.reduce((sum, kind) => sum + scenario.mix[kind], 0);
  const share = weights === 0 ? 0 : scenario.mix.brandpay / weights;
  if (share === 0) return [];
  let peak = 0;
  for (let t = 0; t < scenario.durationS; t += 0.5) peak = Math.max(peak, scenario.rateAt(t));
  const count = Math.min(5_000, Math.max(1, Math.ceil((peak * share * 60) / brandPayUsesPerMinute)));
  const registered: BrandPayShopper[] = [];
  for (let index = 0; index < count; index += 25) {
    registered.push(...(await Promise.all(Array.from({ length: Math.min(25, count - index) }, (_, offset) => registerShopper(api, index + offset)))));
  }
  return registered;
}

/**
 * From the target's `/metrics`: `keel_bulkhead_in_flight{gateway,country}` as `gateway/country` → calls, the
 * longest checkout queue, the highest queue capacity (-1 unbounded) and the lapsed admissions.
 */
export async function scrape(url: string): Promise<{ partnerInFlight: Record<string, number>; queueLength: number; capacity: number | undefined; lapsed: number }> {
  const response = await fetch(`${url.replace(/\/+$/, '')}/metrics`, { signal: AbortSignal.timeout(2_000) });
  const text = await response.text();
  const partnerInFlight: Record<string, number> = {};
  for (const match of text.matchAll(/^keel_bulkhead_in_flight\{gateway="([^"]+)",country="([^"]+)"\} (\S+)$/gm)) partnerInFlight[`${match[1]}/${match[2]}`] = Number(match[3]);
  const values = (name: string) => [...text.matchAll(new RegExp(`^${name}\\{[^}]*\\} (\\S+)$`, 'gm'))].map((match) => Number(match[1]));
  const capacities = values('keel_checkout_queue_capacity_per_second');
  return {
    partnerInFlight,
    queueLength: Math.max(0, ...values('keel_checkout_queue_length')),
    capacity: capacities.length === 0 ? undefined : Math.max(...capacities),
    lapsed: values('keel_checkout_queue_lapsed_total').reduce((sum, value) => sum + value, 0),
  };
}
