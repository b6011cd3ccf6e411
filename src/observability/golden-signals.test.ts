// Proves the golden signals on /metrics after a tour: approvals and declines counted apart per partner and
// country, partner latency split by outcome (a healthy answer vs an error), refusals before sending, the breaker's
// state per partner and country (open for the country whose partner is down, closed elsewhere), bulkhead and API
// saturation, the event loop's delay, the database pool (PostgreSQL), the event backlog — and that every label
// value is bounded: no ids, no free text.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { startTestKeel, testCard, uniqueKey, type TestKeel } from '../testing/harness.js';

let keel: TestKeel;
before(async () => {
  keel = await startTestKeel({ config: { breaker: { minimumCalls: 3, failureRatePercent: 50, windowMs: 10_000, errorTimeoutMs: 60_000, successThreshold: 2, halfOpenReadTimeoutMs: 500 } } });
});
after(async () => {
  await keel.close();
});

interface Series {
  readonly name: string;
  readonly labels: Record<string, string>;
  readonly value: number;
}

function parse(text: string): Series[] {
  return text
    .split('\n')
    .filter((line) => line !== '' && !line.startsWith('#'))
    .map((line) => {
      const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
      assert.ok(match !== null, `a metrics line: ${line}`);
      const labels = Object.fromEntries([...(match[2] ?? '').matchAll(/([a-zA-Z_]+)="((?:[^"\\]|\\.)*)"/g)].map((pair) => [pair[1] ?? '', pair[2] ?? '']));
      return { name: match[1] ?? '', labels, value: Number(match[3]) };
    });
}

test('after a tour, /metrics carries each golden signal per partner and country, with bounded labels', async () => {
  const japan = await keel.createMerchant({ name: 'Tokyo Shop', country: 'JP' });
  const pay = (body: Record<string, unknown>, secretKey?: string) =>
    keel.request('POST', '/v1/payments', { body: { amount: 1000, currency: 'KRW', order_id: uniqueKey('o'), confirm: true, payment_method: testCard(), ...body }, ...(secretKey === undefined ? {} : { secretKey }) });
  const paid = await pay({});
  assert.equal(paid.status, 200);
  assert.equal((await pay({ payment_method: testCard('4000000000000002') })).status, 402);
  // Reads by id, and a path no route serves: their series name the route's template, never the id.
  assert.equal((await keel.request('GET', `/v1/payments/${paid.body.id}`)).status, 200);
  assert.equal((await keel.request('GET', `/v1/no_such_thing/${paid.body.id}`)).status, 404);
  // The partner is down for Japan only (the breakers' country is the merchant's): its calls fail, the breaker for
  // (toss, JP) opens, Korea's stays closed.
  await fetch(`${keel.keel.gatewayUrl}/__sim/faults`, { method: 'POST', body: JSON.stringify({ country: 'JP', mode: 'outage', duration_s: 60 }) });
  try {
    for (let index = 0; index < 5; index += 1) await pay({}, japan.secret_key);
  } finally {
    await fetch(`${keel.keel.gatewayUrl}/__sim/faults`, { method: 'DELETE' });
  }
  const metrics = await keel.request('GET', '/metrics', { secretKey: null });
  assert.equal(metrics.status, 200);
  const series = parse(metrics.body as string);
  const find = (name: string, labels: Record<string, string> = {}) =>
    series.filter((one) => one.name === name && Object.entries(labels).every(([key, value]) => one.labels[key] === value));
  const value = (name: string, labels: Record<string, string>) => find(name, labels).reduce((sum, one) => sum + one.value, 0);

  // Traffic and errors apart from declines.
  assert.equal(value('keel_payment_outcomes_total', { gateway: 'toss', country: 'KR', outcome: 'ok' }), 1);
  assert.equal(value('keel_payment_outcomes_total', { gateway: 'toss', country: 'KR', outcome: 'declined' }), 1);
  assert.equal(value('keel_payment_outcomes_total', { gateway: 'toss', country: 'JP', outcome: 'ok' }), 0);
  assert.equal(value('keel_payment_outcomes_total', { gateway: 'toss', country: 'JP' }), 5, 'each an error: unknown or unreachable');
  assert.ok(find('keel_http_request_duration_seconds_count', { route: '/v1/payments', status_class: '2xx' }).length > 0);
  assert.equal(value('keel_http_request_duration_seconds_count', { method: 'GET', route: '/v1/payments/:id', status_class: '2xx' }), 1);
  assert.equal(value('keel_http_request_duration_seconds_count', { method: 'GET', route: 'unmatched', status_class: '4xx' }), 1);
  // Latency split by outcome: the answers (ok, declined) and the errors of the same partner apart.
  assert.equal(value('keel_partner_call_duration_seconds_count', { gateway: 'toss', country: 'KR', operation: 'authorize', outcome: 'ok' }), 1);
  assert.equal(value('keel_partner_call_duration_seconds_count', { gateway: 'toss', country: 'KR', operation: 'authorize', outcome: 'declined' }), 1);
  assert.ok(value('keel_partner_call_duration_seconds_count', { gateway: 'toss', country: 'JP', operation: 'authorize' }) >= 3);
  assert.equal(value('keel_partner_call_duration_seconds_count', { gateway: 'toss', country: 'JP', operation: 'authorize', outcome: 'ok' }), 0);
  assert.ok(value('keel_partner_calls_refused_total', { gateway: 'toss', country: 'JP', reason: 'breaker_open' }) >= 1, 'refused once the breaker opened');
  // The breaker's state per partner and country.
  assert.equal(value('keel_breaker_state', { gateway: 'toss', country: 'JP' }), 2);
  assert.equal(value('keel_breaker_state', { gateway: 'toss', country: 'KR' }), 0);
  // Saturation.
  assert.equal(value('keel_bulkhead_in_flight', { gateway: 'toss', country: 'KR' }), 0);
  assert.ok(value('keel_bulkhead_capacity', { gateway: 'toss', country: 'KR' }) > 0);
  assert.ok((find('keel_api_concurrency', { kind: 'limit' })[0]?.value ?? 0) > 0);
  assert.equal(find('keel_api_concurrency', { kind: 'in_flight' }).length, 1);
  assert.equal(find('keel_event_loop_delay_seconds').length, 1);
  assert.ok(find('keel_event_backlog', { queue: 'outbox_unpublished' })[0] !== undefined);
  assert.equal(find('keel_projection_lag_seconds').length, 1);
  if (keel.keel.database.engine === 'postgres') {
    assert.ok(value('keel_db_pool_connections', { state: 'total' }) >= 1);
    assert.equal(find('keel_db_pool_connections', { state: 'waiting' }).length, 1);
  }

  // Bounded labels: short codes and route templates, never an id, an order number or a message.
  const ids = /(pay|mer|ord|cus|re|att|evt|anom|inc)_[0-9A-Za-z]{6,}|[0-9a-f]{8}-[0-9a-f]{4}-|o_[0-9a-z]+_\d/;
  for (const one of series) {
    for (const [key, label] of Object.entries(one.labels)) {
      assert.ok(label.length <= 64 && !ids.test(label) && !/\s/.test(label), `${one.name}{${key}="${label}"} is bounded`);
    }
  }
});
