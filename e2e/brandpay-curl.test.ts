// Makes the calls of docs/brandpay.md's curl-only walkthrough, in its order, over HTTP against a running Keel:
// the shop's server creates the customer and the checkout session; the shopper's side (the hosted page's own
// calls) reads the session, adds a card, sets the PIN and approves; the shop confirms with the amount it
// expects; a repeat purchase goes server to server with the stored method.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { startTestKeel, uniqueKey, type TestKeel } from '../src/testing/harness.js';

let keel: TestKeel;
let base = '';
before(async () => {
  keel = await startTestKeel({ config: { port: 0 } });
  base = await keel.keel.listen();
});
after(async () => {
  await keel.close();
});

async function call(path: string, body?: unknown, secret = true): Promise<{ status: number; body: any }> { // eslint-disable-line @typescript-eslint/no-explicit-any -- API JSON
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (secret) headers['authorization'] = `Bearer ${keel.merchant.secret_key}`;
  if (secret && body !== undefined) headers['idempotency-key'] = uniqueKey();
  const response = await fetch(`${base}${path}`, { method: body === undefined ? 'GET' : 'POST', headers, ...(body === undefined ? {} : { body: JSON.stringify(body) }) });
  return { status: response.status, body: await response.json() };
}

test('the curl walkthrough, step by step', async () => {
  const orderId = uniqueKey('ord');
  const customer = await call('/v1/brandpay/customers', { customer_key: uniqueKey('shopper') });
  assert.equal(customer.status, 201, JSON.stringify(customer.body));
  const session = await call('/v1/brandpay/checkout_sessions', { customer: customer.body.id, amount: 29000, currency: 'KRW', order_id: orderId, success_url: 'https://shop.example/success', fail_url: 'https://shop.example/fail' });
  assert.equal(session.status, 200, JSON.stringify(session.body));
  const page = `/pay/${session.body.id as string}`;
  const opened = await call(`${page}/session`, undefined, false);
  assert.deepEqual([opened.body.amount, opened.body.has_pin, opened.body.methods], [29000, false, []]);
  const card = await call(`${page}/payment_methods`, { type: 'card', card: { number: '4242424242424242', exp_month: 12, exp_year: 2034, cvc: '123' } }, false);
  assert.equal(card.status, 201, JSON.stringify(card.body));
  assert.equal((await call(`${page}/pin`, { pin: '135790' }, false)).status, 200);
  const approval = await call(`${page}/approve`, { payment_method: card.body.id, pin: '135790' }, false);
  assert.equal(approval.body.status, 'done', JSON.stringify(approval.body));
  const redirect = new URL(approval.body.redirect_url as string);
  assert.equal(`${redirect.origin}${redirect.pathname}`, 'https://shop.example/success');
  assert.deepEqual([redirect.searchParams.get('orderId'), redirect.searchParams.get('amount')], [orderId, '29000']);
  const confirmed = await call('/v1/brandpay/payments/confirm', { payment_key: redirect.searchParams.get('paymentKey'), order_id: orderId, amount: 29000 });
  assert.equal(confirmed.status, 200, JSON.stringify(confirmed.body));
  assert.equal(confirmed.body.status, 'succeeded');
  const repeat = await call('/v1/payments', { amount: 29000, currency: 'KRW', order_id: uniqueKey('ord'), customer: customer.body.id, payment_method: card.body.id, confirm: true });
  assert.equal(repeat.status, 200, JSON.stringify(repeat.body));
  assert.equal(repeat.body.status, 'succeeded');
});
