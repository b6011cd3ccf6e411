// Proves the payments read model (projections): payments, declines, manual captures, cancels and refunds
// reach GET /v1/reports/payments through the outbox, the bus and the projections consumer; events delivered
// again or in another order count once and the same; a rebuild from the outbox gives the same report; reports
// are per merchant; bad periods and groupings are refused with the catalogue's error.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { toKeelEvent } from '../events/relay.js';
import { newId } from '../storage/ids.js';
import { startTestKeel, testCard, uniqueKey, type TestKeel, type TestResponse } from '../testing/harness.js';
import { projectionConsumer, projectionsConsumer } from './projection.js';

let keel: TestKeel;
before(async () => {
  keel = await startTestKeel();
});
after(async () => {
  await keel.close();
});

async function relayAll(): Promise<void> {
  while ((await keel.keel.jobs.relay()) > 0);
}

const today = () => new Date().toISOString().slice(0, 10);

function report(secretKey: string, query = ''): Promise<TestResponse> {
  return keel.request('GET', `/v1/reports/payments?start_date=${today()}&end_date=${today()}${query}`, { secretKey });
}

/** The merchant's traffic: two approvals (one in USD), a decline, a manual capture, a cancel and a refund. */
async function trafficFor(secretKey: string): Promise<void> {
  const pay = (body: Record<string, unknown>) =>
    keel.request('POST', '/v1/payments', { body: { amount: 10000, currency: 'KRW', order_id: uniqueKey('ord'), payment_method: testCard(), confirm: true, ...body }, secretKey });
  const approved = await pay({});
  assert.equal(approved.body.status, 'succeeded');
  assert.equal((await pay({ amount: 2500, currency: 'USD', country: 'US' })).body.status, 'succeeded');
  assert.equal((await pay({ payment_method: testCard('4000000000009995') })).status, 402);
  const manual = await pay({ amount: 7000, capture_method: 'manual' });
  assert.equal((await keel.request('POST', `/v1/payments/${manual.body.id}/capture`, { body: { amount: 6000 }, secretKey })).body.status, 'succeeded');
  const toCancel = await pay({ capture_method: 'manual' });
  assert.equal((await keel.request('POST', `/v1/payments/${toCancel.body.id}/cancel`, { body: {}, secretKey })).body.status, 'canceled');
  const refund = await keel.request('POST', '/v1/refunds', { body: { payment: approved.body.id, amount: 4000 }, secretKey });
  assert.equal(refund.body.status, 'succeeded');
}

describe('payments report', () => {
  let merchant: { secret_key: string };
  let counted: TestResponse;

  before(async () => {
    merchant = await keel.createMerchant({ name: 'Reported', partners: [{ gateway: 'toss' }, { gateway: 'stripe' }] });
    await trafficFor(merchant.secret_key);
  });

  test('counts nothing until the events are relayed, and says how fresh it is', async () => {
    const before = await report(merchant.secret_key);
    assert.equal(before.status, 200);
    assert.deepEqual(before.body.data, []);
    assert.ok(Date.parse(before.body.as_of) <= Date.now(), 'as_of is the oldest event still waiting');
    await relayAll();
    counted = await report(merchant.secret_key);
    assert.ok(Date.now() - Date.parse(counted.body.as_of) < 60_000, 'as_of is recent once every event is counted');
  });

  test('counts outcomes, amounts, approval rates and failure codes by day and currency', () => {
    assert.equal(counted.status, 200);
    assert.equal(counted.body.object, 'payment_report');
    assert.deepEqual(counted.body.group_by, []);
    assert.deepEqual(counted.body.data, [
      {
        object: 'payment_report_row',
        day: today(),
        currency: 'KRW',
        created: 4,
        authorized: 3,
        failed: 1,
        not_sent: 0,
        canceled: 1,
        captured: 2,
        amount_captured: 16000,
        refunds: 1,
        amount_refunded: 4000,
        approval_rate: 0.75,
        failure_codes: { insufficient_funds: 1 },
      },
      {
        object: 'payment_report_row',
        day: today(),
        currency: 'USD',
        created: 1,
        authorized: 1,
        failed: 0,
        not_sent: 0,
        canceled: 0,
        captured: 1,
        amount_captured: 2500,
        refunds: 0,
        amount_refunded: 0,
        approval_rate: 1,
        failure_codes: {},
      },
    ]);
  });

  test('splits by country and partner', async () => {
    const split = await report(merchant.secret_key, '&group_by=country,gateway');
    assert.equal(split.status, 200);
    const rows = split.body.data.map((row: Record<string, unknown>) => [row['currency'], row['country'], row['gateway'], row['created'], row['authorized'], row['failed']]);
    assert.deepEqual(rows, [
      ['KRW', 'KR', 'toss', 4, 3, 1],
      ['USD', 'US', 'stripe', 1, 1, 0],
    ]);
  });

  test('an event delivered again, or events in another order, count once and the same', async () => {
    const db = keel.keel.database.db;
    const merchantRows = await db.selectFrom('outbox').selectAll().orderBy('id').execute();
    for (const row of merchantRows) await keel.keel.bus.publish(toKeelEvent(row));
    assert.deepEqual((await report(merchant.secret_key)).body.data, counted.body.data);

    // Start the model over and feed the same events newest first, as parallel consumers may.
    await db.deleteFrom('report_payment_failures').execute();
    await db.deleteFrom('report_payments_daily').execute();
    await db.deleteFrom('inbox').where('consumer', '=', projectionConsumer).execute();
    const consume = projectionsConsumer(keel.keel.database, keel.keel.logger);
    for (const row of [...merchantRows].reverse()) await consume(toKeelEvent(row));
    assert.deepEqual((await report(merchant.secret_key)).body.data, counted.body.data);
  });

  test('a rebuild from the outbox gives the same report, and the live consumer then skips what it counted', async () => {
    const refused = await keel.request('POST', '/admin/projections/rebuild', { secretKey: merchant.secret_key });
    assert.equal(refused.status, 401);
    await keel.keel.database.db.deleteFrom('report_payments_daily').execute();
    const rebuilt = await keel.request('POST', '/admin/projections/rebuild', { secretKey: null, headers: { authorization: `Bearer ${keel.keel.services.adminToken}` } });
    assert.equal(rebuilt.status, 200);
    assert.equal(rebuilt.body.object, 'projection_rebuild');
    assert.ok(rebuilt.body.events_replayed >= 12, `replayed ${rebuilt.body.events_replayed}`);
    assert.deepEqual((await report(merchant.secret_key)).body.data, counted.body.data);
    const rows = await keel.keel.database.db.selectFrom('outbox').selectAll().execute();
    for (const row of rows) await keel.keel.bus.publish(toKeelEvent(row));
    assert.deepEqual((await report(merchant.secret_key)).body.data, counted.body.data);
  });

  test('a rebuild racing the live consumer counts every event once', async () => {
    const racer = await keel.createMerchant({ name: 'Raced', partners: [{ gateway: 'toss' }, { gateway: 'stripe' }] });
    await trafficFor(racer.secret_key);
    const admin = { secretKey: null, headers: { authorization: `Bearer ${keel.keel.services.adminToken}` } };
    const [rebuilt] = await Promise.all([keel.request('POST', '/admin/projections/rebuild', admin), relayAll()]);
    assert.equal(rebuilt.status, 200);
    await relayAll();
    assert.deepEqual((await report(racer.secret_key)).body.data, counted.body.data);
  });

  test('a malformed event is logged and left out, never retried forever', async () => {
    const consume = projectionsConsumer(keel.keel.database, keel.keel.logger);
    const before = (await report(merchant.secret_key)).body.data;
    const malformed = { id: newId('event').publicId, type: 'payment.succeeded', created_at: new Date().toISOString(), merchant: keel.merchant.id, correlation_id: null, data: { object: { id: 'pay_x' } } };
    await consume(malformed);
    assert.ok(keel.logs.some((line) => line.includes('event left out of the read model') && line.includes(malformed.id)));
    assert.deepEqual((await report(merchant.secret_key)).body.data, before);
  });

  test('reports are the merchant\'s own', async () => {
    const other = await keel.createMerchant({ name: 'Quiet' });
    const empty = await report(other.secret_key);
    assert.equal(empty.status, 200);
    assert.deepEqual(empty.body.data, []);
  });
});

describe('report parameters', () => {
  const cases: [string, string][] = [
    ['start_date=2026-02-30&end_date=2026-03-01', 'start_date'],
    ['start_date=2026-03-02&end_date=2026-03-01', 'start_date'],
    ['start_date=2024-01-01&end_date=2026-01-01', 'start_date'],
    ['end_date=yesterday', 'end_date'],
    ['group_by=merchant', 'group_by'],
  ];
  for (const [query, param] of cases) {
    test(`refuses ${query}`, async () => {
      const response = await keel.request('GET', `/v1/reports/payments?${query}`);
      assert.equal(response.status, 400);
      assert.equal(response.body.error.code, 'parameter_invalid');
      assert.equal(response.body.error.param, param);
    });
  }

  test('defaults to the last 30 days by day and currency; needs a secret key', async () => {
    const response = await keel.request('GET', '/v1/reports/payments');
    assert.equal(response.status, 200);
    assert.equal(response.body.end_date, today());
    assert.equal((Date.parse(response.body.end_date) - Date.parse(response.body.start_date)) / 86_400_000, 29);
    assert.equal((await keel.request('GET', '/v1/reports/payments', { secretKey: null })).status, 401);
  });
});
