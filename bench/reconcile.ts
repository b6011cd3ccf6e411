import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { sql } from 'kysely';
import { pino } from 'pino';
import { loadConfig } from '../src/config.js';
import { createMerchant } from '../src/merchants/merchants.js';
import { runReconciliation } from '../src/reconciliation/reconcile.js';
import { createKeel, type Keel } from '../src/runtime.js';
import { dropSchema } from '../src/storage/database.js';
import { publicToUuid } from '../src/storage/ids.js';
import { amountOf, driftsIn, type BenchDay } from './reconcile-gateway.js';

/**
 * `npm run bench -- reconcile`: a reconciliation of one Toss day per size in `KEEL_BENCH_RECONCILE_SIZES`
 * (default 100,000 and 1,000,000 payments). Each day is generated straight into the database (payments and
 * their capture entries) and into the benchmark gateway's ledger, which runs in a process of its own so its
 * memory is not Keel's; the gateway's record differs from Keel's in four known ways per 100,000 payments, and
 * the run must find exactly those. Printed per size: rows read per second, and the peak resident memory above
 * what the process held before the run (sampled every 20 ms) — flat memory means that figure does not grow with
 * the day.
 */

const sizes = (process.env['KEEL_BENCH_RECONCILE_SIZES'] ?? '100000,1000000').split(',').map(Number);
const databaseUrl = process.env['KEEL_DATABASE_URL'] ?? process.env['KEEL_TEST_DATABASE_URL'] ?? 'postgres://root@127.0.0.1:5432/test';
const day = '2026-06-15';

interface Result {
  readonly size: number;
  readonly rowsRead: number;
  readonly seconds: number;
  readonly peakAboveBaselineMb: number;
  readonly heapPeakAboveBaselineMb: number;
  readonly buffersPeakMb: number;
  readonly heapAfterMb: number;
}

export async function runReconcileBench(): Promise<void> {
  const schema = `keel_bench_${randomBytes(4).toString('hex')}`;
  const accounts = sizes.map((size, index) => ({ secretKey: `test_sk_bench_recon_${index}`, prefix: `b${index}`, size }));
  console.log(`reconciliation bench: PostgreSQL ${databaseUrl.replace(/\/\/[^@]*@/, '//')}, Toss days of ${sizes.join(', ')} payments`);
  const gateway = await startGateway({ day, accounts });
  let keel: Keel | undefined;
  try {
    const base = loadConfig();
    keel = await createKeel({
      config: { ...base, port: 0, databaseUrl, gatewayUrl: gateway.url, logLevel: 'warn', encryptionKey: base.encryptionKey ?? randomBytes(32).toString('hex') },
      role: 'api',
      databaseSchema: schema,
      runJobTimers: false,
      logDestination: pino.destination('/dev/null'),
    });
    const results: Result[] = [];
    for (const account of accounts) {
      const merchant = await createMerchant(keel.database.db, keel.services.deps.cipher, { name: `Reconcile Bench ${account.size}`, gateway: 'toss', partnerSecretKey: account.secretKey });
      const merchantId = publicToUuid('merchant', merchant.id) ?? '';
      const generated = performance.now();
      await generateDay(keel, merchantId, account.prefix, account.size);
      console.log(`  ${account.size} payments generated in the database in ${((performance.now() - generated) / 1000).toFixed(1)} s`);
      results.push(await measure(keel, merchantId, account.size));
    }
    console.log('| payments | rows read | seconds | rows/s | peak RSS above baseline | peak heap above baseline | peak array buffers | heap after |');
    console.log('| --- | --- | --- | --- | --- | --- | --- | --- |');
    const mb = (value: number) => `${value.toFixed(0)} MB`;
    for (const result of results) {
      console.log(`| ${result.size} | ${result.rowsRead} | ${result.seconds.toFixed(1)} | ${Math.round(result.rowsRead / result.seconds)} | ${mb(result.peakAboveBaselineMb)} | ${mb(result.heapPeakAboveBaselineMb)} | ${mb(result.buffersPeakMb)} | ${mb(result.heapAfterMb)} |`);
    }
    console.log('goal: >= 20000 rows/s, peak memory flat in the day\'s size');
  } finally {
    await keel?.close();
    gateway.stop();
    await dropSchema(databaseUrl, schema);
  }
}

async function measure(keel: Keel, merchantId: string, size: number): Promise<Result> {
  global.gc?.();
  const baseline = process.memoryUsage.rss();
  const heapBaseline = process.memoryUsage().heapUsed;
  let peak = baseline;
  let heapPeak = heapBaseline;
  let buffersPeak = 0;
  // RSS and, to say what it holds, the JavaScript heap and the buffers outside it (sockets, the driver's reads).
  const sampler = setInterval(() => {
    const usage = process.memoryUsage();
    peak = Math.max(peak, usage.rss);
    heapPeak = Math.max(heapPeak, usage.heapUsed);
    buffersPeak = Math.max(buffersPeak, usage.arrayBuffers);
  }, 20);
  const { deps } = keel.services;
  const started = performance.now();
  const run = await runReconciliation({ db: deps.db, cipher: deps.cipher, logger: keel.logger, gateways: deps.gateways, partnerUrls: keel.services.partnerUrls, payments: deps }, { gateway: 'toss', date: day, merchantId });
  const seconds = (performance.now() - started) / 1000;
  clearInterval(sampler);
  peak = Math.max(peak, process.memoryUsage.rss());
  // The run must find exactly what the gateway's day holds: a benchmark of a wrong answer measures nothing.
  const expected = driftsIn(size);
  if (run.status !== 'succeeded' || run.anomalies_opened !== expected.anomalies || run.matched !== expected.matched) {
    throw new Error(`reconciliation of ${size} payments found ${JSON.stringify(run)}; expected ${expected.anomalies} anomalies and ${expected.matched} matched`);
  }
  const types = await keel.database.db.selectFrom('anomalies').select(['type', (eb) => eb.fn.countAll<string>().as('count')]).where('merchant_id', '=', merchantId).groupBy('type').orderBy('type').execute();
  console.log(`  ${size}: ${run.rows_read} rows, ${run.matched} matched, anomalies ${types.map((row) => `${row.type} ${row.count}`).join(', ')}`);
  const mb = (bytes: number) => bytes / 1_048_576;
  return { size, rowsRead: run.rows_read, seconds, peakAboveBaselineMb: mb(peak - baseline), heapPeakAboveBaselineMb: mb(heapPeak - heapBaseline), buffersPeakMb: mb(buffersPeak), heapAfterMb: mb(process.memoryUsage().heapUsed) };
}

/** The day's payments and their capture entries, written by the database itself. */
async function generateDay(keel: Keel, merchantId: string, prefix: string, size: number): Promise<void> {
  await keel.database.db.transaction().execute(async (db) => {
  await sql`SET LOCAL statement_timeout = 0`.execute(db);
  const at = sql`${day}::timestamptz + (i::bigint * 86399000 / ${size}) * interval '1 millisecond'`;
  await sql`
    INSERT INTO payments (id, merchant_id, order_id, amount, currency, country, status, capture_method, amount_received, gateway, partner_payment_id, created_at, updated_at)
    SELECT gen_random_uuid(), ${merchantId}::uuid, ${prefix} || '_ord_' || i, 1000 + (i % 90) * 100, 'KRW', 'KR', 'succeeded', 'automatic', 1000 + (i % 90) * 100,
           'toss', ${prefix} || '_pk_' || i, ${at}, ${at}
    FROM generate_series(0, ${size - 1}) AS i`.execute(db);
  await sql`
    INSERT INTO ledger_transactions (id, merchant_id, kind, payment_id, effective_date, created_at)
    SELECT gen_random_uuid(), merchant_id, 'capture', id, ${day}::date, created_at FROM payments WHERE merchant_id = ${merchantId}::uuid`.execute(db);
  await sql`
    INSERT INTO ledger_entries (transaction_id, merchant_id, account, currency, amount)
    SELECT t.id, t.merchant_id, v.account, 'KRW', p.amount * v.sign
    FROM ledger_transactions t JOIN payments p ON p.id = t.payment_id
    CROSS JOIN (VALUES ('partner_receivable:toss', 1), ('merchant_pending', -1)) AS v(account, sign)
    WHERE t.merchant_id = ${merchantId}::uuid`.execute(db);
  });
  await sql`ANALYZE payments`.execute(keel.database.db);
  await sql`ANALYZE ledger_transactions`.execute(keel.database.db);
  if (amountOf(1) !== 1100) throw new Error('the gateway and the database must agree on amounts');
}

async function startGateway(spec: BenchDay): Promise<{ url: string; stop(): void }> {
  const script = fileURLToPath(new URL('./reconcile-gateway.ts', import.meta.url));
  const child = spawn(process.execPath, ['--import', 'tsx', '--max-old-space-size=8192', script, JSON.stringify(spec)], { stdio: ['pipe', 'pipe', 'inherit'] });
  const lines = createInterface({ input: child.stdout });
  const [first] = (await Promise.race([once(lines, 'line'), once(child, 'exit').then(() => { throw new Error('the benchmark gateway exited before it was ready'); })])) as [string];
  return { url: (JSON.parse(first) as { url: string }).url, stop: () => child.stdin.end() };
}
