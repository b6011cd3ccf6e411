import { randomBytes, randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import Fastify from 'fastify';
import pg from 'pg';
import { pino } from 'pino';
import { Pool } from 'undici';
import { loadConfig } from '../src/config.js';
import { createMerchant } from '../src/merchants/merchants.js';
import { createKeel } from '../src/runtime.js';
import { dropSchema } from '../src/storage/database.js';

/**
 * `npm run bench`: Keel's `POST /v1/payments` (confirm: true) against a floor, in one process, on the same
 * PostgreSQL, at the same client concurrency, each request with a fresh idempotency key. The floor is a bare
 * Fastify route doing one INSERT per request; the ratio of the two throughputs is the figure that matters,
 * since absolute numbers move with the machine. The benchmark gateway runs in-process at zero latency.
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
}

async function drive(name: string, url: string, path: string, makeRequest: () => { headers: Record<string, string>; body: string }): Promise<Run> {
  const client = new Pool(url, { connections: concurrency, pipelining: 1 });
  const latencies: number[] = [];
  let errors = 0;
  const refusals: Record<number, number> = {};
  let measuring = false;
  let stop = false;
  const worker = async () => {
    while (!stop) {
      const { headers, body } = makeRequest();
      const started = performance.now();
      const response = await client.request({ method: 'POST', path, headers: { 'content-type': 'application/json', ...headers }, body });
      await response.body.text();
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
  return { name, requests: latencies.length, errors, refusals, perSecond: latencies.length / elapsedS, p50Ms: at(0.5), p99Ms: at(0.99) };
}

async function floor(schema: string): Promise<Run> {
  const pool = new pg.Pool({ connectionString: databaseUrl, max: poolSizeMax, options: `-c search_path=${schema}` });
  await pool.query('CREATE TABLE IF NOT EXISTS bench_floor (id uuid PRIMARY KEY, idempotency_key text NOT NULL, body jsonb NOT NULL, created_at timestamptz NOT NULL DEFAULT now())');
  const app = Fastify({ logger: false });
  app.post('/floor', async (request) => {
    await pool.query('INSERT INTO bench_floor (id, idempotency_key, body) VALUES ($1, $2, $3)', [randomUUID(), request.headers['idempotency-key'], JSON.stringify(request.body)]);
    return { ok: true };
  });
  const url = await app.listen({ port: 0, host: '127.0.0.1' });
  try {
    return await drive('floor: bare INSERT', url, '/floor', () => ({ headers: { 'idempotency-key': randomUUID() }, body: paymentBody() }));
  } finally {
    await app.close();
    await pool.end();
  }
}

function paymentBody(): string {
  return JSON.stringify({
    amount: 15000,
    currency: 'KRW',
    order_id: `bench_${randomBytes(9).toString('hex')}`,
    confirm: true,
    payment_method: { type: 'card', card: { number: '4242424242424242', exp_month: 12, exp_year: 2034, cvc: '123' } },
  });
}

async function keelRun(schema: string): Promise<Run> {
  const config = { ...loadConfig({}), databaseUrl, port: 0, logLevel: process.env['KEEL_BENCH_LOG_LEVEL'] ?? 'info' };
  const keel = await createKeel({ config, role: 'all', inMemory: true, databaseSchema: schema, simulatorPort: 0, logDestination: pino.destination(process.env['KEEL_BENCH_LOG'] ?? '/dev/null') });
  try {
    // The benchmark measures the payment path, not the per-key rate limit (which still runs on every request).
    const merchant = await createMerchant(keel.database.db, keel.services.deps.cipher, { name: 'Bench Shop', rateLimit: { perSecond: 1_000_000, burst: 1_000_000 } });
    const url = await keel.listen();
    return await drive('keel: POST /v1/payments confirm', url, '/v1/payments', () => ({
      headers: { authorization: `Bearer ${merchant.secret_key}`, 'idempotency-key': randomUUID() },
      body: paymentBody(),
    }));
  } finally {
    await keel.close();
  }
}

function line(run: Run): string {
  return `${run.name.padEnd(34)} ${run.perSecond.toFixed(0).padStart(7)} req/s   p50 ${run.p50Ms.toFixed(1).padStart(6)} ms   p99 ${run.p99Ms.toFixed(1).padStart(7)} ms   (${run.requests} answered 2xx, ${run.errors} non-2xx${run.errors === 0 ? '' : `: ${JSON.stringify(run.refusals)}`})`;
}

async function main(): Promise<void> {
  const schema = `keel_bench_${randomBytes(4).toString('hex')}`;
  console.log(`Keel benchmark: PostgreSQL ${databaseUrl.replace(/\/\/[^@]*@/, '//')}, concurrency ${concurrency}, ${durationMs / 1000} s per run after ${warmupMs / 1000} s warm-up`);
  try {
    const keelResult = await keelRun(schema);
    if (process.env['KEEL_BENCH_ONLY'] === 'keel') {
      console.log(line(keelResult));
      return;
    }
    const floorResult = await floor(schema);
    console.log(line(floorResult));
    console.log(line(keelResult));
    console.log(`ratio keel / floor: ${(keelResult.perSecond / floorResult.perSecond).toFixed(3)}   (goal >= 0.30)`);
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
