import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { KeelConfig } from '../config.js';
import { verifyLedger } from '../ledger/ledger.js';
import { createMerchant } from '../merchants/merchants.js';
import { createKeel, type Keel } from '../runtime.js';
import { buildReport, renderHtml, type Invariants, type LoadReport } from './report.js';
import { runLoad, type RunResult, type StepReport } from './runner.js';
import { scenarioNamed, type Scenario } from './scenario.js';

/**
 * `keel loadtest`: a flash sale rehearsed against a Keel. Without `--target` it starts one itself — embedded, in
 * a data directory of its own (or on `KEEL_DATABASE_URL`), with the benchmark gateway answering at partner-like
 * latency per country — and a merchant to pay; with `--target` it drives that Keel with the merchant key given.
 * After the arrivals it checks the invariants (one partner charge per order for Keel's amount, nothing left
 * processing once the janitor has settled what it can, the ledger verifying) and writes `report.json` and
 * `report.html` to the output folder.
 */
export interface LoadtestOptions {
  readonly scenario: string;
  readonly target?: string | undefined;
  readonly secretKey?: string | undefined;
  /** The benchmark gateway behind `--target`, whose charge list the charged-once invariant reads. */
  readonly gatewayUrl?: string | undefined;
  readonly rate?: number | undefined;
  readonly durationS?: number | undefined;
  readonly outDir: string;
}

export interface LoadtestIo {
  /** A progress line: the live line on a terminal, a plain line per second otherwise. */
  progress(line: string, final: boolean): void;
}

/** How long the janitor is given to settle outcomes the partner left unknown before "nothing left processing". */
export const settleWaitMs = 60_000;

export function progressLine(step: StepReport, elapsedS: number): string {
  return `t=${Math.floor(elapsedS)}s offered ${step.offered}/s goodput ${step.succeeded}/s p99 ${step.p99_ms} ms shed ${step.shed} queued ${step.queued} errors ${step.errors} in flight ${step.in_flight}`;
}

export async function loadtest(config: KeelConfig, options: LoadtestOptions, io: LoadtestIo): Promise<{ report: LoadReport; failed: boolean }> {
  const scenario = scenarioNamed(options.scenario, { ...(options.rate === undefined ? {} : { rate: options.rate }), ...(options.durationS === undefined ? {} : { durationS: options.durationS }) });
  const own = options.target === undefined ? await startOwnKeel(config, scenario) : undefined;
  try {
    const url = options.target ?? own?.url ?? '';
    const secretKey = options.secretKey ?? own?.secretKey;
    if (secretKey === undefined) throw new Error('--target needs a merchant secret key: --secret-key or KEEL_LOADTEST_SECRET_KEY');
    const result = await runLoad({ url, secretKey }, scenario, { queue: config.checkoutQueue.mode !== 'off', onStep: (step, elapsedS) => io.progress(progressLine(step, elapsedS), false) });
    io.progress(`arrivals over after ${result.elapsedS.toFixed(1)} s; checking the invariants`, true);
    const gatewayUrl = options.gatewayUrl ?? own?.keel.gatewayUrl;
    const problems: string[] = [];
    const invariants: Invariants = {
      charged_once: gatewayUrl === undefined ? null : await chargedOnce(gatewayUrl, result, problems),
      none_left_processing: await noneLeftProcessing(url, secretKey, own?.keel, problems),
      ledger_verified: own === undefined ? null : await ledgerVerified(own.keel, problems),
    };
    const report = buildReport(scenario.name, options.target ?? 'keel started for the run', result, invariants, problems);
    mkdirSync(options.outDir, { recursive: true });
    writeFileSync(join(options.outDir, 'report.json'), `${JSON.stringify(report, null, 2)}\n`);
    writeFileSync(join(options.outDir, 'report.html'), renderHtml(report));
    return { report, failed: Object.values(invariants).some((holds) => holds === false) };
  } finally {
    await own?.close();
  }
}

async function startOwnKeel(config: KeelConfig, scenario: Scenario): Promise<{ keel: Keel; url: string; secretKey: string; close(): Promise<void> }> {
  const dataDir = mkdtempSync(join(tmpdir(), 'keel-loadtest-'));
  const keel = await createKeel({
    // Shoppers come from addresses of their own (X-Forwarded-For from loopback), as they would through a proxy.
    config: { ...config, dataDir, port: 0, gatewayUrl: undefined, rateLimit: { perSecond: 1_000_000, burst: 1_000_000 }, logLevel: 'warn', trustProxy: ['loopback'] },
    role: 'all',
    runJobTimers: true,
  });
  const url = await keel.listen();
  for (const [country, latency] of Object.entries(scenario.partnerLatency)) {
    await fetch(`${keel.gatewayUrl}/__sim/latency`, { method: 'POST', body: JSON.stringify({ ...(country === '*' ? {} : { country }), ...latency }) });
  }
  const merchant = await createMerchant(keel.database.db, keel.services.deps.cipher, { name: 'Flash Sale Shop', country: 'KR' });
  return {
    keel,
    url,
    secretKey: merchant.secret_key,
    async close() {
      await keel.close();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** At most one charge the partner holds per order (declines aside), for the amount Keel was asked to charge. */
export async function chargedOnce(gatewayUrl: string, result: RunResult, problems: string[]): Promise<boolean> {
  const response = await fetch(`${gatewayUrl}/__sim/charges`);
  const { data } = (await response.json()) as { data: { order_id: string; amount: number; status: string }[] };
  const byOrder = new Map<string, { amount: number }[]>();
  for (const charge of data) {
    if (charge.status === 'declined' || !result.orders.has(charge.order_id)) continue;
    byOrder.set(charge.order_id, [...(byOrder.get(charge.order_id) ?? []), charge]);
  }
  let holds = true;
  for (const [orderId, charges] of byOrder) {
    if (charges.length > 1 || charges.some((charge) => charge.amount !== result.orders.get(orderId))) {
      holds = false;
      if (problems.length < 20) problems.push(`order ${orderId}: ${charges.length} charges (${charges.map((charge) => charge.amount).join(', ')}) for ${result.orders.get(orderId)}`);
    }
  }
  return holds;
}

/**
 * Nothing left processing: the janitor settles outcomes the partner left unknown (Keel's own when the run
 * started it, the target's workers otherwise); the check waits up to `settleWaitMs` for it.
 */
async function noneLeftProcessing(url: string, secretKey: string, keel: Keel | undefined, problems: string[]): Promise<boolean> {
  const deadline = Date.now() + settleWaitMs;
  for (;;) {
    const response = await fetch(`${url}/v1/payments?status=processing&limit=100`, { headers: { authorization: `Bearer ${secretKey}` } });
    const { data } = (await response.json()) as { data: { id: string }[] };
    if (data.length === 0) return true;
    if (Date.now() > deadline) {
      problems.push(`${data.length}${data.length === 100 ? '+' : ''} payments still processing after ${settleWaitMs / 1000} s, e.g. ${data[0]?.id ?? ''}`);
      return false;
    }
    if (keel !== undefined) await keel.jobs.janitor();
    await sleep(1_000);
  }
}

async function ledgerVerified(keel: Keel, problems: string[]): Promise<boolean> {
  const report = await verifyLedger(keel.database.db);
  if (report.unbalanced.length > 0) problems.push(`${report.unbalanced.length} unbalanced ledger transactions`);
  if (report.differences.length > 0) problems.push(`ledger differs from payments for ${report.differences.length} merchant(s)`);
  return report.unbalanced.length === 0 && report.differences.length === 0;
}
