import { readFileSync } from 'node:fs';

/**
 * A load test's scenario: how many shoppers arrive each second (the arrival profile, open loop: they arrive
 * whatever Keel answers), what each one does (the mix), and how slow the partner is per country when Keel and
 * the benchmark gateway are started for the run. Built in: `flash-sale` (quiet, a 10x spike at a known moment,
 * then decay) and `steady`; or a JSON file of the same shape.
 */
export const arrivalKinds = ['card', 'brandpay', 'decline', 'duplicate', 'refund'] as const;
export type ArrivalKind = (typeof arrivalKinds)[number];

export interface Scenario {
  readonly name: string;
  readonly durationS: number;
  /** Arrivals per second at `t` seconds from the start. */
  readonly rateAt: (t: number) => number;
  /** Relative weights of what an arrival does. */
  readonly mix: Readonly<Record<ArrivalKind, number>>;
  /** The benchmark gateway's latency per country (`*` for every other), when the run starts its own. */
  readonly partnerLatency: Readonly<Record<string, { readonly p50_ms: number; readonly p99_ms: number }>>;
  /** The moment the spike starts, and the moment its peak ends, for a flash sale. */
  readonly spikeAtS?: number;
  readonly spikeEndS?: number;
}

/**
 * What a shopper does: mostly pay by card through the API or with Brand Pay through the hosted page, some
 * declined, some retrying with the same key, some refunded after.
 */
export const defaultMix: Readonly<Record<ArrivalKind, number>> = { card: 55, brandpay: 25, decline: 8, duplicate: 7, refund: 5 };
/** A partner's latency as the partners answer in production: p50 120 ms, p99 600 ms. */
export const partnerLikeLatency = { '*': { p50_ms: 120, p99_ms: 600 } } as const;

export interface ScenarioOptions {
  /** The peak rate (flash sale) or the rate (steady), arrivals per second. */
  readonly rate?: number;
  readonly durationS?: number;
}

/**
 * A flash sale: a tenth of the peak for the first third, the peak (10x) from the spike for a sixth of the run,
 * then an exponential decay back towards the quiet rate.
 */
export function flashSale(options: ScenarioOptions = {}): Scenario {
  const peak = options.rate ?? 60;
  const durationS = options.durationS ?? 60;
  const spikeAtS = Math.round(durationS / 3);
  const holdS = Math.max(1, Math.round(durationS / 6));
  const quiet = peak / 10;
  return {
    name: 'flash-sale',
    durationS,
    spikeAtS,
    spikeEndS: spikeAtS + holdS,
    rateAt: (t) => {
      if (t < spikeAtS) return quiet;
      if (t < spikeAtS + holdS) return peak;
      return quiet + (peak - quiet) * Math.exp(-(t - spikeAtS - holdS) / Math.max(1, durationS / 10));
    },
    mix: defaultMix,
    partnerLatency: partnerLikeLatency,
  };
}

export function steady(options: ScenarioOptions = {}): Scenario {
  const rate = options.rate ?? 20;
  return { name: 'steady', durationS: options.durationS ?? 30, rateAt: () => rate, mix: defaultMix, partnerLatency: partnerLikeLatency };
}

/**
 * A scenario from a JSON file: `{ "name", "duration_s", "profile": [{ "at_s", "rate" }] (a step function:
 * each rate holds from its `at_s`), "mix": { "card", "brandpay", "decline", "duplicate", "refund" }, "partner_latency":
 * { "<country>|*": { "p50_ms", "p99_ms" } } }`; `--rate` scales the profile so its peak is that rate.
 */
export function scenarioFromFile(path: string, options: ScenarioOptions = {}): Scenario {
  const raw = JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>;
  const problem = (what: string) => new Error(`${path}: ${what}`);
  const profile = raw['profile'];
  if (!Array.isArray(profile) || profile.length === 0) throw problem('profile must be a non-empty list of { "at_s", "rate" }');
  const steps = profile.map((step: unknown) => {
    const { at_s: at, rate } = (step ?? {}) as { at_s?: unknown; rate?: unknown };
    if (typeof at !== 'number' || at < 0 || typeof rate !== 'number' || rate < 0 || !Number.isFinite(rate)) throw problem('each profile step needs at_s >= 0 and rate >= 0');
    return { at, rate };
  }).sort((a, b) => a.at - b.at);
  const peak = Math.max(...steps.map((step) => step.rate));
  const scale = options.rate === undefined || peak === 0 ? 1 : options.rate / peak;
  const durationS = options.durationS ?? (typeof raw['duration_s'] === 'number' ? raw['duration_s'] : (steps.at(-1)?.at ?? 0) + 10);
  const mixRaw = (raw['mix'] ?? defaultMix) as Record<string, unknown>;
  const mix = Object.fromEntries(arrivalKinds.map((kind) => [kind, typeof mixRaw[kind] === 'number' ? (mixRaw[kind] as number) : 0])) as Record<ArrivalKind, number>;
  if (Object.values(mix).every((weight) => weight <= 0)) throw problem('mix needs a positive weight');
  const latency = (raw['partner_latency'] ?? partnerLikeLatency) as Scenario['partnerLatency'];
  return {
    name: typeof raw['name'] === 'string' ? raw['name'] : 'custom',
    durationS,
    rateAt: (t) => scale * ([...steps].reverse().find((step) => step.at <= t)?.rate ?? 0),
    mix,
    partnerLatency: latency,
  };
}

export function scenarioNamed(name: string, options: ScenarioOptions = {}): Scenario {
  if (name === 'flash-sale') return flashSale(options);
  if (name === 'steady') return steady(options);
  return scenarioFromFile(name, options);
}
