// Proves the Brand Pay checkout through its HTTP surfaces: the merchant creates a session, the hosted page's
// calls register a card and a PIN and approve with it, the success redirect carries Toss-style parameters, the
// merchant's confirm refuses a changed amount and captures the right one once; sessions are single use and
// expire; wrong PINs on the page lock the customer; the page and the SDK are served with no external assets.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { startTestKeel, uniqueKey, type TestKeel } from '../testing/harness.js';

let keel: TestKeel;
before(async () => {
  keel = await startTestKeel();
});
after(async () => {
  await keel.close();
});

const card = { type: 'card', card: { number: '4242424242424242', exp_month: 10, exp_year: 2033, cvc: '321' } };

async function newSession(amount = 45000) {
  const customer = (await keel.request('POST', '/v1/brandpay/customers', { body: { customer_key: uniqueKey('shopper') } })).body;
  const orderId = uniqueKey('ord');
  const session = await keel.request('POST', '/v1/brandpay/checkout_sessions', {
    body: { customer: customer.id, amount, currency: 'KRW', order_id: orderId, success_url: 'https://shop.example/success', fail_url: 'https://shop.example/fail' },
  });
  assert.equal(session.status, 200, JSON.stringify(session.body));
  return { customer, orderId, session: session.body };
}

const page = (sessionId: string, path: string, body?: unknown) =>
  keel.request(body === undefined ? 'GET' : 'POST', `/pay/${sessionId}${path}`, { body, secretKey: null, idempotencyKey: null });

describe('checkout', () => {
  test('register a card and a PIN on the page, approve, redirect, confirm on the server', async () => {
    const { orderId, session } = await newSession();
    assert.match(session.id, /^cs_/);
    assert.match(session.url, new RegExp(`/pay/${session.id}$`));
    const expiresIn = Date.parse(session.expires_at) - Date.now();
    assert.ok(expiresIn > 29 * 60_000 && expiresIn <= 30 * 60_000);
    const state = await page(session.id, '/session');
    assert.equal(state.status, 200);
    assert.deepEqual({ amount: state.body.amount, has_pin: state.body.has_pin, methods: state.body.methods.length }, { amount: 45000, has_pin: false, methods: 0 });
    const method = await page(session.id, '/payment_methods', card);
    assert.equal(method.status, 201, JSON.stringify(method.body));
    assert.equal((await page(session.id, '/pin', { pin: '135790' })).status, 200);
    const approved = await page(session.id, '/approve', { payment_method: method.body.id, pin: '135790' });
    assert.equal(approved.status, 200, JSON.stringify(approved.body));
    const redirect = new URL(approved.body.redirect_url);
    assert.equal(`${redirect.origin}${redirect.pathname}`, 'https://shop.example/success');
    const paymentKey = redirect.searchParams.get('paymentKey') ?? '';
    assert.match(paymentKey, /^pay_/);
    assert.equal(redirect.searchParams.get('orderId'), orderId);
    assert.equal(redirect.searchParams.get('amount'), '45000');
    assert.equal((await keel.request('GET', `/v1/payments/${paymentKey}`)).body.status, 'requires_capture');

    const tampered = await keel.request('POST', '/v1/brandpay/payments/confirm', { body: { payment_key: paymentKey, order_id: orderId, amount: 100 } });
    assert.equal(tampered.status, 400);
    assert.equal(tampered.body.error.code, 'amount_mismatch');
    const confirmed = await keel.request('POST', '/v1/brandpay/payments/confirm', { body: { payment_key: paymentKey, order_id: orderId, amount: 45000 } });
    assert.equal(confirmed.status, 200, JSON.stringify(confirmed.body));
    assert.equal(confirmed.body.status, 'succeeded');
    const again = await keel.request('POST', '/v1/brandpay/payments/confirm', { body: { payment_key: paymentKey, order_id: orderId, amount: 45000 } });
    assert.equal(again.body.status, 'succeeded');
    const charges = await keel.simCharges(orderId);
    assert.equal(charges.length, 1);
    assert.equal(charges[0]?.captured_amount, 45000);

    const reused = await page(session.id, '/approve', { payment_method: method.body.id, pin: '135790' });
    assert.equal(reused.status, 409);
    assert.equal(reused.body.error.code, 'checkout_session_used');
  });

  test('a second purchase is one PIN entry with the stored card', async () => {
    const first = await newSession(12000);
    const method = (await page(first.session.id, '/payment_methods', card)).body;
    await page(first.session.id, '/pin', { pin: '246813' });
    await page(first.session.id, '/approve', { payment_method: method.id, pin: '246813' });
    const orderId = uniqueKey('ord');
    const second = await keel.request('POST', '/v1/brandpay/checkout_sessions', {
      body: { customer: first.customer.id, amount: 8000, currency: 'KRW', order_id: orderId, success_url: 'https://shop.example/ok', fail_url: 'https://shop.example/fail' },
    });
    const state = await page(second.body.id, '/session');
    assert.equal(state.body.has_pin, true);
    assert.equal(state.body.methods[0].id, method.id);
    const approved = await page(second.body.id, '/approve', { payment_method: method.id, pin: '246813' });
    assert.equal(approved.status, 200);
    assert.match(approved.body.redirect_url, /^https:\/\/shop\.example\/ok\?paymentKey=pay_/);
  });

  test('with Toss, a card the issuer declines is refused at the merchant\'s confirm, and nothing is charged', async () => {
    // Toss verifies the card when it issues the billing key and charges at confirm (capture), so the decline
    // comes at the merchant's confirm, as a 402 with the payment failed.
    const { session, orderId } = await newSession();
    const method = (await page(session.id, '/payment_methods', { type: 'card', card: { ...card.card, number: '4000000000000002' } })).body;
    await page(session.id, '/pin', { pin: '135790' });
    const approved = await page(session.id, '/approve', { payment_method: method.id, pin: '135790' });
    const redirect = new URL(approved.body.redirect_url);
    assert.equal(redirect.pathname, '/success');
    const confirmed = await keel.request('POST', '/v1/brandpay/payments/confirm', {
      body: { payment_key: redirect.searchParams.get('paymentKey'), order_id: orderId, amount: 45000 },
    });
    assert.equal(confirmed.status, 402);
    assert.equal(confirmed.body.error.code, 'card_declined');
    assert.equal(confirmed.body.error.payment.status, 'failed');
    assert.equal((await keel.simCharges(orderId)).filter((charge) => charge.status !== 'declined').length, 0);
  });

  test('5 wrong PINs on the page lock the customer, and the page says so', async () => {
    const { session } = await newSession();
    const method = (await page(session.id, '/payment_methods', card)).body;
    await page(session.id, '/pin', { pin: '135790' });
    const codes: string[] = [];
    for (let index = 0; index < 5; index += 1) codes.push((await page(session.id, '/approve', { payment_method: method.id, pin: '000001' })).body.error.code);
    assert.deepEqual(codes, ['pin_incorrect', 'pin_incorrect', 'pin_incorrect', 'pin_incorrect', 'customer_locked']);
    const state = await page(session.id, '/session');
    assert.equal(state.status, 403);
    assert.equal(state.body.error.code, 'customer_locked');
  });

  test('an expired session is refused', async () => {
    const { session } = await newSession();
    await keel.keel.database.db.updateTable('checkout_sessions').set({ expires_at: new Date(Date.now() - 1000) }).execute();
    const state = await page(session.id, '/session');
    assert.equal(state.status, 410);
    assert.equal(state.body.error.code, 'checkout_session_expired');
  });

  test('another merchant cannot read a session; the SDK reads it with the publishable key', async () => {
    const { session } = await newSession();
    const other = await keel.createMerchant({ name: 'Other' });
    assert.equal((await keel.request('GET', `/v1/brandpay/checkout_sessions/${session.id}`, { secretKey: other.publishable_key })).status, 404);
    const mine = await keel.request('GET', `/v1/brandpay/checkout_sessions/${session.id}`, { secretKey: keel.merchant.publishable_key });
    assert.equal(mine.status, 200);
    assert.equal(mine.body.url, session.url);
    assert.equal(mine.headers['access-control-allow-origin'], '*');
  });

  test('the page and the SDK are served without external assets', async () => {
    const { session } = await newSession();
    const html = await keel.request('GET', `/pay/${session.id}?lang=ko`, { secretKey: null });
    assert.equal(html.status, 200);
    assert.match(String(html.headers['content-type']), /text\/html/);
    assert.match(html.body, /<html lang="ko">/);
    assert.match(html.body, /결제 비밀번호/);
    assert.match(html.body, /Test Shop Pay/);
    assert.doesNotMatch(html.body, /<script[^>]+src=|<link[^>]+href=|@import|fonts\.googleapis/);
    const english = await keel.request('GET', `/pay/${session.id}`, { secretKey: null, headers: { 'accept-language': 'en-US' } });
    assert.match(english.body, /6-digit payment PIN/);
    const sdk = await keel.request('GET', '/v1/brandpay.js', { secretKey: null });
    assert.match(String(sdk.headers['content-type']), /javascript/);
    assert.match(sdk.body, /global\.KeelPay = KeelPay/);
  });
});
