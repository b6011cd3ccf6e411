import { randomBytes, randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { pino } from 'pino';
import { loadConfig } from '../src/config.js';
import { createMerchant } from '../src/merchants/merchants.js';
import { createKeel } from '../src/runtime.js';
import { dropSchema } from '../src/storage/database.js';

/**
 * `npm run bench -- breaker`: what the breaker does to a partner's partial failure. At a steady 11 payments/s
 * (open loop: a payment starts every 1/11 s whatever the previous ones do), the benchmark gateway fails 5%, 10%,
 * 30% and 60% of calls (HTTP 500), each rate for `KEEL_BENCH_BREAKER_SECONDS` (default 30). Per rate it counts
 * how payments ended: approved (200), partner failed (202 processing: a 500 after sending is an unknown outcome,
 * settled later by inquiry), refused before sending (503: the breaker open), and how often the breaker opened.
 * Keel's default breaker rule (20 calls, 50% in 10 s) is what is measured, once per gateway seed (the seed
 * decides which calls fail, so a small early window can fail more often than the rate).
 */

const ratePerSecond = Number(process.env['KEEL_BENCH_BREAKER_RATE'] ?? 11);
const secondsEach = Number(process.env['KEEL_BENCH_BREAKER_SECONDS'] ?? 30);
const errorRates = (process.env['KEEL_BENCH_BREAKER_ERROR_RATES'] ?? '0.05,0.1,0.3,0.6').split(',').map(Number);
const databaseUrl = process.env['KEEL_DATABASE_URL'] ?? process.env['KEEL_TEST_DATABASE_URL'] ?? 'postgres://root@127.0.0.1:5432/test';

interface Tally {
  readonly errorRate: number;
  payments: number;
  approved: number;
  partnerFailed: number;
  refused: number;
  other: Record<number, number>;
  breakerOpened: number;
}

const seeds = (process.env['KEEL_BENCH_BREAKER_SEEDS'] ?? '1,2,3').split(',').map(Number);

export async function runBreakerBench(): Promise<void> {
  const runs: { seed: number; tallies: Tally[] }[] = [];
  let rule = '';
  for (const seed of seeds) {
    const { tallies, ruleText } = await runSeed(seed);
    runs.push({ seed, tallies });
    rule = ruleText;
  }
  console.log(`breaker under partial failure: ${ratePerSecond} payments/s, ${secondsEach} s per error rate, rule ${rule}, gateway seeds ${seeds.join(', ')}`);
  console.log('| partner errors | seed | payments | approved | partner failed (202) | refused before sending (503) | other | breaker opened |');
  console.log('| --- | --- | --- | --- | --- | --- | --- | --- |');
  for (const errorRate of errorRates) {
    for (const { seed, tallies } of runs) {
      const tally = tallies.find((candidate) => candidate.errorRate === errorRate);
      if (tally === undefined) continue;
      const other = Object.entries(tally.other).map(([status, n]) => `${n} x ${status}`).join(', ') || '0';
      console.log(`| ${Math.round(errorRate * 100)}% | ${seed} | ${tally.payments} | ${tally.approved} | ${tally.partnerFailed} | ${tally.refused} | ${other} | ${tally.breakerOpened} |`);
    }
  }
}

async function runSeed(seed: number): Promise<{ tallies: Tally[]; ruleText: string }> {
  const schema = `keel_bench_breaker_${randomBytes(4).toString('hex')}`;
  const base = loadConfig({});
  const keel = await createKeel({
    config: { ...base, port: 0, databaseUrl, logLevel: 'warn', rateLimit: { perSecond: 100_000, burst: 100_000 }, shedding: { ...base.shedding, enabled: false } },
    role: 'all',
    inMemory: true,
    databaseSchema: schema,
    simulatorPort: 0,
    simulatorSeed: seed,
    logDestination: pino.destination('/dev/null'),
  });
  try {
    const url = await keel.listen();
    const merchant = await createMerchant(keel.database.db, keel.services.deps.cipher, { name: 'Breaker Bench', gateway: 'toss' });
    const tallies: Tally[] = [];
    for (const errorRate of errorRates) {
      await fetch(`${keel.gatewayUrl}/__sim/faults`, { method: 'POST', body: JSON.stringify({ mode: 'errors', rate: errorRate, duration_s: secondsEach + 5 }) });
      const tally: Tally = { errorRate, payments: 0, approved: 0, partnerFailed: 0, refused: 0, other: {}, breakerOpened: 0 };
      tallies.push(tally);
      const watcher = watchBreaker(keel.services.resources.snapshot.bind(keel.services.resources), () => (tally.breakerOpened += 1));
      const inFlight: Promise<void>[] = [];
      const started = performance.now();
      for (let index = 0; index < ratePerSecond * secondsEach; index += 1) {
        const dueAt = started + (index * 1000) / ratePerSecond;
        const wait = dueAt - performance.now();
        if (wait > 0) await sleep(wait);
        inFlight.push(pay(url, merchant.secret_key).then((status) => count(tally, status)));
      }
      await Promise.all(inFlight);
      watcher.stop();
      if (process.env['KEEL_BENCH_BREAKER_TRACE'] === '1') {
        const metrics = await (await fetch(`${url}/metrics`)).text();
        console.error(metrics.split('\n').filter((line) => line.startsWith('keel_partner_call_duration_seconds_count') || line.startsWith('keel_partner_calls_refused_total')).join('\n'));
      }
      await fetch(`${keel.gatewayUrl}/__sim/faults`, { method: 'DELETE' });
      // Let the breaker close again before the next rate: its open time, then a few clean calls.
      await sleep(keel.services.config.breaker.errorTimeoutMs + 1_000);
      for (let index = 0; index < 5; index += 1) await pay(url, merchant.secret_key);
    }
    const { breaker } = keel.services.config;
    return { tallies, ruleText: `${breaker.minimumCalls} calls / ${breaker.failureRatePercent}% in ${breaker.windowMs / 1000} s, open ${breaker.errorTimeoutMs / 1000} s, ${breaker.successThreshold} half-open successes` };
  } finally {
    await keel.close();
    await dropSchema(databaseUrl, schema);
  }
}

async function pay(url: string, secretKey: string): Promise<number> {
  const response = await fetch(`${url}/v1/payments`, {
    method: 'POST',
    headers: { authorization: `Bearer ${secretKey}`, 'idempotency-key': randomUUID(), 'content-type': 'application/json' },
    body: JSON.stringify({ amount: 1000, currency: 'KRW', order_id: `ord_${randomUUID()}`, confirm: true, payment_method: { type: 'card', card: { number: '4242424242424242', exp_month: 12, exp_year: 2034, cvc: '123' } } }),
  });
  await response.arrayBuffer();
  return response.status;
}

function count(tally: Tally, status: number): void {
  tally.payments += 1;
  if (status === 200) tally.approved += 1;
  else if (status === 202) tally.partnerFailed += 1;
  else if (status === 503) tally.refused += 1;
  else tally.other[status] = (tally.other[status] ?? 0) + 1;
}

/**
 * Counts transitions to open by polling the resources every 20 ms, and logs the window the last closed poll saw
 * before each (a half-open reopening shows the half-open state instead).
 */
function watchBreaker(snapshot: () => readonly { resource: string; state: string; opened_at: string | null; calls_in_window: number; errors_in_window: number }[], onOpen: () => void): { stop(): void } {
  const seen = new Set<string>();
  const last = new Map<string, string>();
  const timer = setInterval(() => {
    for (const resource of snapshot()) {
      if (resource.state === 'open' && resource.opened_at !== null && !seen.has(resource.opened_at)) {
        seen.add(resource.opened_at);
        if (process.env['KEEL_BENCH_BREAKER_TRACE'] === '1') console.error(`opened ${resource.resource} at ${resource.opened_at}; before: ${last.get(resource.resource) ?? 'none'}`);
        onOpen();
      }
      if (resource.state !== 'open') last.set(resource.resource, `${resource.state} ${resource.errors_in_window}/${resource.calls_in_window}`);
    }
  }, 20);
  return { stop: () => clearInterval(timer) };
}
