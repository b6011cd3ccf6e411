// Proves `keel loadtest`'s parts and a short run end to end: the flash sale's shape (quiet, a 10x spike at a
// known second, decay), a scenario file read and refused when malformed, answers classified (a decline is not
// an error, shedding is its own outcome), the saturation point found where p99 doubles or shedding starts, a
// run against a Keel it starts itself with every invariant holding and both reports written (the HTML
// self-contained: SVG charts, no script, nothing fetched), and the charged-once check failing when the
// partner holds two charges for one order.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { loadConfig } from '../config.js';
import { runKeel } from '../testing/cli.js';
import { startTestKeel } from '../testing/harness.js';
import { chargedOnce, loadtest } from './loadtest.js';
import { saturationOf } from './report.js';
import { outcomeOf, type StepReport } from './runner.js';
import { flashSale, scenarioFromFile } from './scenario.js';

test('a flash sale is quiet, spikes tenfold at a known second, then decays', () => {
  const sale = flashSale({ rate: 100, durationS: 60 });
  assert.equal(sale.spikeAtS, 20);
  assert.deepEqual([sale.rateAt(0), sale.rateAt(19.9), sale.rateAt(20), sale.rateAt(29.9)], [10, 10, 100, 100]);
  assert.ok(sale.rateAt(35) < 100 && sale.rateAt(35) > sale.rateAt(50) && sale.rateAt(59) >= 10);
});

test('a scenario file is a step profile scaled to --rate; a malformed one is refused with why', () => {
  const folder = mkdtempSync(join(tmpdir(), 'keel-scenario-'));
  try {
    const file = join(folder, 'drop.json');
    writeFileSync(file, JSON.stringify({ name: 'drop', duration_s: 30, profile: [{ at_s: 0, rate: 2 }, { at_s: 10, rate: 20 }], mix: { card: 1 } }));
    const scenario = scenarioFromFile(file, { rate: 40 });
    assert.deepEqual([scenario.name, scenario.durationS, scenario.rateAt(5), scenario.rateAt(15), scenario.mix.decline], ['drop', 30, 4, 40, 0]);
    writeFileSync(file, JSON.stringify({ profile: [{ at_s: -1, rate: 2 }] }));
    assert.throws(() => scenarioFromFile(file), /each profile step needs at_s >= 0 and rate >= 0/);
    writeFileSync(file, JSON.stringify({ profile: [] }));
    assert.throws(() => scenarioFromFile(file), /profile must be a non-empty list/);
  } finally {
    rmSync(folder, { recursive: true, force: true });
  }
});

test('answers are classified: paid, declined, shed (overloaded or rate limited), errors', () => {
  assert.deepEqual([outcomeOf(200, undefined), outcomeOf(202, undefined), outcomeOf(402, 'card_declined'), outcomeOf(503, 'overloaded'), outcomeOf(429, 'rate_limited'), outcomeOf(503, 'gateway_unavailable'), outcomeOf(500, 'internal_error')], [
    'succeeded',
    'succeeded',
    'declined',
    'shed',
    'shed',
    'errors',
    'errors',
  ]);
});

test('saturation is the offered rate where p99 doubles over the quiet seconds, or shedding starts', () => {
  const step = (offered: number, p99: number, shed = 0): StepReport => ({ at_s: 0, offered, succeeded: offered, declined: 0, shed, queued: 0, errors: 0, p50_ms: p99 / 2, p99_ms: p99, mean_ms: p99 / 2, in_flight: 0, partner_in_flight: {}, queue_length: 0, queue_capacity_per_s: null });
  assert.equal(saturationOf([step(10, 300), step(10, 320), step(20, 350), step(40, 500), step(60, 700), step(80, 900)]), 60);
  assert.equal(saturationOf([step(10, 300), step(10, 300), step(30, 310, 2), step(60, 2_000)]), 30);
  assert.equal(saturationOf([step(10, 300), step(10, 310), step(10, 290), step(10, 300)]), null);
});

test('a short steady run against a Keel it starts: every invariant holds, both reports are written', async () => {
  const out = mkdtempSync(join(tmpdir(), 'keel-loadtest-'));
  try {
    const lines: string[] = [];
    const { report, failed } = await loadtest({ ...loadConfig({}), logLevel: 'warn' }, { scenario: 'steady', rate: 8, durationS: 3, outDir: out }, { progress: (line) => lines.push(line) });
    assert.equal(failed, false, JSON.stringify(report.problems));
    assert.deepEqual(report.invariants, { charged_once: true, none_left_processing: true, ledger_verified: true });
    assert.ok(report.arrivals >= 20 && report.arrivals <= 26, `arrivals ${report.arrivals}`);
    assert.equal(report.steps.length, 3);
    assert.equal(report.steps.reduce((sum, step) => sum + step.offered, 0), report.arrivals);
    assert.equal(Object.values(report.outcomes).reduce((sum, count) => sum + count, 0), report.arrivals, 'every shopper has an outcome');
    assert.ok(report.latency_ms.p50 > 0 && report.latency_ms.p99 >= report.latency_ms.p50);
    assert.ok(lines.some((line) => /^t=\d+s offered \d+\/s goodput \d+\/s p99 \d+ ms/.test(line)), lines.join('\n'));
    const written = JSON.parse(readFileSync(join(out, 'report.json'), 'utf8')) as { scenario: string; littles_law: { predicted_in_flight: number } };
    assert.equal(written.scenario, 'steady');
    const html = readFileSync(join(out, 'report.html'), 'utf8');
    assert.equal((html.match(/<svg/g) ?? []).length, 6);
    assert.doesNotMatch(html, /<script|<link|src="http|href="http/);
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});

test('with the checkout queue on past its capacity, shoppers wait in order, nobody is lost, and every invariant holds', async () => {
  const out = mkdtempSync(join(tmpdir(), 'keel-loadtest-'));
  try {
    const config = { ...loadConfig({ KEEL_CHECKOUT_QUEUE: 'on', KEEL_CHECKOUT_CAPACITY_PER_S: '4' }), logLevel: 'warn' as const };
    const { report, failed } = await loadtest(config, { scenario: 'steady', rate: 10, durationS: 3, outDir: out }, { progress: () => undefined });
    assert.equal(failed, false, JSON.stringify(report.problems));
    const { queue } = report;
    assert.equal(queue.enabled, true);
    assert.ok(queue.queued > 0, `shoppers beyond 4/s wait: ${JSON.stringify(queue)}`);
    assert.equal(report.steps.reduce((sum, step) => sum + step.queued, 0), queue.queued);
    assert.equal(queue.lost, 0);
    assert.equal(queue.inversions, 0, 'first come, first served');
    assert.ok(queue.wait_ms.max >= queue.wait_ms.p50 && queue.wait_ms.p50 > 0);
    assert.equal(queue.capacity_per_s, 4);
    assert.equal(Object.values(report.outcomes).reduce((sum, count) => sum + count, 0), report.arrivals, 'every shopper has an outcome');
    assert.match(readFileSync(join(out, 'report.html'), 'utf8'), /shoppers waited/);
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});

test('two charges the partner holds for one order break the charged-once invariant', async () => {
  const gateway = createServer((_request, response) => {
    response.setHeader('content-type', 'application/json');
    response.end(JSON.stringify({ data: [{ order_id: 'o1', amount: 1000, status: 'captured' }, { order_id: 'o1', amount: 1000, status: 'captured' }, { order_id: 'o2', amount: 900, status: 'declined' }, { order_id: 'o3', amount: 500, status: 'captured' }] }));
  });
  await new Promise<void>((resolve) => gateway.listen(0, '127.0.0.1', resolve));
  try {
    const url = `http://127.0.0.1:${(gateway.address() as AddressInfo).port}`;
    const orders = new Map([['o1', 1000], ['o2', 900], ['o3', 500]]);
    const problems: string[] = [];
    const result = { orders } as unknown as Parameters<typeof chargedOnce>[1];
    assert.equal(await chargedOnce(url, result, problems), false);
    assert.deepEqual(problems, ['order o1: 2 charges (1000, 1000) for 1000']);
    assert.equal(await chargedOnce(url, { orders: new Map([['o3', 500]]) } as unknown as Parameters<typeof chargedOnce>[1], []), true);
    assert.equal(await chargedOnce(url, { orders: new Map([['o3', 400]]) } as unknown as Parameters<typeof chargedOnce>[1], []), false, 'another amount than Keel asked for');
  } finally {
    await new Promise((resolve) => gateway.close(resolve));
  }
});

test('npx keel loadtest --target: JSON on standard output, a plain line per second, exit 0; 2 when the run cannot start', async () => {
  const keel = await startTestKeel();
  try {
    await keel.keel.app.listen({ port: 0, host: '127.0.0.1' });
    const url = `http://127.0.0.1:${(keel.keel.app.server.address() as AddressInfo).port}`;
    const merchant = await keel.createMerchant({ name: 'Rehearsed' });
    const out = mkdtempSync(join(tmpdir(), 'keel-loadtest-cli-'));
    try {
      const loaded = await runKeel(['loadtest', '--scenario', 'steady', '--rate', '5', '--duration', '2', '--target', url, '--secret-key', merchant.secret_key, '--gateway-url', keel.keel.gatewayUrl ?? '', '--out', out, '--json'], process.env);
      assert.equal(loaded.code, 0, loaded.stderr);
      const report = JSON.parse(loaded.stdout) as { scenario: string; arrivals: number; invariants: Record<string, boolean | null> };
      // The ledger is the target's own to verify; what can be checked from outside held.
      assert.deepEqual([report.scenario, report.invariants], ['steady', { charged_once: true, none_left_processing: true, ledger_verified: null }]);
      assert.ok(report.arrivals >= 8, loaded.stdout);
      assert.match(loaded.stderr, /^t=1s offered \d+\/s/m, 'a plain progress line per second when not on a terminal');
      const missing = await runKeel(['loadtest', '--scenario', '/nonexistent/scenario.json', '--target', url, '--secret-key', merchant.secret_key], process.env);
      assert.equal(missing.code, 2);
      assert.match(missing.stderr, /^loadtest failed: /m);
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  } finally {
    await keel.close();
  }
});
