import type { LatencyModel } from './model.js';

/**
 * A seeded lognormal latency model: median p50, and a spread chosen so the 99th percentile lands on p99
 * (z(0.99) = 2.326). Seeded so that a benchmark run can be repeated draw for draw.
 */
const z99 = 2.3263478740408408;

export function createRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function sampleLatencyMs(model: LatencyModel, random: () => number): number {
  if (model.p50Ms <= 0) return 0;
  const mu = Math.log(model.p50Ms);
  const sigma = Math.max(0, (Math.log(Math.max(model.p99Ms, model.p50Ms)) - mu) / z99);
  // Box-Muller: one standard normal draw from two uniforms.
  const u1 = Math.max(random(), Number.EPSILON);
  const u2 = random();
  const normal = Math.sqrt(-2 * Math.log(u1)) * Math.cos(2 * Math.PI * u2);
  return Math.exp(mu + sigma * normal);
}
