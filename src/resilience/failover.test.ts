// Proves routing across a merchant's partners in priority order: when the first choice cannot be reached before
// sending (connection refused, then its breaker open), the payment goes to the next partner as a new attempt and
// later operations follow it there; a first choice whose outcome is unknown is never tried elsewhere.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { startSimulator, type Simulator } from '../simulator/server.js';
import { startTestKeel, testCard, uniqueKey, type TestKeel } from '../testing/harness.js';

let stripeSim: Simulator;
let tossSim: Simulator;

before(async () => {
  stripeSim = await startSimulator({ port: 0 });
  tossSim = await startSimulator({ port: 0 });
});
after(async () => {
  await stripeSim.close();
  await tossSim.close();
});

// KRW: both partners can charge it, so failover is open between them.
const paymentBody = () => ({ amount: 2500, currency: 'KRW', order_id: uniqueKey('ord'), payment_method: testCard(), confirm: true });

async function attemptsOf(keel: TestKeel, paymentId: string): Promise<{ gateway: string; status: string; failure_message: string | null }[]> {
  const payment = await keel.keel.database.db.selectFrom('payments').select('id').where('order_id', '=', paymentId).executeTakeFirstOrThrow();
  return keel.keel.database.db
    .selectFrom('payment_attempts')
    .select(['gateway', 'status', 'failure_message'])
    .where('payment_id', '=', payment.id)
    .orderBy('id')
    .execute();
}

describe('the first partner refuses connections', () => {
  let keel: TestKeel;
  before(async () => {
    // Nothing listens on loopback port 9: Toss is unreachable; Stripe is served by its own gateway.
    keel = await startTestKeel({
      config: {
        partnerUrls: { toss: 'http://127.0.0.1:9', stripe: stripeSim.url },
        breaker: { minimumCalls: 5, failureRatePercent: 50, windowMs: 10_000, errorTimeoutMs: 10_000, successThreshold: 2, halfOpenReadTimeoutMs: 500 },
      },
    });
  });
  after(async () => {
    await keel.close();
  });

  test('the payment fails over to the next partner and later operations follow it', async () => {
    const merchant = await keel.createMerchant({ name: 'Two Partners', country: 'US', partners: [{ gateway: 'toss' }, { gateway: 'stripe' }] });
    const body = paymentBody();
    const response = await keel.request('POST', '/v1/payments', { body, secretKey: merchant.secret_key });
    assert.equal(response.status, 200, JSON.stringify(response.body));
    assert.equal(response.body.status, 'succeeded');
    assert.equal(response.body.gateway, 'stripe');
    const attempts = await attemptsOf(keel, body.order_id);
    assert.deepEqual(
      attempts.map((attempt) => [attempt.gateway, attempt.status]),
      [
        ['toss', 'not_sent'],
        ['stripe', 'succeeded'],
      ],
    );
    const refund = await keel.request('POST', '/v1/refunds', { body: { payment: response.body.id, amount: 1000 }, secretKey: merchant.secret_key });
    assert.equal(refund.status, 200, JSON.stringify(refund.body));
    const charges = (await (await fetch(`${stripeSim.url}/__sim/charges?order_id=${body.order_id}`)).json()) as { data: { refunded_amount: number }[] };
    assert.equal(charges.data[0]?.refunded_amount, 1000);
  });

  test('once the first partner\'s breaker is open, payments go straight to the next one', async () => {
    const merchant = await keel.createMerchant({ name: 'Two Partners Again', country: 'US', partners: [{ gateway: 'toss' }, { gateway: 'stripe' }] });
    for (let index = 0; index < 3; index += 1) {
      const response = await keel.request('POST', '/v1/payments', { body: paymentBody(), secretKey: merchant.secret_key });
      assert.equal(response.status, 200);
    }
    const body = paymentBody();
    await keel.request('POST', '/v1/payments', { body, secretKey: merchant.secret_key });
    const [first] = await attemptsOf(keel, body.order_id);
    assert.equal(first?.failure_message, 'circuit breaker open');
  });

  test('a merchant with one partner gets 503 and a confirmable payment', async () => {
    const merchant = await keel.createMerchant({ name: 'Toss Only', country: 'US', partners: [{ gateway: 'toss' }] });
    const response = await keel.request('POST', '/v1/payments', { body: paymentBody(), secretKey: merchant.secret_key });
    assert.equal(response.status, 503);
    assert.equal(response.body.error.payment.status, 'requires_confirmation');
  });

  test('metrics name the partner called and count refusals apart from calls; the report counts confirmations refused before sending', async () => {
    const before = await metricValues(keel);
    const merchant = await keel.createMerchant({ name: 'Counted', country: 'US', partners: [{ gateway: 'toss' }, { gateway: 'stripe' }] });
    for (let index = 0; index < 3; index += 1) assert.equal((await keel.request('POST', '/v1/payments', { body: paymentBody(), secretKey: merchant.secret_key })).status, 200);
    const tossOnly = await keel.createMerchant({ name: 'Refused Only', country: 'US', partners: [{ gateway: 'toss' }] });
    assert.equal((await keel.request('POST', '/v1/payments', { body: paymentBody(), secretKey: tossOnly.secret_key })).status, 503);
    const after = await metricValues(keel);
    const delta = (name: string) => (after.get(name) ?? 0) - (before.get(name) ?? 0);
    // Toss's breaker is open by now: its four confirmations were refused, never sent, and are not timed as calls.
    assert.equal(delta('keel_payment_outcomes_total{outcome="unreachable",gateway="toss",country="US"}'), 4);
    assert.equal(delta('keel_payment_outcomes_total{outcome="ok",gateway="stripe",country="US"}'), 3);
    assert.equal(delta('keel_partner_calls_refused_total{gateway="toss",country="US",operation="authorize",reason="breaker_open"}'), 4, 'one per confirmation: a refusal is not retried');
    assert.equal(delta('keel_partner_call_duration_seconds_count{gateway="toss",country="US",operation="authorize",outcome="unreachable"}'), 0);
    assert.equal(delta('keel_partner_call_duration_seconds_count{gateway="stripe",country="US",operation="authorize",outcome="ok"}'), 3);
    // The read model counts the refused confirmation against the approval rate, under the partner refused.
    while ((await keel.keel.jobs.relay()) > 0);
    const report = await keel.request('GET', '/v1/reports/payments?group_by=gateway', { secretKey: tossOnly.secret_key });
    const toss = report.body.data.find((row: { gateway: string | null }) => row.gateway === 'toss');
    assert.deepEqual([toss?.not_sent, toss?.authorized, toss?.approval_rate], [1, 0, 0]);
    const counted = await keel.request('GET', '/v1/reports/payments?group_by=gateway', { secretKey: merchant.secret_key });
    const stripe = counted.body.data.find((row: { gateway: string | null }) => row.gateway === 'stripe');
    assert.deepEqual([stripe?.authorized, stripe?.not_sent, stripe?.approval_rate], [3, 0, 1]);
  });
});

/** The instance's metrics, by series (`name{labels}`). */
async function metricValues(keel: TestKeel): Promise<Map<string, number>> {
  const text = (await keel.request('GET', '/metrics', { secretKey: null })).body as string;
  const values = new Map<string, number>();
  for (const line of text.split('\n')) {
    const match = /^([a-z_]+(?:\{[^}]*\})?) (\S+)$/.exec(line);
    if (match !== null) values.set(match[1] ?? '', Number(match[2]));
  }
  return values;
}

describe('a stored card when its partner cannot be reached', () => {
  test('is never sent to another partner: 503 gateway_unavailable, retryable, and nothing at the next partner', async () => {
    const tokenSim = await startSimulator({ port: 0 });
    const keel = await startTestKeel({ config: { partnerUrls: { toss: tokenSim.url, stripe: stripeSim.url } } });
    try {
      const merchant = await keel.createMerchant({ name: 'Two Partners', partners: [{ gateway: 'toss' }, { gateway: 'stripe' }] });
      const customer = await keel.request('POST', '/v1/brandpay/customers', { body: { customer_key: uniqueKey('shopper') }, secretKey: merchant.secret_key });
      const method = await keel.request('POST', `/v1/brandpay/customers/${customer.body.id}/payment_methods`, { body: testCard(), secretKey: merchant.secret_key });
      assert.equal(method.status, 201, 'the card is exchanged for a Toss billing key');
      await tokenSim.close();
      const body = { ...paymentBody(), customer: customer.body.id, payment_method: method.body.id };
      const response = await keel.request('POST', '/v1/payments', { body, secretKey: merchant.secret_key });
      assert.equal(response.status, 503, JSON.stringify(response.body));
      assert.equal(response.body.error.code, 'gateway_unavailable');
      assert.equal(response.body.error.payment.status, 'requires_confirmation');
      assert.deepEqual((await attemptsOf(keel, body.order_id)).map((attempt) => [attempt.gateway, attempt.status]), [['toss', 'not_sent']]);
      const stripeCharges = (await (await fetch(`${stripeSim.url}/__sim/charges?order_id=${body.order_id}`)).json()) as { data: unknown[] };
      assert.deepEqual(stripeCharges.data, [], 'Toss\'s billing key never went to Stripe');
    } finally {
      await keel.close();
    }
  });
});

describe('the first partner answers with an unknown outcome', () => {
  let keel: TestKeel;
  before(async () => {
    keel = await startTestKeel({ config: { partnerUrls: { toss: tossSim.url, stripe: stripeSim.url } } });
  });
  after(async () => {
    await keel.close();
  });

  test('is never tried elsewhere: 202 processing, one attempt', async () => {
    await fetch(`${tossSim.url}/__sim/faults`, { method: 'POST', body: JSON.stringify({ mode: 'errors', rate: 1, duration_s: 30 }) });
    try {
      const merchant = await keel.createMerchant({ name: 'Two Partners', country: 'KR', partners: [{ gateway: 'toss' }, { gateway: 'stripe' }] });
      const body = paymentBody();
      const response = await keel.request('POST', '/v1/payments', { body, secretKey: merchant.secret_key });
      assert.equal(response.status, 202);
      const attempts = await attemptsOf(keel, body.order_id);
      assert.deepEqual(attempts.map((attempt) => [attempt.gateway, attempt.status]), [['toss', 'unknown']]);
      const stripeCharges = (await (await fetch(`${stripeSim.url}/__sim/charges?order_id=${body.order_id}`)).json()) as { data: unknown[] };
      assert.equal(stripeCharges.data.length, 0);
    } finally {
      await fetch(`${tossSim.url}/__sim/faults`, { method: 'DELETE' });
    }
  });
});
