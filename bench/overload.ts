import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { createInterface } from 'node:readline';
import { performance } from 'node:perf_hooks';
import { Pool } from 'undici';
import { startSimulator } from '../src/simulator/server.js';
import { dropSchema } from '../src/storage/database.js';

/**
 * `npm run bench -- overload`: Keel under more load than it can take. The partner (the benchmark gateway, in
 * this process) answers with a lognormal latency of p50 200 ms and p99 1 s; Keel runs alone in a child process
 * on PostgreSQL. Open-loop load (a fixed arrival rate, as shoppers arrive, whatever Keel answers) finds the peak
 * goodput (successful payments a second), then offers three times that, with load shedding on and off.
 */

const databaseUrl = process.env['KEEL_DATABASE_URL'] ?? process.env['KEEL_TEST_DATABASE_URL'] ?? 'postgres://root@127.0.0.1:5432/test';
const stepMs = Number(process.env['KEEL_BENCH_STEP_MS'] ?? 8_000);
const overloadMs = Number(process.env['KEEL_BENCH_OVERLOAD_MS'] ?? 15_000);
const clientTimeoutMs = 10_000;
const outstandingMax = 20_000;

interface Server {
  readonly url: string;
  readonly secretKey: string;
  readonly otherSecretKey: string;
  readonly child: ChildProcess;
}

async function startKeel(schema: string, gatewayUrl: string, shedding: boolean): Promise<Server> {
  const child = spawn(process.execPath, ['--import', 'tsx', new URL('./keel-server.ts', import.meta.url).pathname], {
    env: { ...process.env, KEEL_DATABASE_URL: databaseUrl, KEEL_BENCH_SCHEMA: schema, KEEL_GATEWAY_URL: gatewayUrl, KEEL_SHEDDING: shedding ? 'on' : 'off' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream });
  for await (const line of lines) {
    if (line.startsWith('{')) {
      const ready = JSON.parse(line) as { url: string; secretKey: string; otherSecretKey: string };
      return { ...ready, child };
    }
  }
  throw new Error('the Keel process ended before it was ready');
}

async function stopKeel(server: Server): Promise<void> {
  await new Promise<void>((resolve) => {
    server.child.once('exit', () => resolve());
    server.child.kill('SIGTERM');
  });
}

interface Step {
  readonly offeredPerSecond: number;
  readonly goodputPerSecond: number;
  readonly shedPerSecond: number;
  /** Refused with 429: the merchant held more than its share of Keel's capacity. */
  readonly overSharePerSecond: number;
  readonly failedPerSecond: number;
  readonly admittedP50Ms: number;
  readonly admittedP99Ms: number;
}

/** Offers `rate` payments a second for `durationMs`, open loop, and measures what came back. */
async function offer(server: Server, rate: number, durationMs: number, secretKey = server.secretKey): Promise<Step> {
  const client = new Pool(server.url, { connections: 4_096, pipelining: 1, headersTimeout: clientTimeoutMs, bodyTimeout: clientTimeoutMs });
  const admitted: number[] = [];
  let good = 0;
  let shed = 0;
  let overShare = 0;
  let failed = 0;
  let outstanding = 0;
  const inFlight: Promise<void>[] = [];
  const send = async () => {
    outstanding += 1;
    const started = performance.now();
    try {
      const response = await client.request({
        method: 'POST',
        path: '/v1/payments',
        headers: { authorization: `Bearer ${secretKey}`, 'idempotency-key': randomUUID(), 'content-type': 'application/json' },
        body: JSON.stringify({
          amount: 15000,
          currency: 'KRW',
          order_id: `ovl_${randomBytes(9).toString('hex')}`,
          confirm: true,
          payment_method: { type: 'card', card: { number: '4242424242424242', exp_month: 12, exp_year: 2034, cvc: '123' } },
        }),
      });
      const text = await response.body.text();
      const elapsed = performance.now() - started;
      if (response.statusCode === 503 && text.includes('"overloaded"')) shed += 1;
      else if (response.statusCode === 429) overShare += 1;
      else {
        admitted.push(elapsed);
        if (response.statusCode === 200 && text.includes('"status":"succeeded"')) good += 1;
        else failed += 1;
      }
    } catch {
      failed += 1;
      admitted.push(performance.now() - started);
    } finally {
      outstanding -= 1;
    }
  };
  const started = performance.now();
  let sent = 0;
  while (performance.now() - started < durationMs) {
    const due = Math.floor(((performance.now() - started) / 1000) * rate);
    while (sent < due) {
      sent += 1;
      if (outstanding >= outstandingMax) failed += 1;
      else inFlight.push(send());
    }
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  await Promise.all(inFlight);
  await client.close();
  admitted.sort((a, b) => a - b);
  const at = (quantile: number) => admitted[Math.min(admitted.length - 1, Math.floor(admitted.length * quantile))] ?? 0;
  const seconds = durationMs / 1000;
  return {
    offeredPerSecond: rate,
    goodputPerSecond: good / seconds,
    shedPerSecond: shed / seconds,
    overSharePerSecond: overShare / seconds,
    failedPerSecond: failed / seconds,
    admittedP50Ms: at(0.5),
    admittedP99Ms: at(0.99),
  };
}

function row(label: string, step: Step): string {
  return `${label.padEnd(26)} offered ${step.offeredPerSecond.toFixed(0).padStart(5)}/s  goodput ${step.goodputPerSecond.toFixed(1).padStart(6)}/s  shed ${step.shedPerSecond.toFixed(1).padStart(6)}/s  over share ${step.overSharePerSecond.toFixed(1).padStart(6)}/s  failed ${step.failedPerSecond.toFixed(1).padStart(6)}/s  admitted p50 ${step.admittedP50Ms.toFixed(0).padStart(5)} ms  p99 ${step.admittedP99Ms.toFixed(0).padStart(5)} ms`;
}

export async function runOverload(): Promise<void> {
  const simulator = await startSimulator({ port: 0, concurrencyMax: 100_000, seed: 7 });
  await fetch(`${simulator.url}/__sim/latency`, { method: 'POST', body: JSON.stringify({ p50_ms: 200, p99_ms: 1_000 }) });
  const schema = `keel_bench_${randomBytes(4).toString('hex')}`;
  console.log(`Keel overload benchmark: partner latency p50 200 ms / p99 1 s, ${stepMs / 1000} s per step, ${overloadMs / 1000} s at 3x`);
  try {
    let server = await startKeel(schema, simulator.url, true);
    const unloaded = await offer(server, 10, stepMs);
    console.log(row('unloaded', unloaded));
    let peak = unloaded;
    const knownPeak = process.env['KEEL_BENCH_PEAK_RATE'];
    for (const rate of knownPeak === undefined ? [40, 80, 120, 160, 200, 260, 320, 400] : [Number(knownPeak)]) {
      const step = await offer(server, rate, stepMs);
      console.log(row(`ramp ${rate}/s`, step));
      if (step.goodputPerSecond > peak.goodputPerSecond) peak = step;
      if (step.goodputPerSecond < rate * 0.8) break;
    }
    const overloadRate = Math.round(peak.goodputPerSecond * 3);
    const withShedding = await offer(server, overloadRate, overloadMs);
    // Fairness, in the same process: a quiet merchant at a tenth of the peak, alone, then beside the other
    // merchant's 3x burst (after the one-merchant run with shedding on, so that run has the limit to itself).
    const quietRate = Math.max(5, Math.round(peak.goodputPerSecond / 10));
    const quietAlone = await offer(server, quietRate, stepMs, server.otherSecretKey);
    const [burstBeside, quietBeside] = await Promise.all([offer(server, overloadRate, overloadMs), offer(server, quietRate, overloadMs, server.otherSecretKey)]);
    const metrics = await (await fetch(`${server.url}/metrics`)).text();
    const sheddingLines = metrics.split('\n').filter((line) => /^keel_(shed_requests_total|api_concurrency)\{/.test(line));
    await stopKeel(server);
    server = await startKeel(schema, simulator.url, false);
    const withoutShedding = await offer(server, overloadRate, overloadMs);
    await stopKeel(server);
    console.log(`shedding counters after the 3x runs (one merchant, then two): ${sheddingLines.join('  ')}`);
    console.log(row('peak', peak));
    console.log(row('3x peak, shedding on', withShedding));
    console.log(row('3x peak, shedding off', withoutShedding));
    console.log(row('quiet merchant alone', quietAlone));
    console.log(row('quiet beside a 3x burst', quietBeside));
    console.log(row('the 3x burst beside it', burstBeside));
    console.log(
      `quiet merchant beside another's 3x burst / alone: goodput ${(quietBeside.goodputPerSecond / quietAlone.goodputPerSecond).toFixed(2)} (goal >= 0.95), ` +
        `admitted p99 ${(quietBeside.admittedP99Ms / quietAlone.admittedP99Ms).toFixed(2)}, shed ${quietBeside.shedPerSecond.toFixed(1)}/s, over share ${quietBeside.overSharePerSecond.toFixed(1)}/s`,
    );
    console.log(
      `goodput at 3x / peak: shedding on ${(withShedding.goodputPerSecond / peak.goodputPerSecond).toFixed(2)} (goal >= 0.90), ` +
        `off ${(withoutShedding.goodputPerSecond / peak.goodputPerSecond).toFixed(2)}`,
    );
    console.log(
      `admitted p99 at 3x / unloaded p99: shedding on ${(withShedding.admittedP99Ms / unloaded.admittedP99Ms).toFixed(2)} (goal <= 2), ` +
        `off ${(withoutShedding.admittedP99Ms / unloaded.admittedP99Ms).toFixed(2)}`,
    );
  } finally {
    await simulator.close();
    await dropSchema(databaseUrl, schema);
  }
}
