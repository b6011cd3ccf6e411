// Proves what the shop sees and what the partner holds when the partner misbehaves as real ones do: it applies
// each request on arrival and answers after its latency (so a timed-out charge, capture or refund stays done),
// and its inquiries lag 30 s behind the truth. A lagging "not found" never moves an unknown payment to a state
// that allows sending again; an unknown attempt is settled by the same request sent again under its own partner
// key (the partner replays its first answer, or does the work once), or by an inquiry believed only once the
// consistency window has passed (`passTime` lets it pass instead of waiting). Every status change reaches the
// shop as an event. Both partner dialects are exercised; every order ends with at most one charge.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { breakerDefaults } from '../resilience/breaker.js';
import { publicToUuid } from '../storage/ids.js';
import { resendRoundsMax } from './operations/steps.js';
import { startTestKeel, testCard, testConsistencyWindowMs, uniqueKey, type TestKeel } from '../testing/harness.js';
import { startWebhookReceiver } from '../testing/webhook-receiver.js';

const inquiryLagMs = 30_000;

const body = (card: string, extra: Record<string, unknown> = {}) => ({
  amount: 30000,
  currency: 'KRW',
  order_id: uniqueKey('ord'),
  payment_method: testCard(card),
  confirm: true,
  ...extra,
});

/** Makes every unknown attempt due and runs the janitor once; the backoff itself is proven in steps' tests. */
async function janitorNow(keel: TestKeel): Promise<number> {
  await keel.keel.database.db.updateTable('payment_attempts').set({ next_inquiry_at: new Date() }).where('status', '=', 'unknown').execute();
  return (await keel.keel.jobs.janitor()).claimed;
}

async function eventsOf(keel: TestKeel, paymentId: string): Promise<string[]> {
  const rows = await keel.keel.database.db.selectFrom('outbox').select('type').where('aggregate_id', '=', publicToUuid('payment', paymentId) ?? '').orderBy('id').execute();
  return rows.map((row) => row.type);
}

const sim = (keel: TestKeel, method: 'POST' | 'DELETE', body?: unknown) =>
  fetch(`${keel.keel.gatewayUrl}/__sim/faults`, { method, ...(body === undefined ? {} : { body: JSON.stringify(body) }) });

for (const gateway of ['toss', 'stripe'] as const) {
  describe(`${gateway}: partner failures, with inquiries lagging ${inquiryLagMs / 1000} s`, () => {
    let keel: TestKeel;
    before(async () => {
      // Every failure here counts against the breaker; its own tests are elsewhere, so it stays out of the way.
      keel = await startTestKeel({ gateway, config: { breaker: { ...breakerDefaults, minimumCalls: 1_000 } } });
      await keel.setInquiryLag(inquiryLagMs);
    });
    after(async () => {
      await keel.close();
    });

    test('an answer lost after the charge: a lagging "not found" moves nothing, and the same card asks again under the same key', async () => {
      const request = body('4000000000000259');
      const key = uniqueKey();
      const response = await keel.request('POST', '/v1/payments', { body: request, idempotencyKey: key });
      assert.equal(response.status, 202, JSON.stringify(response.body));
      assert.equal(response.body.status, 'processing');
      const retry = await keel.request('POST', '/v1/payments', { body: request, idempotencyKey: key });
      assert.equal(retry.status, 202);
      assert.equal(retry.headers['idempotent-replayed'], 'true');
      assert.equal(await janitorNow(keel), 1, 'the janitor asked the partner');
      assert.equal((await keel.request('GET', `/v1/payments/${response.body.id}`)).body.status, 'processing', 'the partner\'s "not found" may be lag');
      const otherCard = await keel.request('POST', `/v1/payments/${response.body.id}/confirm`, { body: { payment_method: testCard() } });
      assert.equal(otherCard.status, 409, 'another card is never charged while the first charge may stand');
      const sameCard = await keel.request('POST', `/v1/payments/${response.body.id}/confirm`, { body: { payment_method: testCard('4000000000000259') } });
      assert.equal(sameCard.status, 200, JSON.stringify(sameCard.body));
      assert.equal(sameCard.body.status, 'succeeded');
      const charges = await keel.simCharges(request.order_id);
      assert.deepEqual(charges.map((charge) => charge.captured_amount), [30000], 'one charge, of Keel\'s amount');
      assert.deepEqual(await eventsOf(keel, response.body.id), ['payment.created', 'payment.processing', 'payment.succeeded']);
    });

    test('an answer lost after the charge, no card at hand: the janitor waits out the consistency window, then finds the charge', async () => {
      const request = body('4000000000000259');
      const response = await keel.request('POST', '/v1/payments', { body: request });
      assert.equal(response.status, 202);
      await janitorNow(keel);
      assert.equal((await keel.request('GET', `/v1/payments/${response.body.id}`)).body.status, 'processing');
      await keel.passTime(testConsistencyWindowMs);
      await janitorNow(keel);
      const settled = await keel.request('GET', `/v1/payments/${response.body.id}`);
      assert.equal(settled.body.status, 'succeeded');
      assert.equal(settled.body.amount_received, 30000);
      assert.equal((await keel.simCharges(request.order_id)).length, 1);
    });

    test('a 500 that charged nothing: processing until the window has passed, then requires_confirmation, told by event and webhook', async () => {
      const hooks = await startWebhookReceiver();
      try {
        const endpoint = await keel.request('POST', '/v1/webhook_endpoints', { body: { url: hooks.url, events: ['payment.requires_confirmation'] } });
        assert.equal(endpoint.status, 200);
        const request = body('4000000000000119');
        const response = await keel.request('POST', '/v1/payments', { body: request });
        assert.equal(response.status, 202);
        await janitorNow(keel);
        assert.equal((await keel.request('GET', `/v1/payments/${response.body.id}`)).body.status, 'processing', 'not found may be lag');
        await keel.passTime(testConsistencyWindowMs);
        await janitorNow(keel);
        const settled = await keel.request('GET', `/v1/payments/${response.body.id}`);
        assert.equal(settled.body.status, 'requires_confirmation');
        assert.equal(settled.body.failure_code, 'processing_error');
        assert.deepEqual(await eventsOf(keel, response.body.id), ['payment.created', 'payment.processing', 'payment.requires_confirmation']);
        await keel.keel.jobs.relay();
        await keel.keel.jobs.webhooks();
        const delivered = hooks.received.map((delivery) => JSON.parse(delivery.body) as { type: string; data: { object: { id: string } } });
        assert.deepEqual(delivered.map((event) => [event.type, event.data.object.id]), [['payment.requires_confirmation', response.body.id]]);
        assert.equal((await keel.simCharges(request.order_id)).filter((charge) => charge.status !== 'declined').length, 0);
        const confirmed = await keel.request('POST', `/v1/payments/${response.body.id}/confirm`, { body: { payment_method: testCard() } });
        assert.equal(confirmed.status, 200);
        assert.equal((await keel.simCharges(request.order_id)).length, 1);
      } finally {
        await hooks.close();
      }
    });

    test('an outage answering 503 after the request was sent: processing, and no charge, until the window confirms it', async () => {
      await sim(keel, 'POST', { mode: 'outage', duration_s: 30 });
      try {
        const request = body('4242424242424242');
        const response = await keel.request('POST', '/v1/payments', { body: request });
        assert.equal(response.status, 202, 'a 5xx after sending is an unknown outcome');
        await sim(keel, 'DELETE');
        await janitorNow(keel);
        assert.equal((await keel.request('GET', `/v1/payments/${response.body.id}`)).body.status, 'processing');
        await keel.passTime(testConsistencyWindowMs);
        await janitorNow(keel);
        assert.equal((await keel.request('GET', `/v1/payments/${response.body.id}`)).body.status, 'requires_confirmation');
        assert.equal((await keel.simCharges(request.order_id)).length, 0);
      } finally {
        await sim(keel, 'DELETE');
      }
    });

    test('a stored card whose answer is lost: the janitor sends the same request under the same key, and it succeeds at once, once', async () => {
      const customer = await keel.request('POST', '/v1/brandpay/customers', { body: { customer_key: uniqueKey('shopper') } });
      const method = await keel.request('POST', `/v1/brandpay/customers/${customer.body.id}/payment_methods`, { body: testCard('4000000000000259') });
      assert.equal(method.status, 201, JSON.stringify(method.body));
      const request = { amount: 30000, currency: 'KRW', order_id: uniqueKey('ord'), customer: customer.body.id, payment_method: method.body.id, confirm: true };
      const response = await keel.request('POST', '/v1/payments', { body: request });
      assert.equal(response.status, 202);
      await janitorNow(keel);
      assert.equal((await keel.request('GET', `/v1/payments/${response.body.id}`)).body.status, 'succeeded', 'the partner\'s replay is its word, lag or not');
      assert.equal((await keel.simCharges(request.order_id)).length, 1);
    });

    test('a capture whose answer is lost is asked about again under its own key, and captured once', async () => {
      const request = body('4242424242424242', { capture_method: 'manual' });
      const authorized = await keel.request('POST', '/v1/payments', { body: request });
      assert.equal(authorized.status, 200);
      // Past the 600 ms read timeout: the partner captures on arrival, and its answer is lost.
      await sim(keel, 'POST', { mode: 'latency', latency_ms: 2500, duration_s: 30 });
      const capture = await keel.request('POST', `/v1/payments/${authorized.body.id}/capture`, { body: {} });
      await sim(keel, 'DELETE');
      assert.equal(capture.status, 202, JSON.stringify(capture.body));
      await janitorNow(keel);
      const settled = await keel.request('GET', `/v1/payments/${authorized.body.id}`);
      assert.equal(settled.body.status, 'succeeded');
      const charges = await keel.simCharges(request.order_id);
      assert.deepEqual(charges.map((charge) => charge.captured_amount), [30000]);
    });

    if (gateway === 'toss') {
      test('a capture the partner keeps answering 500 without capturing: resent a bounded number of times, then inquired, and past the window capturable again', async () => {
        // Toss charges a billing key at capture: with the 500 card the billing key is issued, and every charge fails.
        const request = body('4000000000000119', { capture_method: 'manual' });
        const authorized = await keel.request('POST', '/v1/payments', { body: request });
        assert.equal(authorized.body.status, 'requires_capture');
        assert.equal((await keel.request('POST', `/v1/payments/${authorized.body.id}/capture`, { body: {} })).status, 202);
        for (let round = 0; round < resendRoundsMax; round += 1) await janitorNow(keel);
        assert.equal((await keel.request('GET', `/v1/payments/${authorized.body.id}`)).body.status, 'processing', 'a 500 proves nothing');
        await keel.passTime(testConsistencyWindowMs);
        await janitorNow(keel);
        assert.equal((await keel.request('GET', `/v1/payments/${authorized.body.id}`)).body.status, 'requires_capture');
        assert.deepEqual(await keel.simCharges(request.order_id), []);
        assert.deepEqual((await eventsOf(keel, authorized.body.id)).slice(-2), ['payment.processing', 'payment.requires_capture']);
      });
    }

    test('refunds are proven one by one: one whose answer was lost and one that never happened each settle by their own request', async () => {
      const request = body('4242424242424242');
      const paid = await keel.request('POST', '/v1/payments', { body: request });
      assert.equal(paid.body.status, 'succeeded');
      await sim(keel, 'POST', { mode: 'errors', rate: 1, duration_s: 30 });
      const neverDone = await keel.request('POST', '/v1/refunds', { body: { payment: paid.body.id, amount: 10000 } });
      await sim(keel, 'DELETE');
      await sim(keel, 'POST', { mode: 'latency', latency_ms: 2500, duration_s: 30 });
      const answerLost = await keel.request('POST', '/v1/refunds', { body: { payment: paid.body.id, amount: 10000 } });
      await sim(keel, 'DELETE');
      assert.deepEqual([neverDone.status, answerLost.status], [202, 202]);
      assert.equal((await keel.simCharges(request.order_id))[0]?.refunded_amount, 10000, 'the partner holds only the second refund');
      await janitorNow(keel);
      for (const refund of [answerLost, neverDone]) {
        assert.equal((await keel.request('GET', `/v1/refunds/${refund.body.id}`)).body.status, 'succeeded', `refund ${refund.body.id}`);
      }
      assert.equal((await keel.request('GET', `/v1/payments/${paid.body.id}`)).body.amount_refunded, 20000);
      assert.equal((await keel.simCharges(request.order_id))[0]?.refunded_amount, 20000, 'each refund moved its own money, once');
    });
  });
}

describe('stripe: 3-D Secure', () => {
  let keel: TestKeel;
  before(async () => {
    keel = await startTestKeel({ gateway: 'stripe' });
  });
  after(async () => {
    await keel.close();
  });

  test('a card that needs authentication is declined with card_authentication_required, and the intent is canceled: no hold', async () => {
    const request = body('4000002760003184', { currency: 'USD', amount: 2500 });
    const response = await keel.request('POST', '/v1/payments', { body: request });
    assert.equal(response.status, 402, JSON.stringify(response.body));
    assert.equal(response.body.error.type, 'card_error');
    assert.equal(response.body.error.code, 'card_authentication_required');
    assert.equal(response.body.error.payment.status, 'failed');
    assert.deepEqual((await keel.simCharges(request.order_id)).map((charge) => [charge.status, charge.captured_amount]), [['canceled', 0]]);
  });
});

describe('an unreachable partner', () => {
  let keel: TestKeel;
  before(async () => {
    // Nothing listens on port 9 of loopback: every connection is refused before a byte is sent.
    keel = await startTestKeel({ config: { gatewayUrl: 'http://127.0.0.1:9' } });
  });
  after(async () => {
    await keel.close();
  });

  test('answers 503 gateway_unavailable with Retry-After, leaves the payment confirmable, and the same key may retry', async () => {
    const request = body('4242424242424242');
    const key = uniqueKey();
    const response = await keel.request('POST', '/v1/payments', { body: request, idempotencyKey: key });
    assert.equal(response.status, 503);
    assert.equal(response.body.error.type, 'gateway_error');
    assert.equal(response.body.error.code, 'gateway_unavailable');
    assert.equal(response.headers['retry-after'], '1');
    assert.equal(response.body.error.payment.status, 'requires_confirmation');
    const retry = await keel.request('POST', '/v1/payments', { body: request, idempotencyKey: key });
    assert.equal(retry.status, 503, 'not a replay: the key stayed open and the retry tried the partner again');
    assert.equal(retry.headers['idempotent-replayed'], undefined);
    assert.equal(retry.body.error.payment.id, response.body.error.payment.id);
    const attempts = await keel.keel.database.db.selectFrom('payment_attempts').select('status').execute();
    assert.deepEqual(attempts.map((attempt) => attempt.status), ['not_sent', 'not_sent']);
    // Each request tried three times (one call and two retries with backoff) before answering.
    keel.keel.logger.flush();
    const calls = keel.logs
      .map((line) => JSON.parse(line) as { message: string; request_id?: string; outcome?: string })
      .filter((line) => line.message === 'partner call' && line.request_id === response.headers['request-id']);
    assert.deepEqual(calls.map((call) => call.outcome), ['unreachable', 'unreachable', 'unreachable']);
  });

  test('retries never wait past the request deadline', async () => {
    const tight = await startTestKeel({ config: { gatewayUrl: 'http://127.0.0.1:9', requestDeadlineMs: 1 } });
    try {
      const response = await tight.request('POST', '/v1/payments', { body: body('4242424242424242') });
      assert.equal(response.status, 503);
      tight.keel.logger.flush();
      const calls = tight.logs.filter((line) => line.includes('"partner call"'));
      assert.equal(calls.length, 1, 'no retry fits in a 1 ms deadline');
    } finally {
      await tight.close();
    }
  });
});
