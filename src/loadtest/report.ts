import { createRequire } from 'node:module';
import { escapeHtml } from '../http/html.js';
import type { QueueResult, RunResult, StepReport } from './runner.js';

/**
 * The load test's report: `report.json` in the contract's shape, and `report.html`, self-contained (charts
 * rendered to SVG on the server by ECharts, no script, no network), so it opens anywhere.
 */
export interface Invariants {
  /** At most one partner charge per order, for Keel's amount; null when the partner's records are not at hand. */
  readonly charged_once: boolean | null;
  /** No payment left `processing` once the janitor has settled what it can. */
  readonly none_left_processing: boolean | null;
  /** `keel ledger verify` passes; null when the run did not start the Keel it tested. */
  readonly ledger_verified: boolean | null;
}

export interface LoadReport {
  readonly scenario: string;
  readonly target: string;
  readonly duration_s: number;
  readonly offered_per_s: number;
  readonly goodput_per_s: number;
  readonly arrivals: number;
  readonly outcomes: RunResult['outcomes'];
  readonly latency_ms: { readonly p50: number; readonly p90: number; readonly p99: number; readonly p999: number; readonly max: number };
  readonly steps: readonly StepReport[];
  /** The offered rate of the first second where latency or the queue started to grow; null if none did. */
  readonly saturation_per_s: number | null;
  readonly littles_law: { readonly arrival_per_s: number; readonly mean_latency_s: number; readonly predicted_in_flight: number; readonly measured_in_flight: number };
  readonly queue: QueueReport;
  readonly invariants: Invariants;
  readonly problems: readonly string[];
}

/**
 * The checkout queue as the shoppers met it. Waits and order come from the server's `joined_at` and
 * `admitted_at` of every join; `estimate_error` compares the first estimate a shopper was told with the wait they
 * had, over shoppers who waited at least a second; an inversion is a shopper admitted before someone who joined
 * earlier. `payment_p99_ms` compares the p99 of the payments (counted from admission) of every shopper who
 * arrived during the spike's peak with that of every shopper who arrived in the quiet seconds before it.
 */
export interface QueueReport {
  readonly enabled: boolean;
  readonly queued: number;
  readonly max_length: number;
  readonly capacity_per_s: number | null;
  readonly wait_ms: { readonly p50: number; readonly p99: number; readonly max: number };
  readonly estimate_error: { readonly mean: number | null; readonly bias: number | null; readonly within_20pct: number | null; readonly measured: number };
  readonly inversions: number;
  readonly inversion_rate: number;
  readonly lapsed: number;
  readonly lost: number;
  readonly payment_p99_ms: { readonly quiet: number; readonly spike: number; readonly ratio: number | null } | null;
}

export function queueReport(queue: QueueResult, phases: RunResult['phases']): QueueReport {
  const waited = queue.waits.filter((wait) => wait.waited);
  const durations = waited.map((wait) => wait.admittedAt - wait.joinedAt).sort((a, b) => a - b);
  const at = (share: number) => durations[Math.min(durations.length - 1, Math.floor(share * durations.length))] ?? 0;
  const measured = waited.filter((wait) => wait.admittedAt - wait.joinedAt >= 1_000);
  const signed = measured.map((wait) => (wait.estimateS * 1000 - (wait.admittedAt - wait.joinedAt)) / (wait.admittedAt - wait.joinedAt));
  const errors = signed.map(Math.abs);
  const byJoin = [...queue.waits].sort((a, b) => a.joinedAt - b.joinedAt);
  let inversions = 0;
  let earlierMax = -Infinity;
  let groupMax = -Infinity;
  for (const [index, wait] of byJoin.entries()) {
    // Only someone who joined strictly earlier can be overtaken: joins in the same millisecond have no order here.
    if (index > 0 && wait.joinedAt !== byJoin[index - 1]?.joinedAt) earlierMax = Math.max(earlierMax, groupMax);
    if (wait.admittedAt < earlierMax) inversions += 1;
    groupMax = index > 0 && wait.joinedAt === byJoin[index - 1]?.joinedAt ? Math.max(groupMax, wait.admittedAt) : wait.admittedAt;
  }
  const payment: QueueReport['payment_p99_ms'] =
    phases === undefined ? null : { quiet: phases.quietP99, spike: phases.spikeP99, ratio: phases.quietP99 === 0 ? null : round(phases.spikeP99 / phases.quietP99) };
  return {
    enabled: queue.enabled,
    queued: waited.length,
    max_length: queue.maxLength,
    capacity_per_s: queue.maxCapacityPerS === null ? null : round(queue.maxCapacityPerS),
    wait_ms: { p50: at(0.5), p99: at(0.99), max: durations.at(-1) ?? 0 },
    estimate_error: {
      mean: errors.length === 0 ? null : round(errors.reduce((sum, value) => sum + value, 0) / errors.length, 3),
      bias: signed.length === 0 ? null : round(signed.reduce((sum, value) => sum + value, 0) / signed.length, 3),
      within_20pct: errors.length === 0 ? null : round(errors.filter((value) => value <= 0.2).length / errors.length, 3),
      measured: errors.length,
    },
    inversions,
    inversion_rate: queue.waits.length === 0 ? 0 : round(inversions / queue.waits.length, 4),
    lapsed: queue.lapsed,
    lost: queue.lost,
    payment_p99_ms: payment,
  };
}

// ECharts is a CommonJS module typed as `export =`: loaded through require, with its own types.
// eslint-disable-next-line @typescript-eslint/consistent-type-imports -- an `export =` module has no ESM type import
const echarts = createRequire(import.meta.url)('echarts') as typeof import('echarts');
type ChartOption = Parameters<ReturnType<typeof echarts.init>['setOption']>[0];

const round = (value: number, digits = 2) => Math.round(value * 10 ** digits) / 10 ** digits;

/**
 * Where saturation began: the first second whose p99 is more than twice the quiet seconds' (the first quarter of
 * the run, where a flash sale has not spiked yet), or where shoppers were shed or queued.
 */
export function saturationOf(steps: readonly StepReport[]): number | null {
  const answered = steps.filter((step) => step.offered > 0);
  const quiet = answered.slice(0, Math.max(1, Math.floor(answered.length / 4))).map((step) => step.p99_ms).sort((a, b) => a - b);
  const baseline = quiet[Math.floor(quiet.length / 2)] ?? 0;
  const first = answered.find((step) => step.shed > 0 || step.queued > 0 || (baseline > 0 && step.p99_ms > 2 * baseline));
  return first === undefined ? null : first.offered;
}

export function buildReport(scenario: string, target: string, result: RunResult, invariants: Invariants, problems: readonly string[]): LoadReport {
  const arrivalPerS = result.arrivals / Math.max(1, result.steps.length);
  const meanLatencyS = result.latency.mean / 1000;
  return {
    scenario,
    target,
    duration_s: result.steps.length,
    offered_per_s: round(arrivalPerS),
    goodput_per_s: round(result.outcomes.succeeded / Math.max(1, result.steps.length)),
    arrivals: result.arrivals,
    outcomes: result.outcomes,
    latency_ms: { p50: result.latency.p50, p90: result.latency.p90, p99: result.latency.p99, p999: result.latency.p999, max: result.latency.max },
    steps: result.steps,
    saturation_per_s: saturationOf(result.steps),
    littles_law: { arrival_per_s: round(arrivalPerS), mean_latency_s: round(meanLatencyS, 3), predicted_in_flight: round(arrivalPerS * meanLatencyS), measured_in_flight: round(result.meanInFlight) },
    queue: queueReport(result.queue, result.phases),
    invariants,
    problems,
  };
}

function chart(title: string, option: ChartOption): string {
  const instance = echarts.init(null, null, { renderer: 'svg', ssr: true, width: 880, height: 300 });
  instance.setOption({ animation: false, title: { text: title, left: 0, top: 0, textStyle: { fontSize: 14 } }, grid: { left: 60, right: 30, top: 70, bottom: 40 }, legend: { top: 28, left: 'center' }, tooltip: {}, ...option });
  const svg = instance.renderToSVGString();
  instance.dispose();
  return svg;
}

function queueSummary(queue: QueueReport): string {
  if (!queue.enabled) return 'off';
  const error = queue.estimate_error;
  return escapeHtml(
    [
      `on: ${queue.queued} shoppers waited, at most ${queue.max_length} at once`,
      `capacity up to ${queue.capacity_per_s ?? 'unbounded'}/s`,
      `wait p50 ${queue.wait_ms.p50} ms, p99 ${queue.wait_ms.p99} ms, max ${queue.wait_ms.max} ms`,
      `estimate error ${error.mean === null ? 'not measured' : `${Math.round(error.mean * 100)}% mean, ${Math.round((error.within_20pct ?? 0) * 100)}% within 20% (${error.measured} shoppers)`}`,
      `${queue.inversions} inversions (${(queue.inversion_rate * 100).toFixed(2)}%)`,
      `${queue.lapsed} lapsed, ${queue.lost} lost`,
      queue.payment_p99_ms === null ? '' : `payment p99 ${queue.payment_p99_ms.spike} ms in the spike vs ${queue.payment_p99_ms.quiet} ms quiet (${queue.payment_p99_ms.ratio ?? '–'}x)`,
    ].filter((part) => part !== '').join(' · '),
  );
}

export function renderHtml(report: LoadReport): string {
  const seconds = report.steps.map((step) => String(step.at_s));
  const line = (name: string, data: number[], extra: Record<string, unknown> = {}) => ({ name, type: 'line', showSymbol: false, data, ...extra });
  const saturationAt = report.saturation_per_s === null ? undefined : report.steps.find((step) => step.offered === report.saturation_per_s)?.at_s;
  const partnerKeys = [...new Set(report.steps.flatMap((step) => Object.keys(step.partner_in_flight)))].sort();
  const charts = [
    chart('Offered vs goodput (per second)', {
      xAxis: { type: 'category', data: seconds, name: 's' },
      yAxis: { type: 'value', name: 'shoppers/s' },
      series: [
        line('offered', report.steps.map((step) => step.offered), saturationAt === undefined ? {} : { markLine: { symbol: 'none', data: [{ xAxis: String(saturationAt), name: 'saturation' }], label: { formatter: 'saturation' } } }),
        line('goodput', report.steps.map((step) => step.succeeded)),
        line('declined', report.steps.map((step) => step.declined)),
      ],
    }),
    chart('Latency percentiles (ms)', {
      xAxis: { type: 'category', data: seconds, name: 's' },
      yAxis: { type: 'value', name: 'ms' },
      series: [line('p50', report.steps.map((step) => step.p50_ms)), line('p99', report.steps.map((step) => step.p99_ms))],
    }),
    chart("In flight: measured vs Little's law (arrivals × mean latency)", {
      xAxis: { type: 'category', data: seconds, name: 's' },
      yAxis: { type: 'value', name: 'shoppers' },
      series: [line('measured', report.steps.map((step) => step.in_flight)), line('predicted', report.steps.map((step) => round((step.offered * step.mean_ms) / 1000)))],
    }),
    chart('Shed and queued (per second)', {
      xAxis: { type: 'category', data: seconds, name: 's' },
      yAxis: { type: 'value', name: 'shoppers' },
      series: [
        { name: 'shed', type: 'bar', stack: 'refused', data: report.steps.map((step) => step.shed) },
        { name: 'queued (waited, then served)', type: 'bar', stack: 'waited', data: report.steps.map((step) => step.queued) },
        { name: 'errors', type: 'bar', stack: 'refused', data: report.steps.map((step) => step.errors) },
      ],
    }),
    chart('Checkout queue: length and admission rate (end of each second)', {
      xAxis: { type: 'category', data: seconds, name: 's' },
      yAxis: [{ type: 'value', name: 'shoppers waiting' }, { type: 'value', name: 'admissions/s' }],
      series: [line('waiting', report.steps.map((step) => step.queue_length)), line('capacity', report.steps.map((step) => step.queue_capacity_per_s ?? 0), { yAxisIndex: 1 })],
    }),
    chart('Partner calls in flight (partner/country)', {
      xAxis: { type: 'category', data: seconds, name: 's' },
      yAxis: { type: 'value', name: 'calls' },
      series: partnerKeys.length === 0 ? [line('none reported', report.steps.map(() => 0))] : partnerKeys.map((key) => line(key, report.steps.map((step) => step.partner_in_flight[key] ?? 0))),
    }),
  ];
  const verdict = (value: boolean | null) => (value === null ? 'not checked' : value ? 'holds' : '<strong>BROKEN</strong>');
  const rows: [string, string][] = [
    ['scenario', escapeHtml(report.scenario)],
    ['target', escapeHtml(report.target)],
    ['arrivals', `${report.arrivals} in ${report.duration_s} s (${report.offered_per_s}/s offered, ${report.goodput_per_s}/s goodput)`],
    ['outcomes', escapeHtml(Object.entries(report.outcomes).map(([name, count]) => `${name} ${count}`).join(' · '))],
    ['latency', `p50 ${report.latency_ms.p50} ms · p90 ${report.latency_ms.p90} ms · p99 ${report.latency_ms.p99} ms · p99.9 ${report.latency_ms.p999} ms · max ${report.latency_ms.max} ms`],
    ['saturation', report.saturation_per_s === null ? 'not reached' : `from ${report.saturation_per_s} shoppers/s offered`],
    ["Little's law", `λ ${report.littles_law.arrival_per_s}/s × W ${report.littles_law.mean_latency_s} s = ${report.littles_law.predicted_in_flight} predicted in flight; ${report.littles_law.measured_in_flight} measured`],
    ['checkout queue', queueSummary(report.queue)],
    ['one charge per order', verdict(report.invariants.charged_once)],
    ['nothing left processing', verdict(report.invariants.none_left_processing)],
    ['ledger verifies', verdict(report.invariants.ledger_verified)],
  ];
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Keel load test: ${escapeHtml(report.scenario)}</title>
<style>body{font:14px/1.45 system-ui,sans-serif;margin:24px auto;max-width:920px;color:#1a1a1a}table{border-collapse:collapse;margin-bottom:24px}td{padding:4px 12px;border-bottom:1px solid #ddd;vertical-align:top}td:first-child{color:#555}figure{margin:0 0 24px}</style>
</head><body>
<h1>Keel load test: ${escapeHtml(report.scenario)}</h1>
<table>${rows.map(([name, value]) => `<tr><td>${escapeHtml(name)}</td><td>${value}</td></tr>`).join('')}</table>
${report.problems.length === 0 ? '' : `<p><strong>Problems:</strong> ${report.problems.map(escapeHtml).join('; ')}</p>`}
${charts.map((svg) => `<figure>${svg}</figure>`).join('\n')}
</body></html>
`;
}
