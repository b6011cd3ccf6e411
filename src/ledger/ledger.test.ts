// Proves the double-entry ledger: captures (automatic and partial manual) and refunds post balanced journal
// transactions in the same database transaction as the state change; /v1/balance reads them per currency;
// verifyLedger agrees with the payments, and catches an entry changed behind its back and an unbalanced one.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { startTestKeel, testCard, uniqueKey, type TestKeel } from '../testing/harness.js';
import { publicToUuid } from '../storage/ids.js';
import { defaultPayoutDelayDays } from '../simulator/model.js';
import { capturePostings, postTransaction, verifyLedger } from './ledger.js';

let keel: TestKeel;
before(async () => {
  keel = await startTestKeel();
});
after(async () => {
  await keel.close();
});

const pay = (body: Record<string, unknown>, secretKey: string) =>
  keel.request('POST', '/v1/payments', { body: { order_id: uniqueKey('ord'), payment_method: testCard(), confirm: true, ...body }, secretKey });

test('balances follow captures and refunds, per currency, and the ledger verifies', async () => {
  const merchant = await keel.createMerchant({ name: 'Ledgered', partners: [{ gateway: 'toss' }, { gateway: 'stripe' }] });
  await pay({ amount: 30000, currency: 'KRW' }, merchant.secret_key);
  const manual = await pay({ amount: 20000, currency: 'KRW', capture_method: 'manual' }, merchant.secret_key);
  await keel.request('POST', `/v1/payments/${manual.body.id}/capture`, { body: { amount: 15000 }, secretKey: merchant.secret_key });
  const usd = await pay({ amount: 1999, currency: 'USD' }, merchant.secret_key);
  await keel.request('POST', '/v1/refunds', { body: { payment: usd.body.id, amount: 500 }, secretKey: merchant.secret_key });
  await pay({ amount: 5000, currency: 'KRW', payment_method: testCard('4000000000000002') }, merchant.secret_key);

  const balance = await keel.request('GET', '/v1/balance', { secretKey: merchant.secret_key });
  assert.equal(balance.status, 200);
  assert.deepEqual(balance.body, {
    object: 'balance',
    pending: [
      { amount: 45000, currency: 'KRW' },
      { amount: 1499, currency: 'USD' },
    ],
    available: [],
  });
  const report = await verifyLedger(keel.keel.database.db);
  assert.deepEqual(report.unbalanced, []);
  assert.deepEqual(report.differences, []);
  assert.equal(report.transactions >= 4, true);
});

test('every transaction sums to zero before it is written', async () => {
  await assert.rejects(
    keel.keel.database.db.transaction().execute((trx) =>
      postTransaction(trx, { merchantId: '00000000-0000-7000-8000-000000000000', currency: 'KRW', kind: 'capture', postings: [{ account: 'merchant_pending', amount: -5n }] }),
    ),
    /sum to zero/,
  );
  assert.deepEqual(capturePostings('toss', 10n).reduce((sum, posting) => sum + posting.amount, 0n), 0n);
});

test('verify catches an entry changed behind the journal\'s back', async () => {
  const merchant = await keel.createMerchant({ name: 'Tampered' });
  await pay({ amount: 7000, currency: 'KRW' }, merchant.secret_key);
  const entry = await keel.keel.database.db.selectFrom('ledger_entries').select('id').where('account', '=', 'merchant_pending').orderBy('id', 'desc').executeTakeFirstOrThrow();
  await keel.keel.database.db.updateTable('ledger_entries').set({ amount: -6000n }).where('id', '=', entry.id).execute();
  const report = await verifyLedger(keel.keel.database.db);
  assert.equal(report.unbalanced.length, 1);
  assert.equal(report.differences.length, 1);
  assert.deepEqual([report.differences[0]?.journal, report.differences[0]?.payments], ['6000', '7000']);
});

/** Runs `work` while the benchmark gateway pays every row out the day it happens. */
async function paidOutAtOnce<T>(work: () => Promise<T>): Promise<T> {
  const setDelay = (days: number) => fetch(`${keel.keel.gatewayUrl}/__sim/payouts`, { method: 'POST', body: JSON.stringify({ delay_days: days }) });
  await setDelay(0);
  try {
    return await work();
  } finally {
    await setDelay(defaultPayoutDelayDays);
  }
}

test('importing the partner\'s settlement report moves pending to available less fees, once', async () => {
  const merchant = await keel.createMerchant({ name: 'Settled' });
  await pay({ amount: 40000, currency: 'KRW' }, merchant.secret_key);
  await pay({ amount: 20000, currency: 'KRW' }, merchant.secret_key);
  const today = new Date().toISOString().slice(0, 10);
  const run = () =>
    keel.request('POST', '/admin/settlements/import', { body: { start_date: today, end_date: today }, secretKey: null, idempotencyKey: null, headers: { authorization: `Bearer ${keel.keel.services.adminToken}` } });
  // The partner pays a sale out two days after it: until then the rows wait, and nothing moves.
  const early = (await run()).body.data.find((row: { merchant: string }) => row.merchant === merchant.id);
  assert.deepEqual([early.settled, early.pending], [0, 2]);
  assert.deepEqual((await keel.request('GET', '/v1/balance', { secretKey: merchant.secret_key })).body.pending, [{ amount: 60000, currency: 'KRW' }]);
  const first = await paidOutAtOnce(run);
  assert.equal(first.status, 200, JSON.stringify(first.body));
  const mine = first.body.data.find((row: { merchant: string }) => row.merchant === merchant.id);
  assert.deepEqual([mine.settled, mine.already_settled, mine.unmatched, mine.pending], [2, 0, 0, 0]);
  const again = (await paidOutAtOnce(run)).body.data.find((row: { merchant: string }) => row.merchant === merchant.id);
  assert.deepEqual([again.settled, again.already_settled], [0, 2], 'a second import records nothing');
  // What the partner held is discharged into what it has settled.
  const accounts = await keel.keel.database.db
    .selectFrom('ledger_entries')
    .select(['account', (eb) => eb.fn.sum<string>('amount').as('total')])
    .where('merchant_id', '=', publicToUuid('merchant', merchant.id) ?? '')
    .where('account', 'like', 'partner_%')
    .groupBy('account')
    .orderBy('account')
    .execute();
  assert.deepEqual(accounts.map((row) => [row.account, Number(row.total)]), [['partner_receivable:toss', 0], ['partner_settled:toss', 60000]]);
  const balance = await keel.request('GET', '/v1/balance', { secretKey: merchant.secret_key });
  // Fees are 2.5% plus 10% VAT on the fee: 1,100 on 40,000 and 550 on 20,000.
  assert.deepEqual(balance.body.pending, [{ amount: 0, currency: 'KRW' }]);
  assert.deepEqual(balance.body.available, [{ amount: 40000 - 1100 + 20000 - 550, currency: 'KRW' }]);
  // The ledger still verifies for this merchant (the test above tampered with another merchant's entry).
  const report = await verifyLedger(keel.keel.database.db);
  const merchantUuid = publicToUuid('merchant', merchant.id);
  assert.deepEqual(report.differences.filter((difference) => difference.merchant === merchantUuid), []);
  const settlements = await keel.keel.database.db.selectFrom('ledger_transactions').select('id').where('merchant_id', '=', merchantUuid ?? '').where('kind', '=', 'settlement').execute();
  assert.equal(settlements.length, 2);
  assert.equal(report.unbalanced.some((id) => settlements.some((settlement) => settlement.id === id)), false);
});

const importSettlements = (day: string) =>
  paidOutAtOnce(() => keel.request('POST', '/admin/settlements/import', { body: { start_date: day, end_date: day }, secretKey: null, idempotencyKey: null, headers: { authorization: `Bearer ${keel.keel.services.adminToken}` } }));

for (const gateway of ['toss', 'stripe'] as const) {
  test(`${gateway}: a refund comes out of the payout, leaving nothing pending and the ledger verifying`, async () => {
    const merchant = await keel.createMerchant({ name: `Refunded ${gateway}`, gateway });
    const currency = gateway === 'toss' ? 'KRW' : 'USD';
    const sold = await pay({ amount: 40000, currency }, merchant.secret_key);
    assert.equal(sold.body.gateway, gateway);
    await pay({ amount: 1999, currency }, merchant.secret_key);
    assert.equal((await keel.request('POST', '/v1/refunds', { body: { payment: sold.body.id, amount: 10000 }, secretKey: merchant.secret_key })).status, 200);

    const today = new Date().toISOString().slice(0, 10);
    const first = await importSettlements(today);
    assert.equal(first.status, 200, JSON.stringify(first.body));
    const mine = first.body.data.find((row: { merchant: string }) => row.merchant === merchant.id);
    assert.deepEqual([mine.gateway, mine.settled, mine.already_settled, mine.unmatched, mine.pending], [gateway, 3, 0, 0, 0], 'two sales and a refund');
    const again = (await importSettlements(today)).body.data.find((row: { merchant: string }) => row.merchant === merchant.id);
    assert.deepEqual([again.settled, again.already_settled], [0, 3]);

    // Toss: 2.5% plus 10% VAT on the fee. Stripe (benchmark gateway): 2.9% plus 30 cents.
    const fee = (amount: number) => (gateway === 'toss' ? Math.round(amount * 0.025) + Math.round(Math.round(amount * 0.025) * 0.1) : Math.round(amount * 0.029) + 30);
    const balance = await keel.request('GET', '/v1/balance', { secretKey: merchant.secret_key });
    assert.deepEqual(balance.body.pending, [{ amount: 0, currency }]);
    assert.deepEqual(balance.body.available, [{ amount: 40000 - fee(40000) + 1999 - fee(1999) - 10000, currency }]);
    const merchantUuid = publicToUuid('merchant', merchant.id);
    const report = await verifyLedger(keel.keel.database.db);
    assert.deepEqual(report.differences.filter((difference) => difference.merchant === merchantUuid), []);
  });
}
