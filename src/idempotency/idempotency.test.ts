// Proves the Idempotency-Key contract end to end: replays, in-use and reuse refusals, validation failures that
// store nothing, 50 concurrent identical requests that charge once, a simulated process death between every
// pair of phases recovered by a retry or by the completer with exactly one charge.
// (Pruning finished keys past the TTL: src/storage/retention.test.ts.) The benchmark gateway's own record of charges is the ground truth.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import { faultPointNames } from '../payments/operations/context.js';
import { startTestKeel, testCard, testConsistencyWindowMs, uniqueKey, type TestKeel } from '../testing/harness.js';
import { FieldCipher } from '../storage/encryption.js';
import { requestHash } from './keys.js';

let keel: TestKeel;
before(async () => {
  keel = await startTestKeel();
});
after(async () => {
  await keel.close();
});

const paymentBody = () => ({ amount: 12000, currency: 'KRW', order_id: uniqueKey('ord'), payment_method: testCard(), confirm: true });
const lockTimeoutMs = 2_000;

describe('replay and refusal', () => {
  test('the same key and body replays the stored answer without a second charge', async () => {
    const body = paymentBody();
    const key = uniqueKey();
    const first = await keel.request('POST', '/v1/payments', { body, idempotencyKey: key });
    const second = await keel.request('POST', '/v1/payments', { body, idempotencyKey: key });
    assert.equal(first.status, 200);
    assert.equal(second.status, 200);
    assert.equal(second.headers['idempotent-replayed'], 'true');
    assert.equal(first.headers['idempotent-replayed'], undefined);
    assert.deepEqual(second.body, first.body);
    assert.equal((await keel.simCharges(body.order_id)).length, 1);
  });

  test('a declined answer is replayed too', async () => {
    const body = { ...paymentBody(), payment_method: testCard('4000000000000002') };
    const key = uniqueKey();
    const first = await keel.request('POST', '/v1/payments', { body, idempotencyKey: key });
    const second = await keel.request('POST', '/v1/payments', { body, idempotencyKey: key });
    assert.equal(first.status, 402);
    assert.equal(second.status, 402);
    assert.deepEqual(second.body, first.body);
  });

  test('the same key with another body, path or method is 422 idempotency_key_reused', async () => {
    const key = uniqueKey();
    const body = paymentBody();
    await keel.request('POST', '/v1/payments', { body, idempotencyKey: key });
    const changed = await keel.request('POST', '/v1/payments', { body: { ...body, amount: 12001 }, idempotencyKey: key });
    assert.equal(changed.status, 422);
    assert.equal(changed.body.error.type, 'idempotency_error');
    assert.equal(changed.body.error.code, 'idempotency_key_reused');
    const reordered = await keel.request('POST', '/v1/payments', {
      rawBody: JSON.stringify({ confirm: true, payment_method: body.payment_method, order_id: body.order_id, currency: 'KRW', amount: 12000 }),
      idempotencyKey: key,
    });
    assert.equal(reordered.status, 200, 'key order in the JSON does not make another request');
  });

  test('keys are scoped to the merchant', async () => {
    const key = uniqueKey();
    const other = await keel.createMerchant({ name: 'Other' });
    const mine = await keel.request('POST', '/v1/payments', { body: paymentBody(), idempotencyKey: key });
    const theirs = await keel.request('POST', '/v1/payments', { body: paymentBody(), idempotencyKey: key, secretKey: other.secret_key });
    assert.equal(mine.status, 200);
    assert.equal(theirs.status, 200);
    assert.notEqual(theirs.body.id, mine.body.id);
  });

  test('a POST without a key, or with a malformed one, is refused before anything happens', async () => {
    const missing = await keel.request('POST', '/v1/payments', { body: paymentBody(), idempotencyKey: null });
    assert.equal(missing.status, 400);
    assert.equal(missing.body.error.code, 'idempotency_key_missing');
    const spaced = await keel.request('POST', '/v1/payments', { body: paymentBody(), idempotencyKey: 'has space' });
    assert.equal(spaced.status, 400);
    assert.equal(spaced.body.error.code, 'idempotency_key_invalid');
    const long = await keel.request('POST', '/v1/payments', { body: paymentBody(), idempotencyKey: 'k'.repeat(256) });
    assert.equal(long.status, 400);
  });

  test('a request that fails validation stores nothing: the key is free for a corrected request', async () => {
    const key = uniqueKey();
    const body = paymentBody();
    const bad = await keel.request('POST', '/v1/payments', { body: { ...body, currency: 'XXX' }, idempotencyKey: key });
    assert.equal(bad.status, 400);
    const taken = { ...paymentBody(), order_id: body.order_id };
    await keel.request('POST', '/v1/payments', { body: taken });
    const conflict = await keel.request('POST', '/v1/payments', { body, idempotencyKey: key });
    assert.equal(conflict.status, 409, 'order_id_taken is a refusal before any side effect');
    assert.equal(conflict.body.error.code, 'order_id_taken');
    const fixed = await keel.request('POST', '/v1/payments', { body: { ...body, order_id: uniqueKey('ord') }, idempotencyKey: key });
    assert.equal(fixed.status, 200, JSON.stringify(fixed.body));
  });
});

describe('the stored request digest', () => {
  test('is a keyed HMAC that leaves the card number and CVC out, and still tells another card from the same one', async () => {
    const body = paymentBody();
    const key = uniqueKey();
    assert.equal((await keel.request('POST', '/v1/payments', { body, idempotencyKey: key })).status, 200);
    const row = await keel.keel.database.db.selectFrom('idempotency_keys').select('request_hash').where('key', '=', key).executeTakeFirstOrThrow();
    // What an unkeyed digest would be, over the body as sent or in any key order: none matches.
    const unkeyed = [JSON.stringify(body), `POST\u0000/v1/payments\u0000${JSON.stringify(body)}`].map((text) => createHash('sha256').update(text).digest('hex'));
    assert.equal(unkeyed.includes(row.request_hash), false);
    // Another Keel (another encryption key) digests the same request differently.
    const cipher = keel.keel.services.deps.cipher;
    const other = FieldCipher.fromSecret(FieldCipher.generateSecret());
    assert.equal(requestHash(cipher, 'POST', '/v1/payments', body), row.request_hash);
    assert.notEqual(requestHash(other, 'POST', '/v1/payments', body), row.request_hash);
    // The card's secrets are not digested: only their keyed fingerprint is, so a changed CVC is still a change.
    const withoutSecrets = { ...body, payment_method: { type: 'card', card: { exp_month: 12, exp_year: 2034, fingerprint: cipher.fingerprint('card:4242424242424242:123') } } };
    assert.equal(requestHash(cipher, 'POST', '/v1/payments', withoutSecrets), row.request_hash);
    const otherCvc = { ...body, payment_method: { type: 'card', card: { ...testCard().card, cvc: '999' } } };
    assert.equal((await keel.request('POST', '/v1/payments', { body: otherCvc, idempotencyKey: key })).body.error.code, 'idempotency_key_reused');
  });
});

describe('concurrency', () => {
  test('50 concurrent identical requests charge once; every answer is the same success or 409', async () => {
    const body = paymentBody();
    const key = uniqueKey();
    const responses = await Promise.all(Array.from({ length: 50 }, () => keel.request('POST', '/v1/payments', { body, idempotencyKey: key })));
    const successes = responses.filter((response) => response.status === 200);
    const inUse = responses.filter((response) => response.status === 409);
    assert.equal(successes.length + inUse.length, 50, `statuses: ${responses.map((response) => response.status).join(',')}`);
    assert.ok(successes.length >= 1);
    for (const response of successes) assert.deepEqual(response.body, successes[0]?.body);
    for (const response of inUse) assert.equal(response.body.error.code, 'idempotency_key_in_use');
    const charges = await keel.simCharges(body.order_id);
    assert.equal(charges.length, 1);
    const list = await keel.request('GET', `/v1/payments?order_id=${body.order_id}`);
    assert.equal(list.body.data.length, 1);
  });
});

describe('a finished key is answered before anything that can change since', () => {
  const customerWithCard = async () => {
    const customer = await keel.request('POST', '/v1/brandpay/customers', { body: { customer_key: uniqueKey('shopper') } });
    await keel.request('POST', `/v1/brandpay/customers/${customer.body.id}/pin`, { body: { pin: '135790' } });
    const method = await keel.request('POST', `/v1/brandpay/customers/${customer.body.id}/payment_methods`, { body: testCard() });
    assert.equal(method.status, 201);
    return { customer: customer.body.id as string, method: method.body.id as string };
  };
  const replayOf = async (path: string, body: unknown, key: string, first: { status: number; body: unknown }) => {
    const again = await keel.request('POST', path, { body, idempotencyKey: key });
    assert.equal(again.status, first.status, JSON.stringify(again.body));
    assert.equal(again.headers['idempotent-replayed'], 'true');
    assert.deepEqual(again.body, first.body);
  };

  test('a retried customer delete replays its answer, though the customer is gone', async () => {
    const { customer } = await customerWithCard();
    const key = uniqueKey();
    const deleted = await keel.request('POST', `/v1/brandpay/customers/${customer}/delete`, { body: {}, idempotencyKey: key });
    assert.equal(deleted.status, 200);
    assert.equal((await keel.request('POST', `/v1/brandpay/customers/${customer}/delete`, { body: {} })).status, 404, 'a new request finds no customer');
    await replayOf(`/v1/brandpay/customers/${customer}/delete`, {}, key, deleted);
  });

  test('a retried payment replays its answer after the customer was locked, and after the method was detached', async () => {
    const { customer, method } = await customerWithCard();
    const body = { amount: 5000, currency: 'KRW', order_id: uniqueKey('ord'), customer, payment_method: method, confirm: true };
    const key = uniqueKey();
    const paid = await keel.request('POST', '/v1/payments', { body, idempotencyKey: key });
    assert.equal(paid.status, 200, JSON.stringify(paid.body));
    for (let index = 0; index < 5; index += 1) {
      await keel.request('POST', `/v1/brandpay/customers/${customer}/pin`, { body: { pin: '482913', current_pin: '000001' } });
    }
    assert.equal((await keel.request('POST', '/v1/payments', { body: { ...body, order_id: uniqueKey('ord') } })).body.error.code, 'customer_locked');
    await replayOf('/v1/payments', body, key, paid);
    await keel.request('POST', `/v1/brandpay/customers/${customer}/unlock`, { body: {} });
    assert.equal((await keel.request('DELETE', `/v1/brandpay/customers/${customer}/payment_methods/${method}`)).status, 200);
    assert.equal((await keel.request('POST', '/v1/payments', { body: { ...body, order_id: uniqueKey('ord') } })).body.error.code, 'customer_inactive');
    await replayOf('/v1/payments', body, key, paid);
    assert.equal((await keel.simCharges(body.order_id)).length, 1);
  });

  test('a retried capture replays its answer though the payment is no longer capturable', async () => {
    const authorized = await keel.request('POST', '/v1/payments', { body: { ...paymentBody(), capture_method: 'manual' } });
    const key = uniqueKey();
    const captured = await keel.request('POST', `/v1/payments/${authorized.body.id}/capture`, { body: {}, idempotencyKey: key });
    assert.equal(captured.status, 200);
    await replayOf(`/v1/payments/${authorized.body.id}/capture`, {}, key, captured);
  });
});

describe('a process death between phases', () => {
  for (const point of faultPointNames) {
    test(`${point}: a retry with the same key after the lock timeout ends with one charge`, async () => {
      const body = paymentBody();
      const key = uniqueKey();
      keel.keel.faults.arm(point);
      const crashed = await keel.request('POST', '/v1/payments', { body, idempotencyKey: key });
      assert.equal(crashed.status, 500);
      const early = await keel.request('POST', '/v1/payments', { body, idempotencyKey: key });
      assert.equal(early.status, 409, 'the dead request still holds the key until its lock times out');
      await sleep(lockTimeoutMs + 200);
      const retried = await keel.request('POST', '/v1/payments', { body, idempotencyKey: key });
      assert.equal(retried.status, 200, JSON.stringify(retried.body));
      assert.equal(retried.body.status, 'succeeded');
      const charges = await keel.simCharges(body.order_id);
      assert.equal(charges.length, 1, `charges: ${JSON.stringify(charges)}`);
      assert.equal(charges[0]?.captured_amount, 12000);
      const replay = await keel.request('POST', '/v1/payments', { body, idempotencyKey: key });
      assert.deepEqual(replay.body, retried.body);
    });

    test(`${point}: the completer finishes the abandoned key consistently`, async () => {
      const body = paymentBody();
      const key = uniqueKey();
      keel.keel.faults.arm(point);
      const crashed = await keel.request('POST', '/v1/payments', { body, idempotencyKey: key });
      assert.equal(crashed.status, 500);
      await sleep(2_700);
      const { completed } = await keel.keel.jobs.completer();
      assert.ok(completed >= 1);
      const late = await keel.request('POST', '/v1/payments', { body, idempotencyKey: key });
      assert.equal(late.headers['idempotent-replayed'], 'true');
      const charges = await keel.simCharges(body.order_id);
      const payment = (await keel.request('GET', `/v1/payments?order_id=${body.order_id}`)).body.data[0];
      if (point === 'after_partner_call') {
        // The partner charged: the completer's inquiry finds it and the payment is paid, once.
        assert.equal(charges.length, 1);
        assert.equal(payment.status, 'succeeded');
        assert.equal(late.body.status, 'succeeded');
      } else {
        // Nothing reached the partner, but Keel cannot know that yet: the attempt may have been sent, and Keel
        // never kept the card to ask again under its key. The payment waits, processing, until the partner's
        // "no such charge" can no longer be lag; then it may be confirmed again.
        assert.equal(charges.length, 0);
        assert.equal(payment.status, 'processing');
        assert.equal(late.status, 202);
        await keel.passTime(testConsistencyWindowMs);
        await keel.keel.jobs.janitor();
        assert.equal((await keel.request('GET', `/v1/payments/${payment.id}`)).body.status, 'requires_confirmation');
        const confirmed = await keel.request('POST', `/v1/payments/${payment.id}/confirm`, { body: { payment_method: testCard() } });
        assert.equal(confirmed.status, 200);
        assert.equal((await keel.simCharges(body.order_id)).length, 1);
      }
    });
  }
});
