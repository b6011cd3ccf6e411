// The whole alerting path with the real engines, on loopback: Keel (with the benchmark gateway) serving
// /metrics, Debian's Prometheus scraping it every second and evaluating Keel's own rules (ops/prometheus/
// alerts.yml, unchanged), Debian's Alertmanager posting to Keel's receiver. A partner outage for one country
// opens that country's breaker; KeelBreakerOpen fires; an incident opens naming the partner and the country;
// signed slash commands set the IMOC and SRM, add an important message and move the status; the outage clears,
// the breaker closes, the alert resolves and the incident goes to monitoring; `close` resolves it, and its outage
// record counts the failed and unreachable payments of that country only; the post-mortem is due in 7 days.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, test } from 'node:test';
import { freePort } from '../src/testing/cli.js';
import { startTestKeel, testCard, uniqueKey, type TestKeel } from '../src/testing/harness.js';

const prometheusBin = '/usr/bin/prometheus';
const alertmanagerBin = '/usr/bin/prometheus-alertmanager';
const installed = existsSync(prometheusBin) && existsSync(alertmanagerBin);
if (!installed && process.env['KEEL_TEST_REQUIRE_SERVICES'] === '1') throw new Error('the alerting test needs Debian\'s prometheus and prometheus-alertmanager');

const rules = fileURLToPath(new URL('../ops/prometheus/alerts.yml', import.meta.url));
const signingSecret = 'e2e-signing-secret';
const children: ChildProcess[] = [];
const logs: string[] = [];
let folder = '';
let keel: TestKeel;
let keelUrl = '';


function launch(bin: string, args: readonly string[]): void {
  const child = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const keep = (chunk: Buffer) => logs.push(`${bin}: ${chunk.toString()}`);
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  children.push(child);
}

async function until<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe().catch(() => undefined);
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}\n${logs.slice(-20).join('')}`);
    await sleep(500);
  }
}

const admin = (method: 'GET' | 'POST', path: string, body?: unknown) =>
  keel.request(method, path, { ...(body === undefined ? {} : { body }), secretKey: null, idempotencyKey: null, headers: { authorization: `Bearer ${keel.keel.services.adminToken}` } });

function slack(text: string) {
  const body = new URLSearchParams({ channel_id: 'C-PAYMENTS', user_id: 'U0DANA', user_name: 'dana', command: '/incident', text }).toString();
  const timestamp = String(Math.floor(Date.now() / 1000));
  const signature = `v0=${createHmac('sha256', signingSecret).update(`v0:${timestamp}:${body}`).digest('hex')}`;
  return keel.request('POST', '/chatops/slack', { rawBody: body, secretKey: null, idempotencyKey: null, headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-slack-request-timestamp': timestamp, 'x-slack-signature': signature } });
}

before(async () => {
  if (!installed) return;
  keel = await startTestKeel({
    config: {
      slackSigningSecret: signingSecret,
      // Open after 3 failed calls in 10 s; half-open after 2 s; closed after 2 successes.
      breaker: { minimumCalls: 3, failureRatePercent: 50, windowMs: 10_000, errorTimeoutMs: 2_000, successThreshold: 2, halfOpenReadTimeoutMs: 1_000 },
    },
  });
  await keel.keel.app.listen({ port: 0, host: '127.0.0.1' });
  keelUrl = `127.0.0.1:${(keel.keel.app.server.address() as AddressInfo).port}`;
  folder = mkdtempSync(join(tmpdir(), 'keel-alerting-'));
  const prometheusPort = await freePort();
  const alertmanagerPort = await freePort();
  writeFileSync(join(folder, 'token'), keel.keel.services.adminToken);
  writeFileSync(
    join(folder, 'alertmanager.yml'),
    [
      'route:',
      '  receiver: keel',
      "  group_by: ['alertname', 'gateway', 'country']",
      '  group_wait: 1s',
      '  group_interval: 1s',
      '  repeat_interval: 1h',
      'receivers:',
      '  - name: keel',
      '    webhook_configs:',
      `      - url: http://${keelUrl}/admin/alerts/alertmanager`,
      '        send_resolved: true',
      '        http_config:',
      '          authorization:',
      '            type: Bearer',
      `            credentials_file: ${join(folder, 'token')}`,
      '',
    ].join('\n'),
  );
  writeFileSync(
    join(folder, 'prometheus.yml'),
    [
      'global:',
      '  scrape_interval: 1s',
      '  evaluation_interval: 1s',
      'rule_files:',
      `  - ${rules}`,
      'alerting:',
      '  alertmanagers:',
      '    - static_configs:',
      `        - targets: ['127.0.0.1:${alertmanagerPort}']`,
      'scrape_configs:',
      '  - job_name: keel',
      '    static_configs:',
      `      - targets: ['${keelUrl}']`,
      '',
    ].join('\n'),
  );
  launch(alertmanagerBin, [`--config.file=${join(folder, 'alertmanager.yml')}`, `--storage.path=${join(folder, 'am')}`, `--web.listen-address=127.0.0.1:${alertmanagerPort}`, '--cluster.listen-address=']);
  launch(prometheusBin, [`--config.file=${join(folder, 'prometheus.yml')}`, `--storage.tsdb.path=${join(folder, 'tsdb')}`, `--web.listen-address=127.0.0.1:${prometheusPort}`]);
  await until('Alertmanager ready', async () => ((await fetch(`http://127.0.0.1:${alertmanagerPort}/-/ready`)).ok ? true : undefined), 30_000);
  await until('Prometheus ready', async () => ((await fetch(`http://127.0.0.1:${prometheusPort}/-/ready`)).ok ? true : undefined), 30_000);
  await until('Prometheus scraping Keel', async () => {
    const targets = (await (await fetch(`http://127.0.0.1:${prometheusPort}/api/v1/targets`)).json()) as { data: { activeTargets: { health: string }[] } };
    return targets.data.activeTargets.some((target) => target.health === 'up') ? true : undefined;
  }, 30_000);
});

after(async () => {
  for (const child of children) child.kill('SIGTERM');
  await sleep(200);
  if (keel !== undefined) await keel.close();
  if (folder !== '') rmSync(folder, { recursive: true, force: true });
});

test('a partner outage in one country: alert, incident run from chat, recovery, close, outage record, post-mortem', { skip: installed ? false : 'prometheus and prometheus-alertmanager are not installed', timeout: 240_000 }, async () => {
  const japan = await keel.createMerchant({ name: 'Kyoto Store', country: 'JP' });
  const korea = await keel.createMerchant({ name: 'Seoul Store', country: 'KR' });
  const pay = (secretKey: string, card?: string) => keel.request('POST', '/v1/payments', { secretKey, body: { amount: 3000, currency: 'KRW', order_id: uniqueKey('o'), payment_method: testCard(card), confirm: true } });

  await fetch(`${keel.keel.gatewayUrl}/__sim/faults`, { method: 'POST', body: JSON.stringify({ country: 'JP', mode: 'outage', duration_s: 600 }) });
  const japanFailures = [];
  for (let index = 0; index < 6; index += 1) japanFailures.push((await pay(japan.secret_key)).status);
  assert.ok(japanFailures.every((status) => status === 202 || status === 503), JSON.stringify(japanFailures));
  // Korea's partner works; its one payment whose answer is lost (processing) is not Japan's outage.
  assert.equal((await pay(korea.secret_key)).status, 200);
  assert.equal((await pay(korea.secret_key, '4000000000000259')).status, 202);

  interface Listed {
    id: string;
    title: string;
    source: string;
    severity: string;
    gateways: string[];
    countries: string[];
  }
  const incident = await until('an incident opened by KeelBreakerOpen', async () => {
    const open = await admin('GET', '/admin/incidents?status=open&limit=100');
    return (open.body.data as Listed[]).find((candidate) => candidate.source === 'alert' && candidate.title.startsWith('KeelBreakerOpen'));
  }, 120_000);
  assert.deepEqual([incident.title, incident.severity, incident.gateways, incident.countries], ['KeelBreakerOpen: country=JP, gateway=toss', 'sev1', ['toss'], ['JP']]);

  for (const command of [`${incident.id} imoc <@U0DANA>`, `${incident.id} srm <@U0LEE>`, `${incident.id} important Toss confirms its Japanese acquirer is down`, `${incident.id} status identified`]) {
    const answer = await slack(command);
    assert.deepEqual([answer.status, answer.body.response_type], [200, 'in_channel'], `${command}: ${JSON.stringify(answer.body)}`);
  }

  // The outage clears: Japan's payments go through again, the breaker closes, the alert resolves.
  await fetch(`${keel.keel.gatewayUrl}/__sim/faults`, { method: 'DELETE' });
  await sleep(2_100);
  for (let index = 0; index < 3; index += 1) assert.equal((await pay(japan.secret_key)).status, 200);
  const monitoring = await until('the incident in monitoring', async () => {
    const current = await admin('GET', `/admin/incidents/${incident.id}`);
    return current.body.status === 'monitoring' ? current.body : undefined;
  }, 120_000);
  assert.deepEqual([monitoring.roles.imoc, monitoring.roles.srm], ['<@U0DANA>', '<@U0LEE>']);

  const closed = await slack(`${incident.id} close`);
  assert.match(closed.body.text, /resolved\. Its post-mortem is due in 7 days/);
  const outage = await admin('GET', `/admin/incidents/${incident.id}/outage`);
  assert.equal(outage.status, 200, JSON.stringify(outage.body));
  const { impact } = outage.body;
  assert.equal(impact.payments_processing + impact.payments_unreachable + impact.payments_failed, 6, `Japan's six, not Korea's: ${JSON.stringify(impact)}`);
  assert.ok(impact.payments_unreachable >= 1 && impact.payments_processing >= 1, JSON.stringify(impact));
  assert.deepEqual(impact.amount_at_risk, [{ amount: 18000, currency: 'KRW' }]);
  assert.deepEqual(outage.body.important_messages.map((message: { text: string }) => message.text), ['Toss confirms its Japanese acquirer is down']);

  const timeline = (await admin('GET', `/admin/incidents/${incident.id}/timeline`)).body.data as { kind: string; text: string }[];
  assert.ok(timeline.some((entry) => entry.kind === 'alert' && entry.text.startsWith('firing: KeelBreakerOpen')));
  assert.ok(timeline.some((entry) => entry.kind === 'alert' && entry.text.startsWith('resolved: KeelBreakerOpen')));
  assert.ok(timeline.some((entry) => entry.kind === 'system' && entry.text === 'circuit breaker toss/JP closed'));
  const postmortem = (await admin('GET', '/admin/postmortems?limit=100')).body.data.find((candidate: { incident: string }) => candidate.incident === incident.id);
  assert.equal(Math.round((Date.parse(postmortem.due_at) - Date.now()) / 86_400_000), 7);
});
