// Proves breakers and bulkheads through the public API: errors in one country open that country's breaker, after
// which its payments fail fast with 503 gateway_unavailable and Retry-After before anything is sent, while
// another country's payments keep succeeding; /v1/resilience shows it; the breaker half-opens and closes on
// successes; declines never open it; a full bulkhead refuses at once and leaves the payment confirmable.
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import type { CreatedMerchant } from '../merchants/merchants.js';
import { startTestKeel, testCard, uniqueKey, type TestKeel } from '../testing/harness.js';

let keel: TestKeel;
let japan: CreatedMerchant;
let usa: CreatedMerchant;
const breaker = { minimumCalls: 3, failureRatePercent: 50, windowMs: 10_000, errorTimeoutMs: 1_500, successThreshold: 2, halfOpenReadTimeoutMs: 500 };

before(async () => {
  keel = await startTestKeel({ config: { breaker, bulkheadMax: 2 } });
  japan = await keel.createMerchant({ name: 'Tokyo Shop', country: 'JP' });
  usa = await keel.createMerchant({ name: 'Austin Shop', country: 'US' });
});
after(async () => {
  await keel.close();
});

const pay = (secretKey: string, card = '4242424242424242', currency = 'KRW') =>
  keel.request('POST', '/v1/payments', { body: { amount: 1000, currency, order_id: uniqueKey('ord'), payment_method: testCard(card), confirm: true }, secretKey });
const sim = (path: string, method: string, body?: unknown) =>
  fetch(`${keel.keel.gatewayUrl}${path}`, { method, ...(body === undefined ? {} : { body: JSON.stringify(body) }) });
const resilience = async () => {
  const response = await keel.request('GET', '/v1/resilience', { headers: { authorization: `Bearer ${keel.keel.services.adminToken}` } });
  assert.equal(response.status, 200);
  return response.body.data as { resource: string; state: string; error_count: number; next_half_open_at: string | null }[];
};

describe('circuit breaker per partner and country', () => {
  test('errors in KR open KR\'s breaker; KR fails fast while JP keeps succeeding; then it half-opens and closes', async () => {
    await sim('/__sim/faults', 'POST', { country: 'KR', mode: 'errors', rate: 1, duration_s: 60 });
    for (let index = 0; index < breaker.minimumCalls; index += 1) {
      const response = await pay(keel.merchant.secret_key);
      assert.equal(response.status, 202, 'a 5xx after sending is unknown, and counts as an error');
    }
    const refused = await pay(keel.merchant.secret_key);
    assert.equal(refused.status, 503);
    assert.equal(refused.body.error.code, 'gateway_unavailable');
    assert.equal(refused.body.error.payment.status, 'requires_confirmation');
    assert.ok(Number(refused.headers['retry-after']) >= 1);
    const attempt = await keel.keel.database.db
      .selectFrom('payment_attempts')
      .select(['status', 'failure_message'])
      .orderBy('id', 'desc')
      .executeTakeFirstOrThrow();
    assert.deepEqual(attempt, { status: 'not_sent', failure_message: 'circuit breaker open' });

    const tokyo = await pay(japan.secret_key);
    assert.equal(tokyo.status, 200, 'another country\'s resource is unaffected');
    assert.equal(tokyo.body.status, 'succeeded');

    const states = await resilience();
    const kr = states.find((state) => state.resource.endsWith(':KR'));
    const jp = states.find((state) => state.resource.endsWith(':JP'));
    assert.equal(kr?.state, 'open');
    assert.ok(kr?.next_half_open_at !== null);
    assert.equal(jp?.state, 'closed');
    assert.ok(keel.logs.some((line) => line.includes('circuit breaker closed -> open')), 'the change is logged');

    await sim('/__sim/faults', 'DELETE');
    await sleep(breaker.errorTimeoutMs + 100);
    const trial = await pay(keel.merchant.secret_key);
    assert.equal(trial.status, 200, JSON.stringify(trial.body));
    assert.equal((await resilience()).find((state) => state.resource.endsWith(':KR'))?.state, 'half_open');
    assert.equal((await pay(keel.merchant.secret_key)).status, 200);
    assert.equal((await resilience()).find((state) => state.resource.endsWith(':KR'))?.state, 'closed');
  });

  test('declines never open the breaker', async () => {
    for (let index = 0; index < breaker.minimumCalls + 2; index += 1) {
      assert.equal((await pay(japan.secret_key, '4000000000000002')).status, 402);
    }
    assert.equal((await resilience()).find((state) => state.resource.endsWith(':JP'))?.state, 'closed');
    assert.equal((await pay(japan.secret_key)).status, 200);
  });

  test('the operator endpoint needs the operator token', async () => {
    const response = await keel.request('GET', '/v1/resilience');
    assert.equal(response.status, 401);
  });
});

describe('bulkhead per resource', () => {
  test('beyond the in-flight limit a call is refused at once, leaving the payment confirmable', async () => {
    await sim('/__sim/latency', 'POST', { country: 'US', p50_ms: 300, p99_ms: 300 });
    try {
      const responses = await Promise.all(Array.from({ length: 6 }, () => pay(usa.secret_key)));
      const statuses = responses.map((response) => response.status);
      assert.ok(statuses.filter((status) => status === 200).length >= 2, statuses.join(','));
      const refused = responses.filter((response) => response.status === 503);
      assert.ok(refused.length >= 1, statuses.join(','));
      for (const response of refused) {
        assert.equal(response.body.error.code, 'gateway_unavailable');
        assert.equal(response.body.error.payment.status, 'requires_confirmation');
      }
    } finally {
      await sim('/__sim/latency', 'POST', { country: 'US', p50_ms: 0, p99_ms: 0 });
    }
  });
});
