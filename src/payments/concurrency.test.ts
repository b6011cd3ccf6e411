// Proves money invariants under real concurrency: 20 simultaneous partial refunds on one payment never refund
// more than was received (at Keel and at the partner), and 2 simultaneous captures capture once. Run against
// PostgreSQL in CI, where the requests truly overlap on separate connections.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { startTestKeel, testCard, uniqueKey, type TestKeel } from '../testing/harness.js';

let keel: TestKeel;
before(async () => {
  keel = await startTestKeel();
});
after(async () => {
  await keel.close();
});

test('20 simultaneous partial refunds never exceed the amount received', async () => {
  const paid = await keel.request('POST', '/v1/payments', {
    body: { amount: 10000, currency: 'KRW', order_id: uniqueKey('ord'), payment_method: testCard(), confirm: true },
  });
  assert.equal(paid.status, 200);
  // 20 refunds of 700 ask for 14,000 of a 10,000 payment: at most 14 can succeed.
  const responses = await Promise.all(
    Array.from({ length: 20 }, () => keel.request('POST', '/v1/refunds', { body: { payment: paid.body.id, amount: 700 } })),
  );
  const succeeded = responses.filter((response) => response.status === 200 && response.body.status === 'succeeded');
  const refused = responses.filter((response) => response.status === 409);
  assert.equal(succeeded.length + refused.length, 20, `statuses ${responses.map((response) => response.status).join(',')}`);
  assert.equal(succeeded.length, 14);
  for (const response of refused) assert.equal(response.body.error.code, 'refund_exceeds_payment');
  const payment = await keel.request('GET', `/v1/payments/${paid.body.id}`);
  assert.equal(payment.body.amount_refunded, 9800);
  const [charge] = await keel.simCharges(paid.body.order_id);
  assert.equal(charge?.refunded_amount, 9800);
});

test('2 simultaneous captures capture once', async () => {
  const authorized = await keel.request('POST', '/v1/payments', {
    body: { amount: 50000, currency: 'KRW', order_id: uniqueKey('ord'), payment_method: testCard(), confirm: true, capture_method: 'manual' },
  });
  assert.equal(authorized.body.status, 'requires_capture');
  const [first, second] = await Promise.all([
    keel.request('POST', `/v1/payments/${authorized.body.id}/capture`, { body: {} }),
    keel.request('POST', `/v1/payments/${authorized.body.id}/capture`, { body: { amount: 50000 } }),
  ]);
  const statuses = [first?.status, second?.status].sort();
  assert.deepEqual(statuses, [200, 409]);
  const charges = await keel.simCharges(authorized.body.order_id);
  assert.equal(charges.length, 1);
  assert.equal(charges[0]?.captured_amount, 50000);
  const attempts = await keel.keel.database.db.selectFrom('payment_attempts').select(['operation', 'status']).where('operation', '=', 'capture').execute();
  assert.equal(attempts.filter((attempt) => attempt.status === 'succeeded').length, 1);
});
