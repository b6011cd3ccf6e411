// Proves that bad input gets a clear catalogue error naming the parameter, and that nothing is written:
// malformed JSON, wrong types, unknown fields, oversized bodies, out-of-range amounts, unknown currencies and
// countries, over-long order ids and metadata. Also proves authentication: Bearer and Basic secret keys,
// missing or wrong keys, and publishable keys refused on secret endpoints.
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

const valid = () => ({ amount: 1000, currency: 'KRW', order_id: uniqueKey('ord'), payment_method: testCard(), confirm: true });

const countRows = () => keel.countAllRows();

describe('validation', () => {
  const cases: readonly { name: string; body?: unknown; raw?: string; status: number; code: string; param?: string }[] = [
    { name: 'malformed JSON', raw: '{"amount": 1000,', status: 400, code: 'body_malformed' },
    { name: 'a JSON array', raw: '[1,2]', status: 400, code: 'parameter_invalid' },
    { name: 'amount as a string', body: { ...valid(), amount: '1000' }, status: 400, code: 'parameter_invalid', param: 'amount' },
    { name: 'a fractional amount', body: { ...valid(), amount: 10.5 }, status: 400, code: 'parameter_invalid', param: 'amount' },
    { name: 'a zero amount', body: { ...valid(), amount: 0 }, status: 400, code: 'parameter_invalid', param: 'amount' },
    { name: 'a negative amount', body: { ...valid(), amount: -5 }, status: 400, code: 'parameter_invalid', param: 'amount' },
    { name: 'an amount above the KRW maximum', body: { ...valid(), amount: 100_000_001 }, status: 400, code: 'amount_too_large', param: 'amount' },
    { name: 'an unknown currency', body: { ...valid(), currency: 'XXX' }, status: 400, code: 'currency_unsupported', param: 'currency' },
    { name: 'a lower-case currency', body: { ...valid(), currency: 'krw' }, status: 400, code: 'parameter_invalid', param: 'currency' },
    { name: 'an unknown country', body: { ...valid(), country: 'ZZ' }, status: 400, code: 'parameter_invalid', param: 'country' },
    { name: 'an empty order_id', body: { ...valid(), order_id: '' }, status: 400, code: 'parameter_invalid', param: 'order_id' },
    { name: 'a 65-character order_id', body: { ...valid(), order_id: 'o'.repeat(65) }, status: 400, code: 'parameter_invalid', param: 'order_id' },
    { name: 'a missing amount', body: { currency: 'KRW', order_id: 'x' }, status: 400, code: 'parameter_missing', param: 'amount' },
    { name: 'an unknown field', body: { ...valid(), surprise: true }, status: 400, code: 'parameter_unknown', param: 'surprise' },
    { name: 'an unknown nested field', body: { ...valid(), payment_method: { type: 'card', card: { ...testCard().card, pin: '12' } } }, status: 400, code: 'parameter_unknown', param: 'payment_method.card.pin' },
    { name: 'a card failing the checksum', body: { ...valid(), payment_method: testCard('4242424242424241') }, status: 400, code: 'parameter_invalid', param: 'payment_method.card.number' },
    { name: 'an expired card', body: { ...valid(), payment_method: { type: 'card', card: { ...testCard().card, exp_year: 2020 } } }, status: 400, code: 'parameter_invalid', param: 'payment_method.card.exp_year' },
    { name: '21 metadata keys', body: { ...valid(), metadata: Object.fromEntries(Array.from({ length: 21 }, (_, index) => [`k${index}`, 'v'])) }, status: 400, code: 'parameter_invalid', param: 'metadata' },
    { name: 'a non-string metadata value', body: { ...valid(), metadata: { a: 1 } }, status: 400, code: 'parameter_invalid', param: 'metadata.a' },
    { name: 'confirm without a payment method', body: { ...valid(), payment_method: undefined }, status: 400, code: 'payment_method_required', param: 'payment_method' },
    { name: 'an oversized body', body: { ...valid(), description: 'x'.repeat(70_000) }, status: 413, code: 'body_too_large' },
  ];

  for (const item of cases) {
    test(`${item.name}: ${item.status} ${item.code}, nothing written`, async () => {
      const before = await countRows();
      const key = uniqueKey();
      const response = await keel.request('POST', '/v1/payments', { ...(item.raw === undefined ? { body: item.body } : { rawBody: item.raw }), idempotencyKey: key });
      assert.equal(response.status, item.status, JSON.stringify(response.body));
      assert.equal(response.body.error.code, item.code);
      assert.equal(response.body.error.type, 'invalid_request_error');
      assert.match(response.body.error.request_id, /^req_/);
      if (item.param !== undefined) assert.equal(response.body.error.param, item.param);
      assert.deepEqual(await countRows(), before);
    });
  }

  test('a 20-key metadata and a 64-character order_id are accepted', async () => {
    const body = { ...valid(), order_id: 'o'.repeat(54) + uniqueKey('').slice(-10), metadata: Object.fromEntries(Array.from({ length: 20 }, (_, index) => [`k${index}`, 'v'])) };
    assert.equal(body.order_id.length, 64);
    const response = await keel.request('POST', '/v1/payments', { body });
    assert.equal(response.status, 200, JSON.stringify(response.body));
    assert.equal(Object.keys(response.body.metadata).length, 20);
  });

  test('currencies keep their minor unit: 1000 USD cents and 1000 KRW won', async () => {
    const stripe = await keel.createMerchant({ name: 'Dollar Shop', gateway: 'stripe' });
    const usd = await keel.request('POST', '/v1/payments', { body: { ...valid(), currency: 'USD', amount: 99_999_999 }, secretKey: stripe.secret_key });
    assert.equal(usd.status, 200);
    const tooMuch = await keel.request('POST', '/v1/payments', { body: { ...valid(), currency: 'USD', amount: 100_000_000 }, secretKey: stripe.secret_key });
    assert.equal(tooMuch.body.error.code, 'amount_too_large');
  });

  test('a malformed id in the path is a 404, not a 500', async () => {
    const response = await keel.request('GET', '/v1/payments/pay_notanid');
    assert.equal(response.status, 404);
    assert.equal(response.body.error.code, 'resource_missing');
  });

  test('an unknown route is a 404 in the error envelope', async () => {
    const response = await keel.request('GET', '/v1/nothing');
    assert.equal(response.status, 404);
    assert.equal(response.body.error.code, 'route_not_found');
  });
});

describe('authentication', () => {
  test('a Basic secret key (Toss convention) works like Bearer', async () => {
    const basic = Buffer.from(`${keel.merchant.secret_key}:`).toString('base64');
    const response = await keel.request('GET', '/v1/payments', { headers: { authorization: `Basic ${basic}` } });
    assert.equal(response.status, 200);
  });

  test('no key is 401 authentication_required; a wrong key is 401 api_key_invalid', async () => {
    const none = await keel.request('GET', '/v1/payments', { secretKey: null });
    assert.equal(none.status, 401);
    assert.equal(none.body.error.type, 'authentication_error');
    assert.equal(none.body.error.code, 'authentication_required');
    const wrong = await keel.request('GET', '/v1/payments', { secretKey: 'sk_test_nope' });
    assert.equal(wrong.status, 401);
    assert.equal(wrong.body.error.code, 'api_key_invalid');
  });

  test('a publishable key cannot create or read payments', async () => {
    const create = await keel.request('POST', '/v1/payments', { body: valid(), secretKey: keel.merchant.publishable_key });
    assert.equal(create.status, 403);
    assert.equal(create.body.error.code, 'api_key_not_allowed');
    const read = await keel.request('GET', '/v1/payments', { secretKey: keel.merchant.publishable_key });
    assert.equal(read.status, 403);
  });

  test('keys are stored only as hashes', async () => {
    const rows = await keel.keel.database.db.selectFrom('api_keys').select('key_hash').execute();
    assert.ok(rows.length >= 2);
    for (const row of rows) {
      assert.match(row.key_hash, /^[0-9a-f]{64}$/);
      assert.notEqual(row.key_hash, keel.merchant.secret_key);
    }
  });
});
