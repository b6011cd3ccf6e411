// Proves that hostile and careless input is refused at the edge, on every kind of route, with a catalogue
// error naming the parameter, and that a refusal writes nothing: the rows of every table are counted before
// and after each one. Covers NUL bytes and lone UTF-16 surrogates in values and keys, numbers beyond 2^53,
// deep nesting, malformed JSON, wrong types, unknown and missing fields, oversized bodies, Stripe's metadata
// limits, and the Brand Pay routes' missing fields inside a card or a bank account.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { startTestKeel, testCard, uniqueKey, type TestKeel } from '../testing/harness.js';

let keel: TestKeel;
let openPayment: string;
let paidPayment: string;
let customer: string;
let session: string;

before(async () => {
  keel = await startTestKeel();
  openPayment = (await keel.request('POST', '/v1/payments', { body: { amount: 1000, currency: 'KRW', order_id: uniqueKey('ord') } })).body.id;
  paidPayment = (await keel.request('POST', '/v1/payments', { body: { ...valid() } })).body.id;
  customer = (await keel.request('POST', '/v1/brandpay/customers', { body: { customer_key: uniqueKey('shopper') } })).body.id;
  session = (
    await keel.request('POST', '/v1/brandpay/checkout_sessions', {
      body: { customer, amount: 5000, currency: 'KRW', order_id: uniqueKey('ord'), success_url: 'https://shop.example/ok', fail_url: 'https://shop.example/fail' },
    })
  ).body.id;
  assert.match(openPayment, /^pay_/);
  assert.match(paidPayment, /^pay_/);
  assert.match(session, /^cs_/);
});
after(async () => {
  await keel.close();
});

function valid() {
  return { amount: 1000, currency: 'KRW', order_id: uniqueKey('ord'), payment_method: testCard(), confirm: true };
}
/** A JSON text with `marker` (a quoted string) replaced by raw JSON: escapes such as `"\ud800"` survive. */
function withRaw(body: unknown, marker: string, raw: string): string {
  return JSON.stringify(body).replace(JSON.stringify(marker), raw);
}

interface RefusalCase {
  readonly name: string;
  readonly method?: 'GET' | 'POST';
  readonly path: () => string;
  readonly body?: () => unknown;
  readonly raw?: () => string;
  readonly publicPage?: boolean;
  readonly status: number;
  readonly code: string;
  readonly param?: string;
}

const payments = () => '/v1/payments';
const cases: readonly RefusalCase[] = [
  // Bad unicode, in values and keys, on every kind of route.
  { name: 'a NUL byte in description', path: payments, body: () => ({ ...valid(), description: 'gift\u0000wrap' }), status: 400, code: 'parameter_invalid', param: 'description' },
  { name: 'a lone high surrogate in description', path: payments, raw: () => withRaw({ ...valid(), description: 'X' }, 'X', '"caf\\ud800"'), status: 400, code: 'parameter_invalid', param: 'description' },
  { name: 'a lone low surrogate in a metadata value', path: payments, raw: () => withRaw({ ...valid(), metadata: { gift: 'X' } }, 'X', '"\\udc00"'), status: 400, code: 'parameter_invalid', param: 'metadata.gift' },
  { name: 'a NUL byte in a metadata key', path: payments, body: () => ({ ...valid(), metadata: { 'gi\u0000ft': 'yes' } }), status: 400, code: 'parameter_invalid', param: 'metadata' },
  { name: 'a NUL byte in a cancellation reason', path: () => `/v1/payments/${openPayment}/cancel`, body: () => ({ reason: 'dupe\u0000' }), status: 400, code: 'parameter_invalid', param: 'reason' },
  { name: 'a lone surrogate in a refund reason', path: () => '/v1/refunds', raw: () => withRaw({ payment: paidPayment, reason: 'X' }, 'X', '"\\ud83d"'), status: 400, code: 'parameter_invalid', param: 'reason' },
  { name: 'a NUL byte in a Brand Pay customer key', path: () => '/v1/brandpay/customers', body: () => ({ customer_key: 'shopper\u0000' }), status: 400, code: 'parameter_invalid', param: 'customer_key' },
  { name: 'a NUL byte in a webhook URL', path: () => '/v1/webhook_endpoints', body: () => ({ url: 'http://127.0.0.1:9/\u0000', events: ['*'] }), status: 400, code: 'parameter_invalid', param: 'url' },
  { name: 'a NUL byte in a query string', method: 'GET', path: () => '/v1/payments?order_id=ord%00x', status: 400, code: 'parameter_invalid', param: 'querystring.order_id' },
  { name: 'a NUL byte in a hosted-page PIN', path: () => `/pay/${session}/pin`, body: () => ({ pin: '13579\u00000' }), publicPage: true, status: 400, code: 'parameter_invalid', param: 'pin' },
  // Numbers JSON cannot carry exactly, and nesting.
  { name: 'an amount beyond 2^53', path: payments, raw: () => withRaw({ ...valid(), amount: 'X' }, 'X', '9007199254740993'), status: 400, code: 'parameter_invalid', param: 'amount' },
  { name: 'a number too large for a double', path: payments, raw: () => withRaw({ ...valid(), amount: 'X' }, 'X', '1e400'), status: 400, code: 'parameter_invalid', param: 'amount' },
  { name: 'deep nesting', path: payments, raw: () => withRaw({ ...valid(), metadata: 'X' }, 'X', `${'['.repeat(5000)}${']'.repeat(5000)}`), status: 400, code: 'parameter_invalid' },
  // The shape of the body.
  { name: 'malformed JSON', path: payments, raw: () => '{"amount": 1000,', status: 400, code: 'body_malformed' },
  { name: 'an amount as a string', path: payments, body: () => ({ ...valid(), amount: '1000' }), status: 400, code: 'parameter_invalid', param: 'amount' },
  { name: 'an unknown field', path: payments, body: () => ({ ...valid(), surprise: true }), status: 400, code: 'parameter_unknown', param: 'surprise' },
  { name: 'a missing field', path: payments, body: () => ({ currency: 'KRW', order_id: uniqueKey('ord') }), status: 400, code: 'parameter_missing', param: 'amount' },
  { name: 'an oversized body', path: payments, body: () => ({ ...valid(), description: 'x'.repeat(70_000) }), status: 413, code: 'body_too_large' },
  // Stripe's metadata limits.
  { name: 'a 41-character metadata key', path: payments, body: () => ({ ...valid(), metadata: { ['k'.repeat(41)]: 'v' } }), status: 400, code: 'parameter_invalid', param: 'metadata' },
  { name: 'an empty metadata key', path: payments, body: () => ({ ...valid(), metadata: { '': 'v' } }), status: 400, code: 'parameter_invalid', param: 'metadata' },
  { name: 'a 501-character metadata value', path: payments, body: () => ({ ...valid(), metadata: { note: 'v'.repeat(501) } }), status: 400, code: 'parameter_invalid', param: 'metadata.note' },
  { name: 'a metadata value that is not a string', path: payments, body: () => ({ ...valid(), metadata: { count: 3 } }), status: 400, code: 'parameter_invalid', param: 'metadata.count' },
  { name: '21 metadata keys', path: payments, body: () => ({ ...valid(), metadata: Object.fromEntries(Array.from({ length: 21 }, (_, index) => [`k${index}`, 'v'])) }), status: 400, code: 'parameter_invalid', param: 'metadata' },
  // Missing fields inside a union (a card or a bank account) on the Brand Pay routes are missing, not unknown.
  { name: 'a card method without its card', path: () => `/v1/brandpay/customers/${customer}/payment_methods`, body: () => ({ type: 'card' }), status: 400, code: 'parameter_missing', param: 'card' },
  { name: 'a card without its CVC', path: () => `/v1/brandpay/customers/${customer}/payment_methods`, body: () => ({ type: 'card', card: { number: '4242424242424242', exp_month: 12, exp_year: 2034 } }), status: 400, code: 'parameter_missing', param: 'card.cvc' },
  { name: 'a bank account without its number', path: () => `/pay/${session}/payment_methods`, body: () => ({ type: 'bank_account', bank_account: { bank_code: '088', holder_name: 'Kim' } }), publicPage: true, status: 400, code: 'parameter_missing', param: 'bank_account.account_number' },
  { name: 'a page card without its card', path: () => `/pay/${session}/payment_methods`, body: () => ({ type: 'card' }), publicPage: true, status: 400, code: 'parameter_missing', param: 'card' },
  { name: 'a payment card without its number', path: payments, body: () => ({ ...valid(), payment_method: { type: 'card', card: { exp_month: 12, exp_year: 2034, cvc: '123' } } }), status: 400, code: 'parameter_missing', param: 'payment_method.card.number' },
  { name: 'a method of an unknown type', path: () => `/v1/brandpay/customers/${customer}/payment_methods`, body: () => ({ type: 'cash' }), status: 400, code: 'parameter_invalid', param: 'type' },
];

describe('hostile input is refused at the edge and writes nothing', () => {
  for (const item of cases) {
    test(`${item.name}: ${item.status} ${item.code}${item.param === undefined ? '' : ` (${item.param})`}`, async () => {
      const before = await keel.countAllRows();
      const method = item.method ?? 'POST';
      const response = await keel.request(method, item.path(), {
        ...(item.raw !== undefined ? { rawBody: item.raw() } : item.body !== undefined ? { body: item.body() } : {}),
        ...(item.publicPage === true ? { secretKey: null, idempotencyKey: null } : {}),
      });
      assert.equal(response.status, item.status, JSON.stringify(response.body));
      assert.equal(response.body.error.code, item.code, JSON.stringify(response.body));
      assert.equal(response.body.error.type, 'invalid_request_error');
      if (item.param !== undefined) assert.equal(response.body.error.param, item.param, JSON.stringify(response.body));
      assert.deepEqual(await keel.countAllRows(), before);
    });
  }

  test('Stripe\'s limits are inclusive: 20 keys, a 40-character key and a 500-character value are accepted, and text with emoji passes', async () => {
    const metadata = { ...Object.fromEntries(Array.from({ length: 18 }, (_, index) => [`k${index}`, 'v'])), ['k'.repeat(40)]: 'v'.repeat(500), gift: '🎁 선물' };
    const response = await keel.request('POST', '/v1/payments', { body: { ...valid(), description: '커피 ☕', metadata } });
    assert.equal(response.status, 200, JSON.stringify(response.body));
    assert.deepEqual(response.body.metadata, metadata);
    assert.equal(response.body.description, '커피 ☕');
  });

  test('a refused request stores nothing under its key: the same key then succeeds with a valid body', async () => {
    const key = uniqueKey();
    const refused = await keel.request('POST', '/v1/payments', { body: { ...valid(), description: 'a\u0000b' }, idempotencyKey: key });
    assert.equal(refused.status, 400);
    const accepted = await keel.request('POST', '/v1/payments', { body: valid(), idempotencyKey: key });
    assert.equal(accepted.status, 200, JSON.stringify(accepted.body));
    assert.equal(accepted.body.status, 'succeeded');
  });
});
