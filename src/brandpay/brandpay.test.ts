// Proves Brand Pay's server side through the API: customers keyed by the shop's customer_key, PIN rules and
// the lockout after 5 wrong PINs (with its event) until the merchant unlocks, cards exchanged for partner tokens
// with fingerprints so a card registered twice returns the stored method, bank accounts encrypted, one-click
// payments with a stored method, detaching and deleting, and another merchant's customer as a 404.
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

const card = (number = '4242424242424242') => ({ type: 'card', card: { number, exp_month: 10, exp_year: 2033, cvc: '321' } });
const newCustomer = async (key = uniqueKey('shopper')) => (await keel.request('POST', '/v1/brandpay/customers', { body: { customer_key: key } })).body;

describe('customers', () => {
  test('created once per customer_key; the same key returns the same customer', async () => {
    const key = uniqueKey('shopper');
    const first = await keel.request('POST', '/v1/brandpay/customers', { body: { customer_key: key } });
    assert.equal(first.status, 201);
    assert.match(first.body.id, /^cus_/);
    assert.deepEqual({ object: first.body.object, status: first.body.status, has_pin: first.body.has_pin }, { object: 'customer', status: 'active', has_pin: false });
    const again = await keel.request('POST', '/v1/brandpay/customers', { body: { customer_key: key } });
    assert.equal(again.status, 200);
    assert.equal(again.body.id, first.body.id);
  });

  test('keys that look like an email, a phone number or a sequence are refused', async () => {
    for (const key of ['kim@shop.example', '010-2345-6789', '123456', 'x']) {
      const response = await keel.request('POST', '/v1/brandpay/customers', { body: { customer_key: key } });
      assert.equal(response.status, 400, key);
      assert.equal(response.body.error.param, 'customer_key');
    }
  });

  test('another merchant\'s customer is a 404', async () => {
    const customer = await newCustomer();
    const other = await keel.createMerchant({ name: 'Other' });
    for (const [method, path, body] of [
      ['GET', `/v1/brandpay/customers/${customer.id}`, undefined],
      ['POST', `/v1/brandpay/customers/${customer.id}/pin`, { pin: '135790' }],
      ['POST', `/v1/brandpay/customers/${customer.id}/payment_methods`, card()],
      ['GET', `/v1/brandpay/customers/${customer.id}/payment_methods`, undefined],
    ] as const) {
      const response = await keel.request(method, path, { body, secretKey: other.secret_key });
      assert.equal(response.status, 404, `${method} ${path}`);
    }
  });
});

describe('PIN', () => {
  test('six digits, not trivial; changing it needs the current one', async () => {
    const customer = await newCustomer();
    for (const pin of ['111111', '123456', '987654', '12345', 'abcdef']) {
      const response = await keel.request('POST', `/v1/brandpay/customers/${customer.id}/pin`, { body: { pin } });
      assert.equal(response.status, 400, pin);
      assert.equal(response.body.error.param, 'pin');
    }
    const set = await keel.request('POST', `/v1/brandpay/customers/${customer.id}/pin`, { body: { pin: '135790' } });
    assert.equal(set.status, 200);
    assert.equal(set.body.has_pin, true);
    const withoutCurrent = await keel.request('POST', `/v1/brandpay/customers/${customer.id}/pin`, { body: { pin: '246801' } });
    assert.equal(withoutCurrent.body.error.code, 'pin_required');
    const changed = await keel.request('POST', `/v1/brandpay/customers/${customer.id}/pin`, { body: { pin: '246801', current_pin: '135790' } });
    assert.equal(changed.status, 200);
    const row = await keel.keel.database.db.selectFrom('customers').select(['pin_hash', 'pin_salt']).where('customer_key', '=', customer.customer_key).executeTakeFirstOrThrow();
    assert.match(row.pin_hash ?? '', /^[0-9a-f]{64}$/);
    assert.notEqual(row.pin_hash, '246801');
  });

  test('5 wrong PINs in a row lock the customer (event written) until the merchant unlocks them; a correct PIN resets the count', async () => {
    const customer = await newCustomer();
    await keel.request('POST', `/v1/brandpay/customers/${customer.id}/pin`, { body: { pin: '135790' } });
    const wrong = () => keel.request('POST', `/v1/brandpay/customers/${customer.id}/pin`, { body: { pin: '482913', current_pin: '000001' } });
    for (let index = 0; index < 3; index += 1) assert.equal((await wrong()).body.error.code, 'pin_incorrect');
    // A correct PIN in between resets the count: the next four wrong ones do not lock.
    assert.equal((await keel.request('POST', `/v1/brandpay/customers/${customer.id}/pin`, { body: { pin: '135790', current_pin: '135790' } })).status, 200);
    const messages: string[] = [];
    for (let index = 0; index < 4; index += 1) {
      const response = await wrong();
      assert.equal(response.status, 403);
      assert.equal(response.body.error.code, 'pin_incorrect');
      messages.push(response.body.error.message);
    }
    assert.match(messages[3] ?? '', /1 try remains/);
    const fifth = await wrong();
    assert.equal(fifth.status, 403);
    assert.equal(fifth.body.error.code, 'customer_locked');
    const correct = await keel.request('POST', `/v1/brandpay/customers/${customer.id}/pin`, { body: { pin: '482913', current_pin: '135790' } });
    assert.equal(correct.body.error.code, 'customer_locked', 'a locked customer cannot use even the right PIN');
    assert.equal((await keel.request('GET', `/v1/brandpay/customers/${customer.id}`)).body.status, 'locked');
    const events = await keel.keel.database.db.selectFrom('outbox').select('type').where('type', '=', 'brandpay.customer.locked').execute();
    assert.ok(events.length >= 1);
    const unlocked = await keel.request('POST', `/v1/brandpay/customers/${customer.id}/unlock`, { body: {} });
    assert.equal(unlocked.body.status, 'active');
    assert.equal((await keel.request('POST', `/v1/brandpay/customers/${customer.id}/pin`, { body: { pin: '482913', current_pin: '135790' } })).status, 200);
  });
});

describe('payment methods', () => {
  test('a card becomes a partner token; the same card twice returns the stored method; nothing sensitive is stored', async () => {
    const customer = await newCustomer();
    const first = await keel.request('POST', `/v1/brandpay/customers/${customer.id}/payment_methods`, { body: card() });
    assert.equal(first.status, 201, JSON.stringify(first.body));
    assert.match(first.body.id, /^pm_/);
    assert.deepEqual(first.body.card, { brand: 'visa', last4: '4242', exp_month: 10, exp_year: 2033 });
    const second = await keel.request('POST', `/v1/brandpay/customers/${customer.id}/payment_methods`, { body: card() });
    assert.equal(second.status, 200);
    assert.equal(second.body.id, first.body.id);
    assert.equal(second.body.fingerprint, first.body.fingerprint);
    const other = await keel.request('POST', `/v1/brandpay/customers/${customer.id}/payment_methods`, { body: card('5555555555554444') });
    assert.notEqual(other.body.fingerprint, first.body.fingerprint);
    const rows = await keel.keel.database.db.selectFrom('payment_methods').selectAll().execute();
    const text = JSON.stringify(rows);
    assert.equal(text.includes('4242424242424242'), false, 'no card number stored');
    assert.equal(text.includes('"321"'), false, 'no CVC stored');
    assert.ok(rows.every((row) => row.token_encrypted === null || row.token_encrypted.startsWith('v2.')), 'tokens are encrypted');
    const list = await keel.request('GET', `/v1/brandpay/customers/${customer.id}/payment_methods`);
    assert.equal(list.body.data.length, 2);
  });

  test('a bank account keeps bank code and last4, the number encrypted', async () => {
    const customer = await newCustomer();
    const response = await keel.request('POST', `/v1/brandpay/customers/${customer.id}/payment_methods`, {
      body: { type: 'bank_account', bank_account: { bank_code: '088', account_number: '110123456789', holder_name: 'Kim' } },
    });
    assert.equal(response.status, 201);
    assert.deepEqual(response.body.bank_account, { bank_code: '088', last4: '6789' });
    const row = await keel.keel.database.db.selectFrom('payment_methods').selectAll().where('bank_code', '=', '088').executeTakeFirstOrThrow();
    assert.ok(row.account_number_encrypted?.startsWith('v2.'));
    assert.equal(JSON.stringify(row).includes('110123456789'), false);
  });

  test('one-click payment with a stored card, then detach: the method can no longer pay', async () => {
    const customer = await newCustomer();
    const method = (await keel.request('POST', `/v1/brandpay/customers/${customer.id}/payment_methods`, { body: card() })).body;
    const orderId = uniqueKey('ord');
    const paid = await keel.request('POST', '/v1/payments', {
      body: { amount: 39000, currency: 'KRW', order_id: orderId, customer: customer.id, payment_method: method.id, confirm: true },
    });
    assert.equal(paid.status, 200, JSON.stringify(paid.body));
    assert.equal(paid.body.status, 'succeeded');
    assert.equal(paid.body.customer, customer.id);
    assert.equal(paid.body.payment_method.card.last4, '4242');
    assert.equal((await keel.simCharges(orderId)).length, 1);
    const stranger = await newCustomer();
    const wrongOwner = await keel.request('POST', '/v1/payments', {
      body: { amount: 1000, currency: 'KRW', order_id: uniqueKey('ord'), customer: stranger.id, payment_method: method.id, confirm: true },
    });
    assert.equal(wrongOwner.status, 409);
    const tokensAtPartner = keel.keel.simulator?.state.cards.size ?? 0;
    const detached = await keel.request('DELETE', `/v1/brandpay/customers/${customer.id}/payment_methods/${method.id}`);
    assert.equal(detached.status, 200);
    assert.equal(detached.body.status, 'detached');
    assert.equal(keel.keel.simulator?.state.cards.size, tokensAtPartner - 1, 'the billing key was revoked at the partner');
    const after = await keel.request('POST', '/v1/payments', {
      body: { amount: 1000, currency: 'KRW', order_id: uniqueKey('ord'), customer: customer.id, payment_method: method.id, confirm: true },
    });
    assert.equal(after.status, 409);
    assert.equal(after.body.error.code, 'customer_inactive');
  });

  test('deleting a customer detaches their methods and frees the key', async () => {
    const key = uniqueKey('shopper');
    const customer = await newCustomer(key);
    await keel.request('POST', `/v1/brandpay/customers/${customer.id}/payment_methods`, { body: card() });
    const deleted = await keel.request('POST', `/v1/brandpay/customers/${customer.id}/delete`, { body: {} });
    assert.equal(deleted.status, 200);
    assert.equal(deleted.body.status, 'deleted');
    const methods = await keel.keel.database.db.selectFrom('payment_methods').select('status').where('customer_id', '=', (await keel.keel.database.db.selectFrom('customers').select('id').where('status', '=', 'deleted').orderBy('id', 'desc').executeTakeFirstOrThrow()).id).execute();
    assert.deepEqual(methods.map((method) => method.status), ['detached']);
    const reborn = await keel.request('POST', '/v1/brandpay/customers', { body: { customer_key: key } });
    assert.equal(reborn.status, 201);
    assert.notEqual(reborn.body.id, customer.id);
  });
});
