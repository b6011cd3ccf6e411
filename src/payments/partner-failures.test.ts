// Proves what the shop sees and what the partner holds when the partner misbehaves: an answer lost after the
// charge (the 4000000000000259 card) leaves the payment `processing` with one charge, and the janitor finishes
// it by inquiry without charging again; a 500 that charged nothing is resolved back to confirmable; a partner
// that cannot be reached costs nothing and the same key may retry. Both partner dialects are exercised.
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import { startTestKeel, testCard, uniqueKey, type TestKeel } from '../testing/harness.js';

const body = (card: string, extra: Record<string, unknown> = {}) => ({
  amount: 30000,
  currency: 'KRW',
  order_id: uniqueKey('ord'),
  payment_method: testCard(card),
  confirm: true,
  ...extra,
});

async function settleByJanitor(keel: TestKeel): Promise<void> {
  // Unknown attempts are first inquired one second after the timeout; the gateway answers the ambiguous card late.
  for (let round = 0; round < 10; round += 1) {
    await sleep(700);
    await keel.keel.jobs.janitor();
    const stuck = await keel.keel.database.db.selectFrom('payment_attempts').select('id').where('status', '=', 'unknown').execute();
    if (stuck.length === 0) return;
  }
}

for (const gateway of ['toss', 'stripe'] as const) {
  describe(`${gateway}: partner failures`, () => {
    let keel: TestKeel;
    before(async () => {
      keel = await startTestKeel({ gateway });
    });
    after(async () => {
      await keel.close();
    });

    test('the ambiguous card: 202 processing, one charge, succeeded after the janitor, never charged twice', async () => {
      const request = body('4000000000000259');
      const key = uniqueKey();
      const response = await keel.request('POST', '/v1/payments', { body: request, idempotencyKey: key });
      assert.equal(response.status, 202, JSON.stringify(response.body));
      assert.equal(response.body.status, 'processing');
      const retry = await keel.request('POST', '/v1/payments', { body: request, idempotencyKey: key });
      assert.equal(retry.status, 202);
      assert.equal(retry.headers['idempotent-replayed'], 'true');
      const confirmAgain = await keel.request('POST', `/v1/payments/${response.body.id}/confirm`, { body: { payment_method: testCard() } });
      assert.equal(confirmAgain.status, 409, 'a processing payment is never sent to the partner again');
      await settleByJanitor(keel);
      const settled = await keel.request('GET', `/v1/payments/${response.body.id}`);
      assert.equal(settled.body.status, 'succeeded');
      assert.equal(settled.body.amount_received, 30000);
      const charges = await keel.simCharges(request.order_id);
      assert.equal(charges.length, 1);
      assert.equal(charges[0]?.captured_amount, 30000);
    });

    test('a 500 that charged nothing: 202, then confirmable again after the janitor, with no charge', async () => {
      const request = body('4000000000000119');
      const response = await keel.request('POST', '/v1/payments', { body: request });
      assert.equal(response.status, 202);
      await settleByJanitor(keel);
      const settled = await keel.request('GET', `/v1/payments/${response.body.id}`);
      assert.equal(settled.body.status, 'requires_confirmation');
      assert.equal(settled.body.failure_code, 'processing_error');
      assert.equal((await keel.simCharges(request.order_id)).filter((charge) => charge.status !== 'declined').length, 0);
      const confirmed = await keel.request('POST', `/v1/payments/${response.body.id}/confirm`, { body: { payment_method: testCard() } });
      assert.equal(confirmed.status, 200);
      assert.equal((await keel.simCharges(request.order_id)).length, 1);
    });

    test('a partner outage before processing answers 503 or 202 and never charges', async () => {
      await fetch(`${keel.keel.gatewayUrl}/__sim/faults`, { method: 'POST', body: JSON.stringify({ mode: 'outage', duration_s: 30 }) });
      try {
        const request = body('4242424242424242');
        const response = await keel.request('POST', '/v1/payments', { body: request });
        assert.equal(response.status, 202, 'a 5xx after sending is an unknown outcome');
        await fetch(`${keel.keel.gatewayUrl}/__sim/faults`, { method: 'DELETE' });
        await settleByJanitor(keel);
        const settled = await keel.request('GET', `/v1/payments/${response.body.id}`);
        assert.equal(settled.body.status, 'requires_confirmation');
        assert.equal((await keel.simCharges(request.order_id)).length, 0);
      } finally {
        await fetch(`${keel.keel.gatewayUrl}/__sim/faults`, { method: 'DELETE' });
      }
    });

    test('a capture whose answer is lost is settled by the janitor, captured once', async () => {
      const request = body('4242424242424242', { capture_method: 'manual' });
      const authorized = await keel.request('POST', '/v1/payments', { body: request });
      assert.equal(authorized.status, 200);
      await fetch(`${keel.keel.gatewayUrl}/__sim/faults`, { method: 'POST', body: JSON.stringify({ mode: 'latency', latency_ms: 2500, duration_s: 30 }) });
      const capture = await keel.request('POST', `/v1/payments/${authorized.body.id}/capture`, { body: {} });
      await fetch(`${keel.keel.gatewayUrl}/__sim/faults`, { method: 'DELETE' });
      // The added latency exceeds the 600 ms read timeout (undici checks timeouts on a coarse tick), and the gateway still processes the capture.
      assert.equal(capture.status, 202, JSON.stringify(capture.body));
      await sleep(2_000);
      await settleByJanitor(keel);
      const settled = await keel.request('GET', `/v1/payments/${authorized.body.id}`);
      assert.equal(settled.body.status, 'succeeded');
      const charges = await keel.simCharges(request.order_id);
      assert.equal(charges.length, 1);
      assert.equal(charges[0]?.captured_amount, 30000);
    });
  });
}

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
