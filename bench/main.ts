import { randomBytes, randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import Fastify from 'fastify';
import pg from 'pg';
import { pino } from 'pino';
import { Pool } from 'undici';
import { loadConfig } from '../src/config.js';
import { createMerchant } from '../src/merchants/merchants.js';
import { createKeel } from '../src/runtime.js';
import { statementCounts } from '../src/storage/commenting-dialect.js';
import { dropSchema } from '../src/storage/database.js';
import { commitCount, costPer, cpuSnapshot, type Cost, type CostSnapshot } from './cost.js';
import { startPaymentFloor } from './payment-floor.js';

/**
 * `npm run bench`: Keel's `POST /v1/payments` (confirm: true) against two floors, in one process, on the same
 * PostgreSQL, at the same client concurrency, each request with a fresh idempotency key: a bare Fastify route
 * doing one INSERT per request, and the payment floor (payment-floor.ts) — a minimal correct payment by hand on
 * Keel's schema, through the same gateway and connector. The ratios of the throughputs are the figures that
 * matter, since absolute numbers move with the machine; each run also gives what a payment cost it (cost.ts).
 * The benchmark gateway runs in-process at zero latency. Keel and the payment floor run `KEEL_BENCH_ROUNDS`
 * times (3) in alternating order, and the ratio reported is the median of the rounds' ratios: on a shared
 * machine one pair of runs can differ by a third from the next.
 */

const concurrency = Number(process.env['KEEL_BENCH_CONCURRENCY'] ?? 64);
const durationMs = Number(process.env['KEEL_BENCH_DURATION_MS'] ?? 10_000);
const warmupMs = Number(process.env['KEEL_BENCH_WARMUP_MS'] ?? 2_000);
const databaseUrl = process.env['KEEL_DATABASE_URL'] ?? process.env['KEEL_TEST_DATABASE_URL'] ?? 'postgres://root@127.0.0.1:5432/test';
const poolSizeMax = 20;

interface Run {
  readonly name: string;
  /** Answered 2xx within the measuring window: the goodput. */
  readonly requests: number;
  readonly errors: number;
  /** Non-2xx answers by status, so a refusal is never counted as throughput. */
  readonly refusals: Record<number, number>;
  readonly perSecond: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  /** Per payment answered 2xx over the whole run (warm-up and drain included); undefined for the bare floor. */
  readonly cost: Cost | undefined;
  /** Of the statements, those sent outside any request (relay, projections, jobs). */
  readonly backgroundStatements: number;
}

interface Target {
  readonly url: string;
  readonly path: string;
  makeRequest(): { headers: Record<string, string>; body: string };
  /** Statements sent so far: all of them, and those outside any request. */
  statements(): { all: number; background: number };
  close(): Promise<void>;
}

interface Driven {
  readonly requests: number;
  readonly answeredAll: number;
  readonly errors: number;
  readonly refusals: Record<number, number>;
  readonly perSecond: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
}

async function drive(target: Target): Promise<Driven> {
  const client = new Pool(target.url, { connections: concurrency, pipelining: 1 });
  const latencies: number[] = [];
  let errors = 0;
  let answeredAll = 0;
  const refusals: Record<number, number> = {};
  let measuring = false;
  let stop = false;
  const worker = async () => {
    while (!stop) {
      const { headers, body } = target.makeRequest();
      const started = performance.now();
      const response = await client.request({ method: 'POST', path: target.path, headers: { 'content-type': 'application/json', ...headers }, body });
      await response.body.text();
      if (response.statusCode < 300) answeredAll += 1;
      if (!measuring) continue;
      if (response.statusCode >= 300) {
        errors += 1;
        refusals[response.statusCode] = (refusals[response.statusCode] ?? 0) + 1;
        continue;
      }
      latencies.push(performance.now() - started);
    }
  };
  const workers = Array.from({ length: concurrency }, worker);
  await new Promise((resolve) => setTimeout(resolve, warmupMs));
  measuring = true;
  const started = performance.now();
  await new Promise((resolve) => setTimeout(resolve, durationMs));
  measuring = false;
  const elapsedS = (performance.now() - started) / 1000;
  stop = true;
  await Promise.all(workers);
  await client.close();
  latencies.sort((a, b) => a - b);
  const at = (quantile: number) => latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * quantile))] ?? 0;
  return { requests: latencies.length, answeredAll, errors, refusals, perSecond: latencies.length / elapsedS, p50Ms: at(0.5), p99Ms: at(0.99) };
}

/** Drives a target and measures what its payments cost (cost.ts); closes the target. */
async function measure(name: string, target: Target, withCost: boolean): Promise<Run> {
  const commitsBefore = await commitCount(databaseUrl);
  const all = () => target.statements().all;
  const before = cpuSnapshot(all);
  const backgroundBefore = target.statements().background;
  let driven: Driven;
  let after: CostSnapshot;
  let background: number;
  try {
    driven = await drive(target);
    after = cpuSnapshot(all);
    background = target.statements().background - backgroundBefore;
  } finally {
    await target.close();
  }
  // The commit-count read before the run is itself a commit.
  const commits = (await commitCount(databaseUrl)) - commitsBefore - 1;
  const cost = withCost ? costPer(before, after, commits, driven.answeredAll) : undefined;
  return { name, ...driven, cost, backgroundStatements: driven.answeredAll === 0 ? 0 : background / driven.answeredAll };
}

async function floor(schema: string): Promise<Run> {
  const pool = new pg.Pool({ connectionString: databaseUrl, max: poolSizeMax, options: `-c search_path=${schema}` });
  // The first run of the benchmark: the schema Keel's runs migrate may not exist yet.
  await pool.query(`CREATE SCHEMA IF NOT EXISTS ${schema}`);
  await pool.query('CREATE TABLE IF NOT EXISTS bench_floor (id uuid PRIMARY KEY, idempotency_key text NOT NULL, body jsonb NOT NULL, created_at timestamptz NOT NULL DEFAULT now())');
  const app = Fastify({ logger: false });
  let statements = 0;
  app.post('/floor', async (request) => {
    statements += 1;
    await pool.query('INSERT INTO bench_floor (id, idempotency_key, body) VALUES ($1, $2, $3)', [randomUUID(), request.headers['idempotency-key'], JSON.stringify(request.body)]);
    return { ok: true };
  });
  const url = await app.listen({ port: 0, host: '127.0.0.1' });
  return measure(
    'floor: bare INSERT',
    {
      url,
      path: '/floor',
      makeRequest: () => ({ headers: { 'idempotency-key': randomUUID() }, body: paymentBody('bench_') }),
      statements: () => ({ all: statements, background: 0 }),
      async close() {
        await app.close();
        await pool.end();
      },
    },
    false,
  );
}

async function paymentFloor(schema: string, merchantId: string): Promise<{ run: Run; verified: number }> {
  const orderPrefix = `floor_${randomBytes(3).toString('hex')}_`;
  const target = await startPaymentFloor({ databaseUrl, schema, merchantId, poolSize: poolSizeMax, orderPrefix });
  let verified = 0;
  const run = await measure(
    'payment floor: 2 statements',
    {
      url: target.url,
      path: '/v1/payments',
      makeRequest: () => ({ headers: { 'idempotency-key': randomUUID() }, body: paymentBody(orderPrefix) }),
      statements: () => ({ all: target.statements(), background: 0 }),
      async close() {
        // Its invariants, over every payment it answered, before its connections close.
        verified = await target.verify();
        await target.close();
      },
    },
    true,
  );
  return { run, verified };
}

function paymentBody(prefix: string): string {
  return JSON.stringify({
    amount: 15000,
    currency: 'KRW',
    order_id: `${prefix}${randomBytes(9).toString('hex')}`,
    confirm: true,
    payment_method: { type: 'card', card: { number: '4242424242424242', exp_month: 12, exp_year: 2034, cvc: '123' } },
  });
}

async function keelRun(schema: string): Promise<{ run: Run; merchantId: string }> {
  const config = { ...loadConfig({}), databaseUrl, port: 0, logLevel: process.env['KEEL_BENCH_LOG_LEVEL'] ?? 'info' };
  const keel = await createKeel({ config, role: 'all', inMemory: true, databaseSchema: schema, simulatorPort: 0, logDestination: pino.destination(process.env['KEEL_BENCH_LOG'] ?? '/dev/null') });
  let merchant;
  let url;
  try {
    // The benchmark measures the payment path, not the per-key rate limit (which still runs on every request).
    merchant = await createMerchant(keel.database.db, keel.services.deps.cipher, { name: 'Bench Shop', rateLimit: { perSecond: 1_000_000, burst: 1_000_000 } });
    url = await keel.listen();
  } catch (error) {
    await keel.close();
    throw error;
  }
  const { secret_key: secretKey } = merchant;
  const run = await measure(
    'keel: POST /v1/payments confirm',
    {
      url,
      path: '/v1/payments',
      makeRequest: () => ({ headers: { authorization: `Bearer ${secretKey}`, 'idempotency-key': randomUUID() }, body: paymentBody('bench_') }),
      statements: () => ({ all: statementCounts.request + statementCounts.background, background: statementCounts.background }),
      close: () => keel.close(),
    },
    true,
  );
  const merchantId = merchant.id;
  return { run, merchantId };
}

function line(run: Run): string {
  return `${run.name.padEnd(34)} ${run.perSecond.toFixed(0).padStart(7)} req/s   p50 ${run.p50Ms.toFixed(1).padStart(6)} ms   p99 ${run.p99Ms.toFixed(1).padStart(7)} ms   (${run.requests} answered 2xx, ${run.errors} non-2xx${run.errors === 0 ? '' : `: ${JSON.stringify(run.refusals)}`})`;
}

function costLine(run: Run): string {
  const cost = run.cost;
  if (cost === undefined) return '';
  const background = run.backgroundStatements > 0 ? ` (${run.backgroundStatements.toFixed(1)} of them outside requests)` : '';
  return `  per payment: ${cost.statements.toFixed(1)} round trips${background}, ${cost.commits.toFixed(1)} commits, CPU ${cost.processCpuMs.toFixed(2)} ms in this process (load generator included), ${cost.postgresCpuMs.toFixed(2)} ms in PostgreSQL`;
}

/** The middle value (the mean of the two middle ones for an even count). */
function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? (sorted[middle] as number) : ((sorted[middle - 1] as number) + (sorted[middle] as number)) / 2;
}

async function main(): Promise<void> {
  const schema = `keel_bench_${randomBytes(4).toString('hex')}`;
  const rounds = Math.max(1, Number(process.env['KEEL_BENCH_ROUNDS'] ?? 3));
  console.log(`Keel benchmark: PostgreSQL ${databaseUrl.replace(/\/\/[^@]*@/, '//')}, concurrency ${concurrency}, ${durationMs / 1000} s per run after ${warmupMs / 1000} s warm-up`);
  try {
    if (process.env['KEEL_BENCH_ONLY'] === 'payment-floor') {
      // The payment floor alone (to profile it): it needs a merchant, which a Keel made in the same schema has.
      const keel = await createKeel({ config: { ...loadConfig({}), databaseUrl, port: 0 }, role: 'all', inMemory: true, databaseSchema: schema, simulatorPort: 0, logDestination: pino.destination('/dev/null') });
      const merchant = await createMerchant(keel.database.db, keel.services.deps.cipher, { name: 'Bench Shop' }).finally(() => keel.close());
      const payment = await paymentFloor(schema, merchant.id);
      console.log(line(payment.run));
      console.log(costLine(payment.run));
      return;
    }
    if (process.env['KEEL_BENCH_ONLY'] === 'keel') {
      const keel = await keelRun(schema);
      console.log(line(keel.run));
      console.log(costLine(keel.run));
      return;
    }
    const floorResult = await floor(schema);
    console.log(line(floorResult));
    // Keel and the payment floor in alternating order, round after round, so that a machine growing busier or
    // quieter during the benchmark moves both alike; each round's ratio compares two runs minutes apart at most.
    let merchantId: string | undefined;
    const ratios: number[] = [];
    const keelRates: number[] = [];
    let verified = 0;
    for (let round = 0; round < rounds; round += 1) {
      const runs: { keel?: Run; payment?: Run } = {};
      for (const which of round % 2 === 0 ? (['keel', 'payment'] as const) : (['payment', 'keel'] as const)) {
        if (which === 'keel') {
          const keel = await keelRun(schema);
          merchantId = keel.merchantId;
          runs.keel = keel.run;
        } else {
          const payment = await paymentFloor(schema, merchantId as string);
          verified += payment.verified;
          runs.payment = payment.run;
        }
      }
      const { keel, payment } = runs as { keel: Run; payment: Run };
      console.log(`round ${round + 1} of ${rounds}`);
      console.log(line(payment));
      console.log(costLine(payment));
      console.log(line(keel));
      console.log(costLine(keel));
      ratios.push(keel.perSecond / payment.perSecond);
      keelRates.push(keel.perSecond);
      console.log(`  ratio keel / payment floor this round: ${(keel.perSecond / payment.perSecond).toFixed(3)}`);
    }
    console.log(`payment floor invariants held over ${verified} payments: one charge per order, attempt, key, ledger and events consistent`);
    console.log(`ratio keel / floor: ${(median(keelRates) / floorResult.perSecond).toFixed(3)}   (median keel run)`);
    console.log(`ratio keel / payment floor: ${median(ratios).toFixed(3)}   (median of ${rounds} rounds: ${ratios.map((ratio) => ratio.toFixed(3)).join(', ')}; goal >= 0.8)`);
  } finally {
    await dropSchema(databaseUrl, schema);
  }
}

if (process.argv[2] === 'worker') {
  const { runWorkerBench } = await import('./worker.js');
  await runWorkerBench();
} else if (process.argv[2] === 'breaker') {
  const { runBreakerBench } = await import('./breaker.js');
  await runBreakerBench();
} else if (process.argv[2] === 'reconcile') {
  const { runReconcileBench } = await import('./reconcile.js');
  await runReconcileBench();
} else if (process.argv[2] === 'overload') {
  const { runOverload } = await import('./overload.js');
  await runOverload();
} else {
  await main();
}
