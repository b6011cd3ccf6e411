// Proves Keel's alert rules and the shipped configurations with the real tools: every rule in
// ops/prometheus/alerts.yml is unit-tested by `promtool test rules` (firing, not firing, resolving — a decline
// spends no error budget), and the Prometheus and Alertmanager configurations are valid. Debian's `prometheus`
// and `prometheus-alertmanager` provide the tools; without them the test is skipped and says so, unless
// KEEL_TEST_REQUIRE_SERVICES=1, when it fails.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { test } from 'node:test';

const run = promisify(execFile);
const root = fileURLToPath(new URL('../..', import.meta.url));
const tool = (name: string) => ['/usr/bin', '/usr/local/bin'].map((dir) => `${dir}/${name}`).find((path) => existsSync(path));
const required = process.env['KEEL_TEST_REQUIRE_SERVICES'] === '1';

function missing(name: string): string | false {
  if (tool(name) !== undefined) return false;
  assert.ok(!required, `${name} is required (KEEL_TEST_REQUIRE_SERVICES=1): apt-get install prometheus prometheus-alertmanager`);
  return `${name} is not installed (Debian's prometheus / prometheus-alertmanager)`;
}

test('every alert rule passes its promtool unit tests', { skip: missing('promtool') }, async () => {
  const { stdout } = await run(tool('promtool') ?? 'promtool', ['test', 'rules', 'ops/prometheus/alerts.test.yml'], { cwd: root });
  assert.match(stdout, /SUCCESS/);
});

test('the rules, the Prometheus configuration and the Alertmanager configuration are valid', { skip: missing('promtool') || missing('amtool') }, async () => {
  const rules = await run(tool('promtool') ?? 'promtool', ['check', 'rules', 'ops/prometheus/alerts.yml'], { cwd: root });
  const count = Number(/SUCCESS: (\d+) rules found/.exec(rules.stdout)?.[1] ?? 0);
  assert.ok(count >= 14, `rules found: ${count}`);
  await run(tool('promtool') ?? 'promtool', ['check', 'config', 'ops/prometheus/prometheus.yml'], { cwd: root });
  const alertmanager = await run(tool('amtool') ?? 'amtool', ['check-config', 'ops/alertmanager/alertmanager.yml'], { cwd: root });
  assert.match(alertmanager.stdout, /SUCCESS/);
});

test("the contract's alert names are all defined, each with a runbook in docs/operations.md", async () => {
  const { readFile } = await import('node:fs/promises');
  const rules = await readFile(`${root}/ops/prometheus/alerts.yml`, 'utf8');
  const operations = await readFile(`${root}/docs/operations.md`, 'utf8');
  for (const name of ['KeelPartnerErrorRateHigh', 'KeelBreakerOpen', 'KeelPaymentLatencyHigh', 'KeelApprovalRateLow', 'KeelSaturationHigh', 'KeelEventBacklogGrowing', 'KeelAnomaliesOpen', 'KeelPaymentSuccessBudgetBurn']) {
    assert.match(rules, new RegExp(`- alert: ${name}\\n`), `${name} is a rule`);
    assert.match(rules, new RegExp(`runbook_url: docs/operations.md#${name.toLowerCase()}`), `${name} has a runbook link`);
    assert.match(operations, new RegExp(`^### ${name}$`, 'm'), `docs/operations.md has a section for ${name}`);
  }
});
