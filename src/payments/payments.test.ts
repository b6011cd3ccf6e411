// Proves the payment lifecycle through the public API: create with confirm (approve, decline), manual capture
// (full, partial, once), cancel, refunds, retrieval, lists with cursors and filters, and the state machine's
// refusals, each checked against the benchmark gateway's own record of charges.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { startTestKeel, testCard, uniqueKey, type TestKeel } from '../testing/harness.js';

let keel: TestKeel;
before(async () => {
  keel = await startTestKeel();
});
after(async () => {
  await keel.close();
});

const newPayment = (overrides: Record<string, unknown> = {}) => ({
  amount: 15000,
  currency: 'KRW',
  order_id: uniqueKey('ord'),
  country: 'KR',
  payment_method: testCard(),
  confirm: true,
  ...overrides,
});

describe('confirm', () => {
  test('an approved card ends succeeded with one capture at the partner', async () => {
    const body = newPayment();
    const response = await keel.request('POST', '/v1/payments', { body });
    assert.equal(response.status, 200, JSON.stringify(response.body));
    assert.equal(response.body.object, 'payment');
    assert.match(response.body.id, /^pay_[0-9A-Z]{26}$/);
    assert.equal(response.body.status, 'succeeded');
    assert.equal(response.body.amount_received, 15000);
    assert.deepEqual(response.body.payment_method.card, { brand: 'visa', last4: '4242', exp_month: 12, exp_year: 2034 });
    const charges = await keel.simCharges(body.order_id);
    assert.equal(charges.length, 1);
    assert.equal(charges[0]?.captured_amount, 15000);
  });

  test('a declined card ends failed with a 402 card_error naming the decline', async () => {
    const response = await keel.request('POST', '/v1/payments', { body: newPayment({ payment_method: testCard('4000000000009995') }) });
    assert.equal(response.status, 402);
    assert.equal(response.body.error.type, 'card_error');
    assert.equal(response.body.error.code, 'insufficient_funds');
    assert.equal(response.body.error.payment.status, 'failed');
    assert.equal(response.body.error.payment.failure_code, 'insufficient_funds');
  });

  test('create without confirm, then confirm later', async () => {
    const created = await keel.request('POST', '/v1/payments', { body: newPayment({ confirm: false, payment_method: undefined }) });
    assert.equal(created.status, 200);
    assert.equal(created.body.status, 'requires_payment_method');
    const noMethod = await keel.request('POST', `/v1/payments/${created.body.id}/confirm`, { body: {} });
    assert.equal(noMethod.status, 400);
    assert.equal(noMethod.body.error.code, 'payment_method_required');
    const confirmed = await keel.request('POST', `/v1/payments/${created.body.id}/confirm`, { body: { payment_method: testCard() } });
    assert.equal(confirmed.status, 200);
    assert.equal(confirmed.body.status, 'succeeded');
    const again = await keel.request('POST', `/v1/payments/${created.body.id}/confirm`, { body: { payment_method: testCard() } });
    assert.equal(again.status, 409);
    assert.equal(again.body.error.code, 'payment_unexpected_state');
    assert.match(again.body.error.message, /succeeded/);
  });
});

describe('manual capture', () => {
  test('authorize, partial capture once, then a second capture is refused', async () => {
    const created = await keel.request('POST', '/v1/payments', { body: newPayment({ capture_method: 'manual' }) });
    assert.equal(created.status, 200);
    assert.equal(created.body.status, 'requires_capture');
    assert.equal(created.body.amount_capturable, 15000);
    const tooMuch = await keel.request('POST', `/v1/payments/${created.body.id}/capture`, { body: { amount: 20000 } });
    assert.equal(tooMuch.status, 400);
    assert.equal(tooMuch.body.error.param, 'amount');
    const captured = await keel.request('POST', `/v1/payments/${created.body.id}/capture`, { body: { amount: 9000 } });
    assert.equal(captured.status, 200, JSON.stringify(captured.body));
    assert.equal(captured.body.status, 'succeeded');
    assert.equal(captured.body.amount_received, 9000);
    assert.equal(captured.body.amount_capturable, 0);
    const twice = await keel.request('POST', `/v1/payments/${created.body.id}/capture`, { body: {} });
    assert.equal(twice.status, 409);
    const charges = await keel.simCharges(created.body.order_id);
    assert.deepEqual(charges.map((charge) => charge.captured_amount), [9000]);
  });

  test('cancel before capture; cancel after capture is refused', async () => {
    const created = await keel.request('POST', '/v1/payments', { body: newPayment({ capture_method: 'manual' }) });
    const canceled = await keel.request('POST', `/v1/payments/${created.body.id}/cancel`, { body: { reason: 'out of stock' } });
    assert.equal(canceled.status, 200);
    assert.equal(canceled.body.status, 'canceled');
    const capture = await keel.request('POST', `/v1/payments/${created.body.id}/capture`, { body: {} });
    assert.equal(capture.status, 409);
    assert.match(capture.body.error.message, /canceled/);
    const paid = await keel.request('POST', '/v1/payments', { body: newPayment() });
    const late = await keel.request('POST', `/v1/payments/${paid.body.id}/cancel`, { body: {} });
    assert.equal(late.status, 409);
    assert.match(late.body.error.message, /succeeded/);
  });
});

describe('refunds', () => {
  test('partial and full refunds up to the amount received, never beyond', async () => {
    const paid = await keel.request('POST', '/v1/payments', { body: newPayment() });
    const first = await keel.request('POST', '/v1/refunds', { body: { payment: paid.body.id, amount: 5000 } });
    assert.equal(first.status, 200, JSON.stringify(first.body));
    assert.equal(first.body.object, 'refund');
    assert.equal(first.body.status, 'succeeded');
    const tooMuch = await keel.request('POST', '/v1/refunds', { body: { payment: paid.body.id, amount: 10001 } });
    assert.equal(tooMuch.status, 409);
    assert.equal(tooMuch.body.error.code, 'refund_exceeds_payment');
    const rest = await keel.request('POST', '/v1/refunds', { body: { payment: paid.body.id } });
    assert.equal(rest.status, 200);
    assert.equal(rest.body.amount, 10000);
    const fetched = await keel.request('GET', `/v1/refunds/${first.body.id}`);
    assert.equal(fetched.body.amount, 5000);
    const payment = await keel.request('GET', `/v1/payments/${paid.body.id}`);
    assert.equal(payment.body.amount_refunded, 15000);
    const [charge] = await keel.simCharges(paid.body.order_id);
    assert.equal(charge?.refunded_amount, 15000);
  });

  test('a payment that was never charged cannot be refunded', async () => {
    const created = await keel.request('POST', '/v1/payments', { body: newPayment({ confirm: false }) });
    const refund = await keel.request('POST', '/v1/refunds', { body: { payment: created.body.id } });
    assert.equal(refund.status, 409);
    assert.equal(refund.body.error.code, 'payment_unexpected_state');
  });
});

describe('reads', () => {
  test('list pages through payments newest first and filters by status and order_id', async () => {
    const orderIds: string[] = [];
    for (let index = 0; index < 5; index += 1) {
      const body = newPayment({ confirm: false });
      orderIds.push(body.order_id);
      await keel.request('POST', '/v1/payments', { body });
    }
    const firstPage = await keel.request('GET', '/v1/payments?limit=2&status=requires_confirmation');
    assert.equal(firstPage.status, 200);
    assert.equal(firstPage.body.object, 'list');
    assert.equal(firstPage.body.data.length, 2);
    assert.equal(firstPage.body.has_more, true);
    assert.equal(firstPage.body.data[0].order_id, orderIds[4]);
    const secondPage = await keel.request('GET', `/v1/payments?limit=2&status=requires_confirmation&starting_after=${firstPage.body.data[1].id}`);
    assert.equal(secondPage.body.data[0].order_id, orderIds[2]);
    const byOrder = await keel.request('GET', `/v1/payments?order_id=${orderIds[0]}`);
    assert.equal(byOrder.body.data.length, 1);
    assert.equal(byOrder.body.has_more, false);
  });

  test('another merchant\'s payment is a 404, for reads and writes alike', async () => {
    const paid = await keel.request('POST', '/v1/payments', { body: newPayment() });
    const other = await keel.createMerchant({ name: 'Other Shop' });
    for (const [method, path, body] of [
      ['GET', `/v1/payments/${paid.body.id}`, undefined],
      ['POST', `/v1/payments/${paid.body.id}/capture`, {}],
      ['POST', `/v1/payments/${paid.body.id}/cancel`, {}],
      ['POST', '/v1/refunds', { payment: paid.body.id }],
    ] as const) {
      const response = await keel.request(method, path, { body, secretKey: other.secret_key });
      assert.equal(response.status, 404, `${method} ${path}`);
      assert.equal(response.body.error.code, 'resource_missing');
    }
    const list = await keel.request('GET', '/v1/payments?limit=100', { secretKey: other.secret_key });
    assert.equal(list.body.data.length, 0);
  });
});

describe('currencies the merchant\'s partners can charge', () => {
  const rowCounts = async () => {
    const db = keel.keel.database.db;
    const count = async (table: 'payments' | 'payment_attempts' | 'idempotency_keys' | 'outbox') => Number((await db.selectFrom(table).select((eb) => eb.fn.countAll<string>().as('n')).executeTakeFirstOrThrow()).n);
    return { payments: await count('payments'), attempts: await count('payment_attempts'), keys: await count('idempotency_keys'), outbox: await count('outbox') };
  };

  test('a currency no partner of the merchant charges is refused before anything is written or sent', async () => {
    // The test merchant pays through Toss, which charges won only.
    const before = await rowCounts();
    const body = newPayment({ amount: 5000, currency: 'JPY' });
    const key = uniqueKey();
    const refused = await keel.request('POST', '/v1/payments', { body, idempotencyKey: key });
    assert.equal(refused.status, 400, JSON.stringify(refused.body));
    assert.equal(refused.body.error.code, 'currency_unsupported');
    assert.equal(refused.body.error.param, 'currency');
    assert.deepEqual(await rowCounts(), before, 'no payment, attempt, key or event');
    assert.deepEqual(await keel.simCharges(body.order_id), [], 'nothing reached the partner');
    const unconfirmed = await keel.request('POST', '/v1/payments', { body: { ...newPayment({ currency: 'JPY' }), payment_method: undefined, confirm: false } });
    assert.equal(unconfirmed.body.error?.code, 'currency_unsupported', 'a payment that could never be charged is not created either');
  });

  test('with a second partner that charges it, the payment goes there, in its own currency', async () => {
    const merchant = await keel.createMerchant({ name: 'Two Partners', partners: [{ gateway: 'toss' }, { gateway: 'stripe' }] });
    const body = newPayment({ amount: 5000, currency: 'JPY' });
    const paid = await keel.request('POST', '/v1/payments', { body, secretKey: merchant.secret_key });
    assert.equal(paid.status, 200, JSON.stringify(paid.body));
    assert.equal(paid.body.gateway, 'stripe');
    const charges = await keel.simCharges(body.order_id);
    assert.deepEqual(charges.map((charge) => [charge.amount, charge.currency]), [[5000, 'JPY']]);
  });
});
