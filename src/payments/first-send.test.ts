// Proves the first send's one-statement phases keep what the transactional path guaranteed: while the partner
// holds a payment's charge, the test does what another actor would — takes the key over, or settles the attempt
// first — and the statement that records the answer finds its guard missed, writes nothing, and the general path
// decides: a holder that lost its key records nothing; an attempt settled by someone else is answered as it
// stands, with one capture in the ledger. A taken order id writes nothing at all, the key included; the
// correlation id, a parameter rather than a comment there, is written to the key and the events.
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import { sql } from 'kysely';
import { startTestKeel, testCard, uniqueKey, type TestKeel } from '../testing/harness.js';

let keel: TestKeel;
before(async () => {
  // The partner may take up to 1.4 s a call here: the charge is held while the test acts.
  keel = await startTestKeel({ config: { partnerHttp: { connectTimeoutMs: 500, readTimeoutMs: 1_400, connectionsMax: 64 } } });
});
after(async () => keel.close());

const paymentBody = () => ({ amount: 12000, currency: 'KRW', order_id: uniqueKey('ord'), payment_method: testCard(), confirm: true });

/** Holds every partner call for `ms` while `act` runs, once the payment's attempt is committed and pending. */
async function whileTheChargeIsHeld(orderId: string, ms: number, act: (ids: { payment: string; attempt: string }) => Promise<void>, request: Promise<unknown>): Promise<void> {
  const db = keel.keel.database.db;
  for (;;) {
    const row = await db
      .selectFrom('payments')
      .innerJoin('payment_attempts', 'payment_attempts.payment_id', 'payments.id')
      .select(['payments.id as payment', 'payment_attempts.id as attempt', 'payment_attempts.status'])
      .where('payments.order_id', '=', orderId)
      .executeTakeFirst();
    if (row !== undefined) {
      assert.equal(row.status, 'pending', 'the first phase committed, and the partner has not answered');
      await act(row);
      return;
    }
    if (await Promise.race([request.then(() => true), sleep(10).then(() => false)])) assert.fail(`the request ended before its attempt was seen (held ${ms} ms)`);
  }
}

async function holdPartner(ms: number): Promise<void> {
  const response = await fetch(`${keel.keel.gatewayUrl}/__sim/faults`, { method: 'POST', body: JSON.stringify({ mode: 'latency', latency_ms: ms, duration_s: 30 }) });
  assert.equal(response.status, 201);
}

async function releasePartner(): Promise<void> {
  await fetch(`${keel.keel.gatewayUrl}/__sim/faults`, { method: 'DELETE' });
}

async function rowsOf(paymentId: string) {
  const db = keel.keel.database.db;
  const payment = await db.selectFrom('payments').select(['status', 'amount_received']).where('id', '=', paymentId).executeTakeFirstOrThrow();
  const attempt = await db.selectFrom('payment_attempts').select('status').where('payment_id', '=', paymentId).executeTakeFirstOrThrow();
  const journal = await db.selectFrom('ledger_transactions').select('id').where('payment_id', '=', paymentId).execute();
  const events = await db.selectFrom('outbox').select('type').where('aggregate_id', '=', paymentId).orderBy('id').execute();
  return { payment: payment.status, received: String(payment.amount_received), attempt: attempt.status, journal: journal.length, events: events.map((event) => event.type) };
}

/** A new payment whose partner calls are held while `act` does what another actor would; its answer and ids. */
async function payWhileHeld(act: (ids: { payment: string; attempt: string }) => Promise<void>) {
  const body = paymentBody();
  await holdPartner(700);
  try {
    const request = keel.request('POST', '/v1/payments', { body, idempotencyKey: uniqueKey() });
    let paymentId = '';
    await whileTheChargeIsHeld(
      body.order_id,
      700,
      async (ids) => {
        paymentId = ids.payment;
        await act(ids);
      },
      request,
    );
    return { body, answered: await request, paymentId };
  } finally {
    await releasePartner();
  }
}

describe('the first send\'s guarded last phase', () => {
  test('a holder whose key was taken over while the partner answered records nothing, and is told the key is in use', async () => {
    const { body, answered, paymentId } = await payWhileHeld(async (ids) => {
      // What a retry after the lock timeout does: it takes the key under a lock token of its own.
      await sql`UPDATE idempotency_keys SET lock_token = gen_random_uuid(), locked_at = now() WHERE payment_id = ${ids.payment}`.execute(keel.keel.database.db);
    });
    assert.equal(answered.status, 409, JSON.stringify(answered.body));
    assert.equal(answered.body.error.code, 'idempotency_key_in_use');
    assert.deepEqual(await rowsOf(paymentId), { payment: 'requires_confirmation', received: '0', attempt: 'pending', journal: 0, events: ['payment.created'] }, 'nothing of the answer was recorded by the holder that lost the key');
    assert.equal((await keel.simCharges(body.order_id)).length, 1, 'the partner holds the one charge, for the new holder to find');
  });

  test('an attempt someone else settled while the partner answered is answered as it stands: one capture in the ledger', async () => {
    const { answered, paymentId } = await payWhileHeld(async (ids) => {
      // What the completer's or the janitor's settlement leaves: the attempt and the payment settled, the capture
      // journaled — before this request's own answer is recorded.
      await keel.keel.database.db.transaction().execute(async (trx) => {
        await trx.updateTable('payment_attempts').set({ status: 'succeeded' }).where('id', '=', ids.attempt).execute();
        await trx.updateTable('payments').set({ status: 'succeeded', amount_received: 12000n }).where('id', '=', ids.payment).execute();
        await sql`
          WITH journal AS (INSERT INTO ledger_transactions (id, merchant_id, kind, payment_id) SELECT gen_random_uuid(), merchant_id, 'capture', id FROM payments WHERE id = ${ids.payment} RETURNING id, merchant_id)
          INSERT INTO ledger_entries (transaction_id, merchant_id, account, currency, amount)
          SELECT journal.id, journal.merchant_id, posting.account, 'KRW', posting.amount FROM journal, (VALUES ('partner_receivable:toss', 12000), ('merchant_pending', -12000)) AS posting (account, amount)`.execute(trx);
      });
    });
    assert.equal(answered.status, 200, JSON.stringify(answered.body));
    assert.equal(answered.body.status, 'succeeded');
    const rows = await rowsOf(paymentId);
    assert.equal(rows.journal, 1, 'one capture in the ledger: the answer recorded nothing twice');
    assert.deepEqual([rows.payment, rows.attempt, rows.received], ['succeeded', 'succeeded', '12000']);
    assert.deepEqual(rows.events, ['payment.created'], 'the settlement that got there first wrote its own event (here none); this request wrote none');
  });
});

describe('the first send\'s first phase', () => {
  test('its statements carry the correlation id as a parameter: the key and both events are written with it', async () => {
    const correlationId = `first-send-${Date.now()}`;
    const body = paymentBody();
    const paid = await keel.request('POST', '/v1/payments', { body, idempotencyKey: uniqueKey(), headers: { 'x-correlation-id': correlationId } });
    assert.equal(paid.status, 200);
    const db = keel.keel.database.db;
    const payment = await db.selectFrom('payments').select('id').where('order_id', '=', body.order_id).executeTakeFirstOrThrow();
    const key = await db.selectFrom('idempotency_keys').select('correlation_id').where('payment_id', '=', payment.id).executeTakeFirstOrThrow();
    const events = await db.selectFrom('outbox').select(['type', 'correlation_id']).where('aggregate_id', '=', payment.id).orderBy('id').execute();
    assert.equal(key.correlation_id, correlationId);
    assert.deepEqual(events, [
      { type: 'payment.created', correlation_id: correlationId },
      { type: 'payment.succeeded', correlation_id: correlationId },
    ]);
  });

  test('a taken order id writes nothing, the key included: the same key then pays another order', async () => {
    const first = paymentBody();
    assert.equal((await keel.request('POST', '/v1/payments', { body: first, idempotencyKey: uniqueKey() })).status, 200);
    const key = uniqueKey();
    const before = await keel.countAllRows();
    const taken = await keel.request('POST', '/v1/payments', { body: { ...paymentBody(), order_id: first.order_id }, idempotencyKey: key });
    assert.equal(taken.status, 409);
    assert.equal(taken.body.error.code, 'order_id_taken');
    assert.deepEqual(await keel.countAllRows(), before, 'nothing written');
    const other = await keel.request('POST', '/v1/payments', { body: paymentBody(), idempotencyKey: key });
    assert.equal(other.status, 200, 'the key was never stored');
  });
});
