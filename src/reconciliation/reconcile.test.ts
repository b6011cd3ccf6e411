// Proves a reconciliation run against the benchmark gateway's own records, drifted through its hooks: a clean
// payment matches; another amount is AmountMismatch; a second charge for an order is one DuplicateCharge (never
// also MissingLocally); a charge no payment made is MissingLocally; a payment the partner has no record of is
// MissingAtPartner; a Stripe hold the partner captured, and a capture the partner never made, are
// MismatchCaptureStatus — each once, with Keel's side and the partner's; a second run of the day opens nothing;
// the workers' daily run reconciles the previous UTC day once KEEL_RECONCILE_AT has passed, and only once; a
// StuckProcessing the partner now answers is resolved automatically, with its ledger entries, charging nothing again.
// In aggregate, the ledger's receivable at the partner against what the partner holds unpaid (its reports of the
// day and the payout window before it) is BalanceMismatch when they differ, as for an entry the ledger gained; a
// run books the rows the partner has paid out, after which both sides agree.
import assert from 'node:assert/strict';
import { sql } from 'kysely';
import { after, before, test } from 'node:test';
import { startTestKeel, testCard, uniqueKey, type TestKeel } from '../testing/harness.js';
import { capturePostings, postTransaction, verifyLedger } from '../ledger/ledger.js';
import { publicToUuid } from '../storage/ids.js';
import { formatContractFee, parseContractFee } from '../merchants/merchants.js';
import { contractFee, standardFees } from './reconcile.js';

let keel: TestKeel;
before(async () => {
  keel = await startTestKeel();
});
after(async () => {
  await keel.close();
});

const today = new Date().toISOString().slice(0, 10);
const admin = (method: 'GET' | 'POST', path: string, body?: unknown) =>
  keel.request(method, path, { ...(body === undefined ? {} : { body }), secretKey: null, idempotencyKey: null, headers: { authorization: `Bearer ${keel.keel.services.adminToken}` } });
const sim = (path: string, body: unknown) => fetch(`${keel.keel.gatewayUrl}${path}`, { method: 'POST', body: JSON.stringify(body) }).then((response) => response.status);

async function pay(secretKey: string, extra: Record<string, unknown> = {}): Promise<{ id: string; orderId: string }> {
  const orderId = uniqueKey('ord');
  const paid = await keel.request('POST', '/v1/payments', { secretKey, body: { amount: 10000, currency: 'KRW', order_id: orderId, payment_method: testCard(), confirm: true, ...extra } });
  assert.ok(paid.status === 200, JSON.stringify(paid.body));
  return { id: paid.body.id, orderId };
}

async function anomaliesOf(secretKey: string): Promise<Record<string, unknown>[]> {
  return (await keel.request('GET', '/v1/anomalies?limit=100', { secretKey })).body.data;
}

test('each drift is found once, typed, with both sides; a clean payment matches; a second run opens nothing', async () => {
  const shop = await keel.createMerchant({ name: 'Reconciled', gateway: 'toss', partnerSecretKey: 'test_sk_recon_toss' });
  const clean = await pay(shop.secret_key);
  const drifted = await pay(shop.secret_key);
  const doubled = await pay(shop.secret_key);
  const vanished = await pay(shop.secret_key);
  assert.equal(await sim('/__sim/drift', { order_id: drifted.orderId, kind: 'amount', amount: 9000 }), 200);
  assert.equal(await sim('/__sim/drift', { order_id: doubled.orderId, kind: 'duplicate' }), 200);
  assert.equal(await sim('/__sim/drift', { order_id: vanished.orderId, kind: 'missing' }), 200);
  const orphanOrder = uniqueKey('orphan');
  assert.equal(await sim('/__sim/charges', { order_id: orphanOrder, amount: 4000, currency: 'KRW', country: 'KR', dialect: 'toss', secret_key: 'test_sk_recon_toss' }), 201);

  const run = await admin('POST', '/admin/reconciliation/runs', { gateway: 'toss', date: today, merchant: shop.id });
  assert.equal(run.status, 200, JSON.stringify(run.body));
  assert.match(run.body.id, /^recon_/);
  // Matched: the clean payment, and the doubled order's own charge (its second charge is the anomaly).
  assert.deepEqual([run.body.status, run.body.anomalies_opened, run.body.matched], ['succeeded', 5, 2]);

  const found = await anomaliesOf(shop.secret_key);
  const byType = Object.fromEntries(found.map((anomaly) => [anomaly['type'], anomaly]));
  assert.deepEqual(Object.keys(byType).sort(), ['AmountMismatch', 'BalanceMismatch', 'DuplicateCharge', 'MissingAtPartner', 'MissingLocally']);
  // In aggregate: the ledger says the partner holds the four payments, 40,000, not paid out yet; the partner
  // holds 10,000 + 9,000 + twice 10,000 + the orphan's 4,000, and nothing for the vanished payment.
  assert.deepEqual([byType['BalanceMismatch']?.['payment'], byType['BalanceMismatch']?.['expected'], byType['BalanceMismatch']?.['actual']], [
    null,
    { amount: 40000, currency: 'KRW' },
    { amount: 43000, currency: 'KRW' },
  ]);
  assert.deepEqual([byType['AmountMismatch']?.['payment'], byType['AmountMismatch']?.['expected'], byType['AmountMismatch']?.['actual']], [
    drifted.id,
    { amount: 10000, currency: 'KRW', status: 'succeeded' },
    { amount: 9000, currency: 'KRW', status: 'succeeded' },
  ]);
  assert.deepEqual([byType['DuplicateCharge']?.['order_id'], byType['DuplicateCharge']?.['actual']], [doubled.orderId, { amount: 20000, currency: 'KRW', status: 'succeeded', charges: 2 }]);
  assert.deepEqual([byType['MissingAtPartner']?.['payment'], byType['MissingAtPartner']?.['actual']], [vanished.id, null]);
  assert.deepEqual([byType['MissingLocally']?.['order_id'], byType['MissingLocally']?.['expected'], byType['MissingLocally']?.['actual']], [orphanOrder, null, { amount: 4000, currency: 'KRW', status: 'succeeded' }]);
  assert.ok(!found.some((anomaly) => anomaly['payment'] === clean.id), 'the clean payment matched');

  const again = await admin('POST', '/admin/reconciliation/runs', { gateway: 'toss', date: today, merchant: shop.id });
  assert.equal(again.body.anomalies_opened, 0);
  assert.equal((await anomaliesOf(shop.secret_key)).length, 5, 'nothing opened twice');
  const runs = await admin('GET', '/admin/reconciliation/runs');
  assert.deepEqual(runs.body.data.slice(0, 2).map((listed: { id: string }) => listed.id), [again.body.id, run.body.id]);
});

test('with Stripe, a hold the partner captured and a capture the partner never made are MismatchCaptureStatus', async () => {
  const shop = await keel.createMerchant({ name: 'Reconciled Stripe', gateway: 'stripe', country: 'US', partnerSecretKey: 'sk_test_recon_stripe' });
  const held = await pay(shop.secret_key, { capture_method: 'manual' });
  const captured = await pay(shop.secret_key);
  assert.equal(await sim('/__sim/drift', { order_id: held.orderId, kind: 'captured' }), 200);
  assert.equal(await sim('/__sim/drift', { order_id: captured.orderId, kind: 'uncaptured' }), 200);
  const run = await admin('POST', '/admin/reconciliation/runs', { gateway: 'stripe', date: today, merchant: shop.id });
  assert.equal(run.body.status, 'succeeded', JSON.stringify(run.body));
  const found = await anomaliesOf(shop.secret_key);
  const byPayment = Object.fromEntries(found.map((anomaly) => [anomaly['payment'], anomaly]));
  assert.deepEqual([byPayment[held.id]?.['type'], byPayment[held.id]?.['expected'], byPayment[held.id]?.['actual']], [
    'MismatchCaptureStatus',
    { amount: 0, currency: 'KRW', status: 'requires_capture' },
    { amount: 10000, currency: 'KRW', status: 'succeeded' },
  ]);
  assert.deepEqual([byPayment[captured.id]?.['type'], byPayment[captured.id]?.['actual']], ['MismatchCaptureStatus', { amount: 0, currency: 'KRW', status: 'requires_capture' }]);
  assert.equal(found.length, 2);
});

test('a run needs a day and a known partner; another run of the same partner and day waits for the first', async () => {
  assert.equal((await admin('POST', '/admin/reconciliation/runs', { gateway: 'paypal', date: today })).status, 400);
  assert.equal((await admin('POST', '/admin/reconciliation/runs', { gateway: 'toss', date: 'yesterday' })).status, 400);
  const [first, second] = await Promise.all([
    admin('POST', '/admin/reconciliation/runs', { gateway: 'toss', date: '2026-01-01' }),
    admin('POST', '/admin/reconciliation/runs', { gateway: 'toss', date: '2026-01-01' }),
  ]);
  const statuses = [first.status, second.status].sort();
  assert.ok(statuses[0] === 200, JSON.stringify([first.body, second.body]));
  // Either they ran one after the other (both 200), or the second found the first running (409).
  if (statuses[1] === 409) assert.equal((first.status === 409 ? first : second).body.error.code, 'reconciliation_in_progress');
});

test('workers reconcile the previous UTC day with each partner once KEEL_RECONCILE_AT has passed, once', async () => {
  assert.equal(keel.keel.services.config.reconcileAt, '02:00');
  assert.deepEqual(await keel.keel.jobs.reconcile(new Date('2030-06-02T01:59:00Z')), [], 'not yet');
  const runs = await keel.keel.jobs.reconcile(new Date('2030-06-02T02:00:00Z'));
  assert.deepEqual(runs.map((run) => [run.gateway, run.day, run.merchant_id, run.status]).sort(), [
    ['stripe', '2030-06-01', null, 'succeeded'],
    ['toss', '2030-06-01', null, 'succeeded'],
  ]);
  assert.deepEqual(await keel.keel.jobs.reconcile(new Date('2030-06-02T05:00:00Z')), [], 'a day is reconciled once');
});

test('a StuckProcessing the partner now answers is resolved automatically, by the partner\'s word, with its ledger entries', async () => {
  const shop = await keel.createMerchant({ name: 'Stuck Then Settled', gateway: 'toss', partnerSecretKey: 'test_sk_recon_stuck' });
  const orderId = uniqueKey('ord');
  const paid = await keel.request('POST', '/v1/payments', { secretKey: shop.secret_key, body: { amount: 6000, currency: 'KRW', order_id: orderId, payment_method: testCard('4000000000000259'), confirm: true } });
  assert.equal(paid.status, 202, JSON.stringify(paid.body));
  const paymentId = publicToUuid('payment', paid.body.id) ?? '';
  // Sent three days ago (as far as Keel's records go): the capture it finally settles belongs to that day.
  const sentOn = new Date(Date.now() - 3 * 86_400_000);
  await keel.keel.database.db.updateTable('payment_attempts').set({ inquiry_count: 20, next_inquiry_at: new Date(Date.now() - 1_000), created_at: sentOn }).where('payment_id', '=', paymentId).execute();
  await keel.keel.jobs.janitor();
  assert.equal((await anomaliesOf(shop.secret_key))[0]?.['status'], 'open');

  const run = await admin('POST', '/admin/reconciliation/runs', { gateway: 'toss', date: today, merchant: shop.id });
  assert.deepEqual([run.body.status, run.body.anomalies_resolved, run.body.anomalies_opened, run.body.matched], ['succeeded', 1, 0, 1]);
  const [anomaly] = await anomaliesOf(shop.secret_key);
  assert.equal(anomaly?.['status'], 'resolved');
  assert.deepEqual(anomaly?.['resolution'], { kind: 'auto', action: 'the partner answered: the authorize is succeeded, the payment succeeded', note: null });
  assert.equal((await keel.request('GET', `/v1/payments/${paid.body.id}`, { secretKey: shop.secret_key })).body.status, 'succeeded');
  assert.equal((await keel.simCharges(orderId)).length, 1, 'nothing was charged again');
  const capture = await keel.keel.database.db.selectFrom('ledger_transactions').select(sql<string>`to_char(effective_date, 'YYYY-MM-DD')`.as('day')).where('payment_id', '=', paymentId).where('kind', '=', 'capture').executeTakeFirst();
  assert.equal(capture?.day, sentOn.toISOString().slice(0, 10));
  const verified = await verifyLedger(keel.keel.database.db);
  assert.deepEqual([verified.unbalanced, verified.differences], [[], []]);
});

test('the day\'s refunds are compared per payment: another total at the partner is RefundMismatch', async () => {
  const shop = await keel.createMerchant({ name: 'Refunded', gateway: 'toss', partnerSecretKey: 'test_sk_recon_refunds' });
  const agreed = await pay(shop.secret_key);
  const disputed = await pay(shop.secret_key);
  for (const payment of [agreed, disputed]) {
    const refund = await keel.request('POST', '/v1/refunds', { secretKey: shop.secret_key, body: { payment: payment.id, amount: 3000 } });
    assert.equal(refund.status, 200, JSON.stringify(refund.body));
  }
  // The partner's total refunded for the disputed order becomes 5000: it shows a refund Keel never made.
  assert.equal(await sim('/__sim/drift', { order_id: disputed.orderId, kind: 'refund', amount: 5000 }), 200);
  const run = await admin('POST', '/admin/reconciliation/runs', { gateway: 'toss', date: today, merchant: shop.id });
  assert.equal(run.body.anomalies_opened, 2, JSON.stringify(run.body));
  const byType = Object.fromEntries((await anomaliesOf(shop.secret_key)).map((anomaly) => [anomaly['type'], anomaly]));
  const refund = byType['RefundMismatch'];
  assert.deepEqual([refund?.['payment'], refund?.['expected'], refund?.['actual']], [
    disputed.id,
    { amount: 3000, currency: 'KRW', status: 'succeeded' },
    { amount: 5000, currency: 'KRW', status: 'succeeded' },
  ]);
  // The ledger: 20,000 captured less 6,000 refunded; the partner holds 2,000 less, refunded to the shopper.
  assert.deepEqual([byType['BalanceMismatch']?.['expected'], byType['BalanceMismatch']?.['actual']], [{ amount: 14000, currency: 'KRW' }, { amount: 12000, currency: 'KRW' }]);
  assert.equal((await admin('POST', '/admin/reconciliation/runs', { gateway: 'toss', date: today, merchant: shop.id })).body.anomalies_opened, 0);
});

test('a settlement fee other than the contract rate is FeeMismatch, with the fee the contract says and the fee taken', async () => {
  const shop = await keel.createMerchant({ name: 'Fee Checked', gateway: 'toss', partnerSecretKey: 'test_sk_recon_fees' });
  const fair = await pay(shop.secret_key);
  const overcharged = await pay(shop.secret_key);
  // 2.5% of 10,000 is 250, plus 10% VAT: 275 by contract; the partner takes 990.
  assert.equal(await sim('/__sim/drift', { order_id: overcharged.orderId, kind: 'fee', amount: 990 }), 200);
  const run = await admin('POST', '/admin/reconciliation/runs', { gateway: 'toss', date: today, merchant: shop.id });
  assert.deepEqual([run.body.anomalies_opened, run.body.matched], [1, 1]);
  const [anomaly] = await anomaliesOf(shop.secret_key);
  assert.deepEqual([anomaly?.['type'], anomaly?.['payment'], anomaly?.['expected'], anomaly?.['actual']], [
    'FeeMismatch',
    overcharged.id,
    { amount: 275, currency: 'KRW', status: 'succeeded' },
    { amount: 990, currency: 'KRW', status: 'succeeded' },
  ]);
  assert.ok(!(await anomaliesOf(shop.secret_key)).some((found) => found['payment'] === fair.id));
});

test("a merchant's negotiated fee is the contract the settled fees are checked against", async () => {
  const created = await admin('POST', '/admin/merchants', { name: 'Negotiated', gateway: 'toss', toss_secret_key: 'test_sk_recon_negotiated', toss_fee: '2%' });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  // The partner takes its standard 2.5% + VAT (275); the shop's contract says 2% + VAT: 220.
  const charged = await pay(created.body.secret_key);
  const run = await admin('POST', '/admin/reconciliation/runs', { gateway: 'toss', date: today, merchant: created.body.id });
  assert.deepEqual([run.body.anomalies_opened, run.body.matched], [1, 0]);
  const [anomaly] = await anomaliesOf(created.body.secret_key);
  assert.deepEqual([anomaly?.['type'], anomaly?.['payment'], anomaly?.['expected'], anomaly?.['actual']], [
    'FeeMismatch',
    charged.id,
    { amount: 220, currency: 'KRW', status: 'succeeded' },
    { amount: 275, currency: 'KRW', status: 'succeeded' },
  ]);

  // The contract is corrected to what the partner charges: the next sale matches.
  const updated = await admin('POST', `/admin/merchants/${created.body.id}`, { toss_fee: '2.5%' });
  assert.deepEqual(updated.body.partners, [{ gateway: 'toss', configured: true, contract_fee: '2.5%' }]);
  const next = await pay(created.body.secret_key);
  const again = await admin('POST', '/admin/reconciliation/runs', { gateway: 'toss', date: today, merchant: created.body.id });
  assert.deepEqual([again.body.anomalies_opened, again.body.matched], [0, 2]);
  assert.ok(!(await anomaliesOf(created.body.secret_key)).some((found) => found['payment'] === next.id));

  for (const [body, param] of [[{ toss_fee: '2.555%' }, 'toss_fee'], [{ stripe_fee: '2.9%+30' }, 'stripe_fee']] as const) {
    const refused = await admin('POST', `/admin/merchants/${created.body.id}`, body);
    assert.deepEqual([refused.status, refused.body.error?.code, refused.body.error?.param], [400, 'parameter_invalid', param], JSON.stringify(refused.body));
  }
});

test('a written contract fee reads as basis points and fixed minor units, and writes back the same', () => {
  assert.deepEqual(parseContractFee('2.5%'), { rateBps: 250, fixed: 0n });
  assert.deepEqual(parseContractFee('2.9% + 30'), { rateBps: 290, fixed: 30n });
  assert.deepEqual(parseContractFee('0.35%'), { rateBps: 35, fixed: 0n });
  assert.equal(parseContractFee('2.555%'), undefined);
  assert.equal(parseContractFee('-1%'), undefined);
  assert.deepEqual(['2.5%', '2.9%+30', '0.35%', '3%'].map((text) => formatContractFee(parseContractFee(text) ?? { rateBps: -1, fixed: 0n })), ['2.5%', '2.9%+30', '0.35%', '3%']);
  assert.equal(contractFee({ rateBps: 270, fixed: 30n, vatPercent: 0 }, 10_000n, 'USD'), 300n);
});

test('the contract fee is computed in integers, rounding halves up as the partners do', () => {
  assert.equal(contractFee(standardFees.toss, 10_000n, 'KRW'), 275n);
  assert.equal(contractFee(standardFees.toss, 20n, 'KRW'), 1n, '0.5 rounds up; its VAT 0.1 rounds down');
  assert.equal(contractFee(standardFees.stripe, 10_000n, 'USD'), 320n);
  assert.equal(contractFee(standardFees.stripe, 10_000n, 'KRW'), 290n, 'no fixed part in a zero-decimal currency');
});

test('a daily run that failed, with the partner\'s report unavailable, is tried again 15 minutes later, not every minute', async () => {
  const day = new Date('2031-03-02T03:00:00Z');
  await fetch(`${keel.keel.gatewayUrl}/__sim/faults`, { method: 'POST', body: JSON.stringify({ mode: 'outage', duration_s: 60 }) });
  try {
    const failed = await keel.keel.jobs.reconcile(day);
    assert.deepEqual(failed.map((run) => run.status), ['failed', 'failed']);
    assert.match(failed[0]?.error ?? '', /settlement report answered 503/);
    assert.deepEqual(await keel.keel.jobs.reconcile(day), [], 'not again at once');
  } finally {
    await fetch(`${keel.keel.gatewayUrl}/__sim/faults`, { method: 'DELETE' });
  }
  // Fifteen minutes after the failed runs started, the day is tried again, and succeeds.
  await keel.keel.database.db.updateTable('reconciliation_runs').set({ started_at: new Date(Date.now() - 16 * 60_000) }).where('status', '=', 'failed').execute();
  const retried = await keel.keel.jobs.reconcile(day);
  assert.deepEqual(retried.map((run) => [run.day, run.status]), [['2031-03-01', 'succeeded'], ['2031-03-01', 'succeeded']]);
});

test('a run books what the partner has paid out, and the ledger and the partner then agree on what it still holds', async () => {
  const shop = await keel.createMerchant({ name: 'Paid Out', gateway: 'toss', partnerSecretKey: 'test_sk_recon_payouts' });
  await pay(shop.secret_key);
  await pay(shop.secret_key);
  const tomorrow = new Date(Date.now() + 86_400_000).toISOString().slice(0, 10);
  // Paid out two days after the sale: at the end of tomorrow the partner still holds today's sales, read from
  // today's report (the payout window before the reconciled day), as the ledger does.
  const ahead = await admin('POST', '/admin/reconciliation/runs', { gateway: 'toss', date: tomorrow, merchant: shop.id });
  assert.deepEqual([ahead.body.status, ahead.body.anomalies_opened], ['succeeded', 0], JSON.stringify(ahead.body));

  assert.equal(await sim('/__sim/payouts', { delay_days: 0 }), 200);
  try {
    await paidOutToday();
  } finally {
    assert.equal(await sim('/__sim/payouts', { delay_days: 2 }), 200);
  }
});

async function paidOutToday(): Promise<void> {
  const shop = await keel.createMerchant({ name: 'Paid Out Today', gateway: 'toss', partnerSecretKey: 'test_sk_recon_paid_today' });
  await pay(shop.secret_key);
  const held = await pay(shop.secret_key);
  const run = await admin('POST', '/admin/reconciliation/runs', { gateway: 'toss', date: today, merchant: shop.id });
  assert.deepEqual([run.body.status, run.body.anomalies_opened, run.body.matched], ['succeeded', 0, 2], JSON.stringify(run.body));
  const balance = await keel.request('GET', '/v1/balance', { secretKey: shop.secret_key });
  assert.deepEqual([balance.body.pending, balance.body.available], [[{ amount: 0, currency: 'KRW' }], [{ amount: 20000 - 2 * 275, currency: 'KRW' }]]);
  const verified = await verifyLedger(keel.keel.database.db);
  assert.deepEqual(verified.differences.filter((difference) => difference.merchant === publicToUuid('merchant', shop.id)), []);

  // An entry the ledger gained behind the payments' back (a second capture of one payment): no record disagrees,
  // the aggregate does — the ledger says the partner holds 10,000 it does not.
  const merchantId = publicToUuid('merchant', shop.id) ?? '';
  await keel.keel.database.db.transaction().execute((trx) =>
    postTransaction(trx, { merchantId, currency: 'KRW', kind: 'capture', paymentId: publicToUuid('payment', held.id) ?? '', postings: capturePostings('toss', 10000n) }),
  );
  const again = await admin('POST', '/admin/reconciliation/runs', { gateway: 'toss', date: today, merchant: shop.id });
  assert.equal(again.body.anomalies_opened, 1, JSON.stringify(again.body));
  const [anomaly] = await anomaliesOf(shop.secret_key);
  assert.deepEqual([anomaly?.['type'], anomaly?.['payment'], anomaly?.['expected'], anomaly?.['actual']], ['BalanceMismatch', null, { amount: 10000, currency: 'KRW' }, { amount: 0, currency: 'KRW' }]);
  assert.equal((await admin('POST', '/admin/reconciliation/runs', { gateway: 'toss', date: today, merchant: shop.id })).body.anomalies_opened, 0, 'opened once');
}

test('a sale the partner reports for a payment Keel holds processing is finished by the partner\'s answer: MismatchCaptureStatus resolved auto', async () => {
  const shop = await keel.createMerchant({ name: 'Answer Lost', gateway: 'toss', partnerSecretKey: 'test_sk_recon_answer_lost' });
  const orderId = uniqueKey('ord');
  // The partner charges, and its answer never reaches Keel: the payment is processing, the attempt unknown.
  const paid = await keel.request('POST', '/v1/payments', { secretKey: shop.secret_key, body: { amount: 8000, currency: 'KRW', order_id: orderId, payment_method: testCard('4000000000000259'), confirm: true } });
  assert.equal(paid.status, 202, JSON.stringify(paid.body));
  assert.equal((await keel.simCharges(orderId)).length, 1);

  const run = await admin('POST', '/admin/reconciliation/runs', { gateway: 'toss', date: today, merchant: shop.id });
  assert.deepEqual([run.body.status, run.body.anomalies_opened, run.body.anomalies_resolved, run.body.matched], ['succeeded', 1, 1, 1], JSON.stringify(run.body));
  const [anomaly] = await anomaliesOf(shop.secret_key);
  assert.deepEqual([anomaly?.['type'], anomaly?.['status'], anomaly?.['payment'], anomaly?.['expected'], anomaly?.['actual']], [
    'MismatchCaptureStatus',
    'resolved',
    paid.body.id,
    { amount: 0, currency: 'KRW', status: 'processing' },
    { amount: 8000, currency: 'KRW', status: 'succeeded' },
  ]);
  assert.match(String((anomaly?.['resolution'] as { action?: string } | null)?.action), /^the partner reported the sale .+; asked again, it answered: the authorize is succeeded, the payment succeeded$/);
  assert.equal((anomaly?.['resolution'] as { kind?: string } | null)?.kind, 'auto');
  assert.equal((await keel.request('GET', `/v1/payments/${paid.body.id}`, { secretKey: shop.secret_key })).body.status, 'succeeded');
  assert.equal((await keel.simCharges(orderId)).length, 1, 'nothing was charged again');
  const verified = await verifyLedger(keel.keel.database.db);
  assert.deepEqual(verified.differences.filter((difference) => difference.merchant === publicToUuid('merchant', shop.id)), []);
  const again = await admin('POST', '/admin/reconciliation/runs', { gateway: 'toss', date: today, merchant: shop.id });
  assert.deepEqual([again.body.anomalies_opened, again.body.anomalies_resolved, again.body.matched], [0, 0, 1]);
});
