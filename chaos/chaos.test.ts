// The chaos suite: a seeded run of mixed traffic (creates and confirms, manual captures, partial refunds,
// cancels, duplicate idempotency keys, concurrent retries) for three countries while the benchmark gateway
// injects an outage, latency spikes, hangs and error bursts per country, applies every request on arrival and
// answers after its latency, and lets its inquiries lag 20 s behind the truth. After the faults clear, the
// consistency window has passed and the janitor has run, it checks and prints: every charge at the partner
// belongs to exactly one Keel payment, with Keel's amount and currency, and no order is charged twice; every
// payment Keel answered 200 or 202 for exists and none is left processing; one country's breaker opened while
// another country's payments kept succeeding; refunds never exceed receipts; the double-entry ledger balances
// and agrees with the payments; the payments report, built from the events, counts every payment and refund
// once; every payment's final status reached the shop by webhook; and a reconciliation of the day with both
// partners opens no anomaly.
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, test } from 'node:test';
import { verifyLedger } from '../src/ledger/ledger.js';
import { resendRoundsMax } from '../src/payments/operations/steps.js';
import { publicToUuid, uuidToPublic } from '../src/storage/ids.js';
import type { CreatedMerchant } from '../src/merchants/merchants.js';
import { createRandom } from '../src/simulator/latency.js';
import { startTestKeel, testCard, testConsistencyWindowMs, uniqueKey, type TestKeel, type TestResponse } from '../src/testing/harness.js';
import { startWebhookReceiver, type WebhookReceiver } from '../src/testing/webhook-receiver.js';

const seed = Number(process.env['KEEL_CHAOS_SEED'] ?? 20261122);
const durationMs = Number(process.env['KEEL_CHAOS_DURATION_MS'] ?? 24_000);
const workers = 6;
const random = createRandom(seed);
const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)] as T;

const inquiryLagMs = 20_000;
let keel: TestKeel;
let hooks: WebhookReceiver;
const merchants = new Map<string, CreatedMerchant>();
const currencies: Record<string, string> = { KR: 'KRW', JP: 'JPY', US: 'USD' };

before(async () => {
  keel = await startTestKeel({
    config: {
      breaker: { minimumCalls: 5, failureRatePercent: 50, windowMs: 5_000, errorTimeoutMs: 2_000, successThreshold: 2, halfOpenReadTimeoutMs: 500 },
      requestDeadlineMs: 5_000,
    },
  });
  // Toss charges won only: the Korean shop pays through Toss, the Japanese and American ones through Stripe.
  for (const country of ['KR', 'JP', 'US']) merchants.set(country, await keel.createMerchant({ name: `Chaos ${country}`, country, gateway: country === 'KR' ? 'toss' : 'stripe' }));
  hooks = await startWebhookReceiver();
  for (const merchant of merchants.values()) {
    const endpoint = await keel.request('POST', '/v1/webhook_endpoints', { body: { url: hooks.url, events: ['*'] }, secretKey: merchant.secret_key });
    assert.equal(endpoint.status, 200);
  }
  await keel.setInquiryLag(inquiryLagMs);
});
after(async () => {
  await keel?.close();
  await hooks?.close();
});

interface Observed {
  readonly country: string;
  readonly at: number;
  readonly operation: string;
  readonly response: TestResponse;
}

const observed: Observed[] = [];
const paymentIds = new Map<string, string>(); // payment id -> country

async function call(country: string, operation: string, method: 'GET' | 'POST', path: string, body?: unknown, idempotencyKey?: string): Promise<TestResponse> {
  const merchant = merchants.get(country) as CreatedMerchant;
  const response = await keel.request(method, path, { body, secretKey: merchant.secret_key, ...(idempotencyKey === undefined ? {} : { idempotencyKey }) });
  observed.push({ country, at: Date.now(), operation, response });
  const payment = response.body?.object === 'payment' ? response.body : response.body?.error?.payment;
  if (payment?.id !== undefined && (response.status === 200 || response.status === 202)) paymentIds.set(payment.id, country);
  return response;
}

function cardFor(): string {
  const roll = random();
  if (roll < 0.06) return '4000000000000002';
  if (roll < 0.1) return '4000000000009995';
  if (roll < 0.13) return '4000000000000259';
  if (roll < 0.15) return '4000000000000119';
  // 3-D Secure: Stripe declines it (the intent canceled); Toss approves it.
  if (roll < 0.17) return '4000002760003184';
  return '4242424242424242';
}

async function oneStep(): Promise<void> {
  const country = pick(['KR', 'KR', 'JP', 'US']);
  const manual = random() < 0.25;
  const key = uniqueKey('chaos');
  const body = { amount: 1000 + Math.floor(random() * 9000), currency: currencies[country], order_id: uniqueKey('chaos_ord'), payment_method: testCard(cardFor()), confirm: true, capture_method: manual ? 'manual' : 'automatic' };
  // Sometimes the shop's checkout double-submits: the same key, concurrently.
  const copies = random() < 0.15 ? 3 : 1;
  const answers = await Promise.all(Array.from({ length: copies }, () => call(country, 'create', 'POST', '/v1/payments', body, key)));
  let payment = answers.find((answer) => answer.status === 200 || answer.status === 202)?.body;
  const unavailable = answers.find((answer) => answer.status === 503);
  if (payment === undefined && unavailable !== undefined && random() < 0.7) {
    // A client retry with the same key after the advised wait.
    await sleep(300);
    const retry = await call(country, 'create-retry', 'POST', '/v1/payments', body, key);
    if (retry.status === 200 || retry.status === 202) payment = retry.body;
  }
  if (payment?.status === 'requires_capture') {
    if (random() < 0.75) {
      const amount = random() < 0.5 ? payment.amount : Math.max(1, Math.floor(payment.amount / 2));
      const captureKey = uniqueKey('cap');
      await Promise.all([
        call(country, 'capture', 'POST', `/v1/payments/${payment.id}/capture`, { amount }, captureKey),
        ...(random() < 0.2 ? [call(country, 'capture', 'POST', `/v1/payments/${payment.id}/capture`, { amount }, uniqueKey('cap'))] : []),
      ]);
    } else {
      await call(country, 'cancel', 'POST', `/v1/payments/${payment.id}/cancel`, {});
    }
    payment = (await call(country, 'read', 'GET', `/v1/payments/${payment.id}`)).body;
  }
  if (payment?.status === 'succeeded' && random() < 0.4) {
    const refunds = random() < 0.3 ? 3 : 1;
    await Promise.all(
      Array.from({ length: refunds }, () => call(country, 'refund', 'POST', '/v1/refunds', { payment: payment.id, amount: Math.max(1, Math.floor(payment.amount / 2)) })),
    );
  }
}

async function faultSchedule(started: number): Promise<void> {
  const sim = (method: string, body?: unknown) =>
    fetch(`${keel.keel.gatewayUrl}/__sim/faults`, { method, ...(body === undefined ? {} : { body: JSON.stringify(body) }) });
  const at = async (ms: number) => sleep(Math.max(0, started + ms - Date.now()));
  await at(3_000);
  await sim('POST', { country: 'KR', mode: 'outage', duration_s: 6 });
  await at(5_000);
  await sim('POST', { country: 'JP', mode: 'latency', latency_ms: 1_500, duration_s: 4 });
  await at(10_000);
  await sim('POST', { country: 'US', mode: 'hang', duration_s: 3 });
  await at(14_000);
  await sim('POST', { mode: 'errors', rate: 0.3, duration_s: 4 });
  await at(durationMs - 2_000);
  await sim('DELETE');
}

test(`chaos (seed ${seed}): nothing lost, nothing charged twice`, { timeout: durationMs + 180_000 }, async (context) => {
  const started = Date.now();
  const faults = faultSchedule(started);
  await Promise.all(
    Array.from({ length: workers }, async () => {
      while (Date.now() - started < durationMs) await oneStep();
    }),
  );
  await faults;

  // The faults are over. Let the partners' consistency window pass (for Keel's attempts and the gateway's lag
  // alike), advance the inquiry schedule (its backoff is proven elsewhere) and let the janitor settle every
  // unknown outcome.
  await sleep(2_500);
  await keel.passTime(testConsistencyWindowMs);
  for (let round = 0; round < 40; round += 1) {
    // A resend starts the window again; once Keel has stopped resending (resendRoundsMax), let it pass again.
    if (round > 0 && round % (resendRoundsMax + 1) === 0) await keel.passTime(testConsistencyWindowMs);
    await keel.keel.database.db.updateTable('payment_attempts').set({ next_inquiry_at: new Date() }).where('status', '=', 'unknown').execute();
    await keel.keel.jobs.janitor();
    const unknown = await keel.keel.database.db.selectFrom('payment_attempts').select('id').where('status', '=', 'unknown').execute();
    if (unknown.length === 0) break;
    await sleep(500);
  }

  const charges = await keel.simCharges();
  const db = keel.keel.database.db;
  const payments = await db.selectFrom('payments').select(['id', 'order_id', 'status', 'amount', 'currency', 'amount_received', 'amount_refunded', 'gateway']).execute();
  const byOrder = new Map(payments.map((payment) => [payment.order_id, payment]));

  // 1. Every charge at the partner belongs to exactly one Keel payment; no order is charged twice.
  const live = charges.filter((charge) => charge.status !== 'declined');
  const perOrder = new Map<string, number>();
  for (const charge of live) perOrder.set(charge.order_id, (perOrder.get(charge.order_id) ?? 0) + 1);
  const doubled = [...perOrder.entries()].filter(([, count]) => count > 1);
  const orphans = live.filter((charge) => !byOrder.has(charge.order_id));
  assert.deepEqual(doubled, [], 'no order charged twice');
  assert.deepEqual(orphans, [], 'every charge belongs to a Keel payment');
  for (const charge of live) {
    const payment = byOrder.get(charge.order_id);
    // Stripe charges the authorized amount and captures part of it; Toss charges at capture what is captured.
    const keelAmount = payment?.gateway === 'toss' && charge.captured_amount > 0 ? payment.amount_received : payment?.amount;
    assert.equal(charge.amount, Number(keelAmount), `order ${charge.order_id} charged Keel's amount`);
    assert.equal(charge.currency, payment?.currency, `order ${charge.order_id} charged in Keel's currency`);
    if (charge.captured_amount > 0) {
      assert.equal(payment?.status, 'succeeded', `order ${charge.order_id} is captured at the partner`);
      assert.equal(Number(payment?.amount_received), charge.captured_amount, `order ${charge.order_id} received`);
      assert.equal(Number(payment?.amount_refunded), charge.refunded_amount, `order ${charge.order_id} refunded`);
    }
  }
  for (const payment of payments.filter((candidate) => candidate.status === 'succeeded')) {
    assert.equal(perOrder.get(payment.order_id), 1, `succeeded payment ${payment.order_id} has its charge`);
  }

  // 2. Every payment Keel answered 200 or 202 for exists, and none is left processing.
  const stuck = await db
    .selectFrom('payment_attempts')
    .innerJoin('payments', 'payments.id', 'payment_attempts.payment_id')
    .select(['payments.order_id', 'payments.gateway', 'payment_attempts.id', 'payment_attempts.operation', 'payment_attempts.status', 'payment_attempts.inquiry_count', 'payment_attempts.partner_idempotency_key'])
    .where('payments.status', '=', 'processing')
    .execute();
  const partnerSide = await Promise.all(
    stuck.map(async (row) => ({
      charges: await keel.simCharges(row.order_id),
      answers: [...(keel.keel.simulator?.state.idempotency.entries() ?? [])].filter(([key]) => key.endsWith(row.partner_idempotency_key)).map(([, entry]) => entry.response?.status ?? 'in flight'),
    })),
  );
  keel.keel.logger.flush();
  const lines = keel.logs.map((line) => JSON.parse(line) as { request_id?: string; attempt_id?: string; message: string; operation?: string; outcome?: string; reason?: string });
  const asked = new Set(lines.filter((line) => stuck.some((row) => row.id === line.attempt_id)).map((line) => line.request_id));
  const calls = lines.filter((line) => line.message === 'partner call' && asked.has(line.request_id)).map((line) => `${line.operation} ${line.outcome} ${line.reason ?? ''}`);
  assert.deepEqual(stuck, [], `the attempts of payments left processing; at the partner: ${JSON.stringify(partnerSide)}; the janitor's calls: ${JSON.stringify(calls.slice(0, 20))}`);
  for (const [paymentId, country] of paymentIds) {
    const response = await call(country, 'verify', 'GET', `/v1/payments/${paymentId}`);
    assert.equal(response.status, 200, `payment ${paymentId} exists`);
    assert.notEqual(response.body.status, 'processing', `payment ${paymentId} is settled`);
  }
  const processing = payments.filter((payment) => payment.status === 'processing');
  assert.deepEqual(processing, []);

  // 3. A breaker for one country opened while another country's payments kept succeeding.
  const opened = keel.logs.filter((line) => line.includes('circuit breaker closed -> open') || line.includes('circuit breaker half_open -> open'));
  const krOpenedAt = opened.map((line) => JSON.parse(line) as { resource: string; time: string }).filter((line) => line.resource.endsWith(':KR'));
  assert.ok(krOpenedAt.length > 0, 'the KR breaker opened during the KR outage');
  const firstOpen = Date.parse(krOpenedAt[0]?.time ?? '');
  const othersDuring = observed.filter(
    (entry) => entry.country !== 'KR' && entry.at > firstOpen && entry.at < firstOpen + 2_000 && entry.response.status === 200 && entry.response.body?.status === 'succeeded',
  );
  assert.ok(othersDuring.length > 0, 'JP or US payments succeeded while KR\'s breaker was open');

  // 4. Amounts refunded never exceed amounts received.
  for (const payment of payments) assert.ok(BigInt(payment.amount_refunded) <= BigInt(payment.amount_received), `payment ${payment.id}`);
  for (const charge of live) assert.ok(charge.refunded_amount <= charge.captured_amount, `charge ${charge.id}`);

  // 5. The double-entry ledger agrees with the payments and every journal transaction balances.
  const ledger = await verifyLedger(db);
  assert.deepEqual(ledger.unbalanced, [], 'every journal transaction sums to zero');
  assert.deepEqual(ledger.differences, [], 'balances match payments and refunds');

  // 6. The payments report (the read model built from events) agrees with the payments and refunds tables.
  while ((await keel.keel.jobs.relay()) > 0);
  const refunds = await db.selectFrom('refunds').select(['merchant_id', 'amount']).where('status', '=', 'succeeded').execute();
  const yesterday = new Date(started - 86_400_000).toISOString().slice(0, 10);
  for (const merchant of merchants.values()) {
    const merchantId = publicToUuid('merchant', merchant.id) ?? '';
    const report = await keel.request('GET', `/v1/reports/payments?start_date=${yesterday}`, { secretKey: merchant.secret_key });
    assert.equal(report.status, 200);
    const total = (field: string) => (report.body.data as Record<string, number>[]).reduce((sum, row) => sum + (row[field] ?? 0), 0);
    const own = await db.selectFrom('payments').select(['amount_received']).where('merchant_id', '=', merchantId).execute();
    assert.equal(total('created'), own.length, `${merchant.id}: every payment counted once`);
    assert.equal(total('amount_captured'), own.reduce((sum, payment) => sum + Number(payment.amount_received), 0), `${merchant.id}: captured amounts`);
    const refunded = refunds.filter((refund) => refund.merchant_id === merchantId);
    assert.equal(total('refunds'), refunded.length, `${merchant.id}: refunds`);
    assert.equal(total('amount_refunded'), refunded.reduce((sum, refund) => sum + Number(refund.amount), 0), `${merchant.id}: refunded amounts`);
  }

  // 7. Every payment's final status reached the shop: the newest payment event delivered for it says it.
  for (let round = 0; round < 200 && ((await keel.keel.jobs.relay()) > 0 || (await keel.keel.jobs.webhooks()) > 0); round += 1);
  const lastDelivered = new Map<string, { id: string; status: string }>();
  for (const delivery of hooks.received) {
    const event = JSON.parse(delivery.body) as { id: string; type: string; data: { object: { id: string; status: string } } };
    if (!event.type.startsWith('payment.')) continue;
    const seen = lastDelivered.get(event.data.object.id);
    if (seen === undefined || seen.id < event.id) lastDelivered.set(event.data.object.id, { id: event.id, status: event.data.object.status });
  }
  for (const payment of payments) {
    const publicId = uuidToPublic('payment', payment.id);
    assert.equal(lastDelivered.get(publicId)?.status, payment.status, `payment ${publicId}: its final status was delivered`);
  }

  const statuses = observed.reduce<Record<string, number>>((counts, entry) => {
    const name = `${entry.operation} ${entry.response.status}`;
    counts[name] = (counts[name] ?? 0) + 1;
    return counts;
  }, {});
  const summary = {
    seed,
    requests: observed.length,
    payments: payments.length,
    partner_charges: live.length,
    declined_at_partner: charges.length - live.length,
    breaker_openings: opened.length,
    ledger_transactions: ledger.transactions,
    webhook_deliveries: hooks.received.length,
    other_countries_succeeded_while_kr_open: othersDuring.length,
    answers: statuses,
  };
  // Reconciliation of the run's day(s) with both partners: after the faults, Keel's books and the partners'
  // agree record by record, so nothing is opened.
  const days = [...new Set([new Date(started).toISOString().slice(0, 10), new Date().toISOString().slice(0, 10)])];
  const reconciliations: Record<string, unknown>[] = [];
  for (const day of days) {
    for (const gateway of ['toss', 'stripe']) {
      const run = await keel.request('POST', '/admin/reconciliation/runs', { body: { gateway, date: day }, secretKey: null, idempotencyKey: null, headers: { authorization: `Bearer ${keel.keel.services.adminToken}` } });
      assert.equal(run.status, 200, JSON.stringify(run.body));
      reconciliations.push(run.body);
    }
  }
  const openAnomalies = await keel.request('GET', '/admin/anomalies?status=open&limit=100', { secretKey: null, headers: { authorization: `Bearer ${keel.keel.services.adminToken}` } });
  assert.deepEqual(openAnomalies.body.data, [], `reconciliation found nothing: ${JSON.stringify(reconciliations)}`);
  assert.ok(reconciliations.every((run) => run['status'] === 'succeeded'));
  const summaryWithReconciliation = { ...summary, reconciled: reconciliations.map((run) => ({ gateway: run['gateway'], date: run['date'], rows_read: run['rows_read'], matched: run['matched'] })) };
  context.diagnostic(JSON.stringify(summaryWithReconciliation));
  console.log(`chaos summary ${JSON.stringify(summaryWithReconciliation, null, 2)}`);
  assert.ok(payments.length > 50, 'the run made enough payments to mean something');
});
