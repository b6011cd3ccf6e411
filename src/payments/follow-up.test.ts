// Proves the one-statement capture and refund (operations/capture.ts, refund.ts) keep what the transactional
// path guaranteed. Each is two statements a request: its start (`keel_capture_start`, `keel_refund_start`) and
// its settlement. A process death after either phase is resumed by a retry with one capture or refund at the
// partner; while the partner holds the call, a key taken over makes the holder record nothing, and a refund
// settled by someone else is answered as it stands; a start refused (nothing to capture, more than remains to
// refund, no such payment) writes nothing and is answered by the general path's error.
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import { sql } from 'kysely';
import { faultPointNames } from './operations/context.js';
import { statementCounts } from '../storage/commenting-dialect.js';
import { startTestKeel, testCard, uniqueKey, type TestKeel } from '../testing/harness.js';

let keel: TestKeel;
before(async () => {
  // The partner may take up to 1.4 s a call here: a call is held while the test acts.
  keel = await startTestKeel({ config: { partnerHttp: { connectTimeoutMs: 500, readTimeoutMs: 1_400, connectionsMax: 64 } } });
});
after(async () => keel.close());

async function pay(options: { manual?: boolean; amount?: number } = {}) {
  const body = { amount: options.amount ?? 10000, currency: 'KRW', order_id: uniqueKey('ord'), payment_method: testCard(), confirm: true, ...(options.manual === true ? { capture_method: 'manual' } : {}) };
  const paid = await keel.request('POST', '/v1/payments', { body });
  assert.equal(paid.body.status, options.manual === true ? 'requires_capture' : 'succeeded', JSON.stringify(paid.body));
  return { id: paid.body.id as string, orderId: body.order_id };
}

/** Statements the request made (those made while serving it), BEGIN and COMMIT included. */
async function statementsOf<T>(request: () => Promise<T>): Promise<{ answer: T; statements: number }> {
  const before = statementCounts.request;
  const answer = await request();
  return { answer, statements: statementCounts.request - before };
}

/** What a retry after the lock timeout finds: the dead holder's lock has lapsed. */
async function lapseLocks(): Promise<void> {
  await sql`UPDATE idempotency_keys SET locked_at = now() - interval '1 hour' WHERE recovery_point <> 'finished' AND locked_at IS NOT NULL`.execute(keel.keel.database.db);
}

async function holdPartner(ms: number): Promise<void> {
  const response = await fetch(`${keel.keel.gatewayUrl}/__sim/faults`, { method: 'POST', body: JSON.stringify({ mode: 'latency', latency_ms: ms, duration_s: 30 }) });
  assert.equal(response.status, 201);
}

/** Runs `request` with the partner held, and `act` once the operation's attempt is committed and pending. */
async function whileHeld<T>(paymentId: string, operation: 'capture' | 'refund', request: () => Promise<T>, act: (attempt: { id: string; refund_id: string | null }) => Promise<void>): Promise<T> {
  await holdPartner(700);
  try {
    const answer = request();
    const db = keel.keel.database.db;
    const uuid = await db.selectFrom('payments').select('id').where('order_id', '=', (await keel.request('GET', `/v1/payments/${paymentId}`)).body.order_id).executeTakeFirstOrThrow();
    for (;;) {
      const attempt = await db.selectFrom('payment_attempts').select(['id', 'refund_id', 'status']).where('payment_id', '=', uuid.id).where('operation', '=', operation).executeTakeFirst();
      if (attempt !== undefined) {
        assert.equal(attempt.status, 'pending', 'the first phase committed, and the partner has not answered');
        await act(attempt);
        return await answer;
      }
      if (await Promise.race([answer.then(() => true), sleep(10).then(() => false)])) assert.fail('the request ended before its attempt was seen');
    }
  } finally {
    await fetch(`${keel.keel.gatewayUrl}/__sim/faults`, { method: 'DELETE' });
  }
}

describe('a capture and a refund at their cost floor', () => {
  test('each is two statements: its start and its settlement', async () => {
    const authorized = await pay({ manual: true });
    const capture = await statementsOf(() => keel.request('POST', `/v1/payments/${authorized.id}/capture`, { body: { amount: 8000 } }));
    assert.deepEqual([capture.answer.status, capture.answer.body.status, capture.answer.body.amount_received], [200, 'succeeded', 8000]);
    assert.equal(capture.statements, 2);
    const refund = await statementsOf(() => keel.request('POST', '/v1/refunds', { body: { payment: authorized.id, amount: 3000 } }));
    assert.deepEqual([refund.answer.status, refund.answer.body.status, refund.answer.body.amount], [200, 'succeeded', 3000]);
    assert.equal(refund.statements, 2);
    const payment = (await keel.request('GET', `/v1/payments/${authorized.id}`)).body;
    assert.deepEqual([payment.amount_received, payment.amount_refunded], [8000, 3000]);
    const [charge] = await keel.simCharges(authorized.orderId);
    assert.deepEqual([charge?.captured_amount, charge?.refunded_amount], [8000, 3000]);
  });

  test('a start refused writes nothing and is answered by the general path: nothing to capture, more than remains, no such payment', async () => {
    const paid = await pay();
    const before = await keel.countAllRows();
    const capture = await keel.request('POST', `/v1/payments/${paid.id}/capture`, { body: {} });
    assert.deepEqual([capture.status, capture.body.error?.code], [409, 'payment_unexpected_state']);
    const refund = await keel.request('POST', '/v1/refunds', { body: { payment: paid.id, amount: 10001 } });
    assert.deepEqual([refund.status, refund.body.error?.code], [409, 'refund_exceeds_payment']);
    const missing = await keel.request('POST', '/v1/refunds', { body: { payment: 'pay_00000000000000000000000000' } });
    assert.deepEqual([missing.status, missing.body.error?.code], [404, 'resource_missing']);
    assert.deepEqual(await keel.countAllRows(), before, 'no key, refund or attempt left behind');
  });

  for (const point of faultPointNames.filter((name) => name !== 'after_payment_created')) {
    test(`${point}: a retried capture and a retried refund each reach the partner once`, async () => {
      const authorized = await pay({ manual: true });
      const captureKey = uniqueKey();
      keel.keel.faults.arm(point);
      assert.equal((await keel.request('POST', `/v1/payments/${authorized.id}/capture`, { body: {}, idempotencyKey: captureKey })).status, 500);
      assert.equal((await keel.request('POST', `/v1/payments/${authorized.id}/capture`, { body: {}, idempotencyKey: captureKey })).status, 409, 'the dead holder keeps the key until its lock lapses');
      await lapseLocks();
      const captured = await keel.request('POST', `/v1/payments/${authorized.id}/capture`, { body: {}, idempotencyKey: captureKey });
      assert.deepEqual([captured.status, captured.body.status], [200, 'succeeded'], JSON.stringify(captured.body));

      const refundKey = uniqueKey();
      keel.keel.faults.arm(point);
      assert.equal((await keel.request('POST', '/v1/refunds', { body: { payment: authorized.id, amount: 4000 }, idempotencyKey: refundKey })).status, 500);
      await lapseLocks();
      const refunded = await keel.request('POST', '/v1/refunds', { body: { payment: authorized.id, amount: 4000 }, idempotencyKey: refundKey });
      assert.deepEqual([refunded.status, refunded.body.status], [200, 'succeeded'], JSON.stringify(refunded.body));

      const [charge] = await keel.simCharges(authorized.orderId);
      assert.deepEqual([charge?.captured_amount, charge?.refunded_amount], [10000, 4000], 'one capture and one refund at the partner');
      const payment = (await keel.request('GET', `/v1/payments/${authorized.id}`)).body;
      assert.deepEqual([payment.amount_received, payment.amount_refunded], [10000, 4000]);
      const replay = await keel.request('POST', '/v1/refunds', { body: { payment: authorized.id, amount: 4000 }, idempotencyKey: refundKey });
      assert.deepEqual([replay.headers['idempotent-replayed'], replay.body], ['true', refunded.body]);
    });
  }

  test('a capture whose key was taken over while the partner answered records nothing, and is told the key is in use', async () => {
    const authorized = await pay({ manual: true });
    const answered = await whileHeld(authorized.id, 'capture', () => keel.request('POST', `/v1/payments/${authorized.id}/capture`, { body: {} }), async (attempt) => {
      await sql`UPDATE idempotency_keys SET lock_token = gen_random_uuid(), locked_at = now() WHERE attempt_id = ${attempt.id}`.execute(keel.keel.database.db);
    });
    assert.deepEqual([answered.status, answered.body.error?.code], [409, 'idempotency_key_in_use'], JSON.stringify(answered.body));
    const db = keel.keel.database.db;
    const payment = (await keel.request('GET', `/v1/payments/${authorized.id}`)).body;
    assert.deepEqual([payment.status, payment.amount_received], ['requires_capture', 0], 'nothing of the answer was recorded by the holder that lost the key');
    const captures = await db.selectFrom('ledger_transactions').select('id').where('kind', '=', 'capture').where('payment_id', 'in', db.selectFrom('payments').select('id').where('order_id', '=', authorized.orderId)).execute();
    assert.equal(captures.length, 0);
    assert.equal((await keel.simCharges(authorized.orderId))[0]?.captured_amount, 10000, 'the partner holds the capture, for the new holder to find');
  });

  test('a refund someone else settled while the partner answered is answered as it stands: the payment refunded once', async () => {
    const paid = await pay();
    const db = keel.keel.database.db;
    const answered = await whileHeld(paid.id, 'refund', () => keel.request('POST', '/v1/refunds', { body: { payment: paid.id, amount: 2500 } }), async (attempt) => {
      // What the janitor's settlement leaves: the attempt and the refund settled, the payment's refunded amount
      // raised — before this request's own answer is recorded.
      await db.transaction().execute(async (trx) => {
        await trx.updateTable('payment_attempts').set({ status: 'succeeded' }).where('id', '=', attempt.id).execute();
        await trx.updateTable('refunds').set({ status: 'succeeded' }).where('id', '=', attempt.refund_id ?? '').execute();
        await sql`UPDATE payments SET amount_refunded = amount_refunded + 2500 WHERE order_id = ${paid.orderId}`.execute(trx);
      });
    });
    assert.deepEqual([answered.status, answered.body.status, answered.body.amount], [200, 'succeeded', 2500], JSON.stringify(answered.body));
    assert.equal((await keel.request('GET', `/v1/payments/${paid.id}`)).body.amount_refunded, 2500, 'refunded once, not twice');
    const refunds = await db.selectFrom('ledger_transactions').select('id').where('kind', '=', 'refund').where('payment_id', 'in', db.selectFrom('payments').select('id').where('order_id', '=', paid.orderId)).execute();
    assert.equal(refunds.length, 0, 'the settlement that got there first journaled its own (here none); this request journaled none');
  });
});
