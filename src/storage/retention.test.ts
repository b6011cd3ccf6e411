// Proves retention: finished idempotency keys past the TTL, published outbox events, inbox entries, settled
// webhook deliveries and unused expired checkout sessions past KEEL_RETENTION_DAYS are pruned; anything younger,
// an event not yet published, a pending delivery and every record of money are kept; one run prunes in bounded
// batches until none is due (2,500 inbox rows in batches of 1,000); and a projections rebuild after pruning
// keeps the days whose events are gone, so the read model's totals do not change.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { sql } from 'kysely';
import { startTestKeel, testCard, uniqueKey, type TestKeel } from '../testing/harness.js';
import { startWebhookReceiver, type WebhookReceiver } from '../testing/webhook-receiver.js';
import { rebuildProjections } from '../reports/projection.js';
import { publicToUuid } from './ids.js';
import { retentionBatchSize, retentionCutoff } from './retention.js';

let keel: TestKeel;
let hooks: WebhookReceiver;
before(async () => {
  keel = await startTestKeel({ config: { retentionDays: 30, idempotencyTtlHours: 24 } });
  hooks = await startWebhookReceiver();
});
after(async () => {
  await hooks.close();
  await keel.close();
});

const db = () => keel.keel.database.db;
const daysAgo = (days: number) => new Date(Date.now() - days * 86_400_000);

async function pay(): Promise<{ id: string; key: string }> {
  const key = uniqueKey();
  const response = await keel.request('POST', '/v1/payments', { body: { amount: 1000, currency: 'KRW', order_id: uniqueKey('ord'), payment_method: testCard(), confirm: true }, idempotencyKey: key });
  assert.equal(response.body.status, 'succeeded', JSON.stringify(response.body));
  return { id: response.body.id, key };
}

async function reportRows(): Promise<string> {
  const rows = await sql<{ row: string }>`SELECT row_to_json(r)::text AS row FROM report_payments_daily r ORDER BY merchant_id, day, currency, country, gateway, shard`.execute(db());
  return rows.rows.map((row) => row.row).join('\n');
}

test('old operational records are pruned, young ones and records of money are kept, and a rebuild keeps pruned days', async () => {
  assert.equal((await keel.request('POST', '/v1/webhook_endpoints', { body: { url: hooks.url, events: ['*'] } })).status, 200);
  const old = await pay();
  const oldPayment = publicToUuid('payment', old.id) ?? '';
  // The old payment's events are as if written 40 days ago (their payment too, for the read model's day).
  const fortyDaysAgo = daysAgo(40);
  await sql`
    UPDATE outbox SET created_at = ${fortyDaysAgo}, data = jsonb_set(data, '{object,created_at}', to_jsonb(${fortyDaysAgo.toISOString()}::text))
    WHERE aggregate_id = ${oldPayment}`.execute(db());
  await keel.keel.jobs.relay();
  await keel.keel.jobs.webhooks();
  const young = await pay();
  await keel.keel.jobs.relay();
  await keel.keel.jobs.webhooks();
  // And an event never published (the relay is behind), as old as the others.
  const stuck = await pay();
  const stuckPayment = publicToUuid('payment', stuck.id) ?? '';
  await db().updateTable('outbox').set({ created_at: fortyDaysAgo }).where('aggregate_id', '=', stuckPayment).execute();

  // Everything of the old payment's but the money is aged past retention.
  await db().updateTable('idempotency_keys').set({ created_at: daysAgo(2) }).where('key', '=', old.key).execute();
  await db().updateTable('inbox').set({ processed_at: daysAgo(40) }).where('event_id', 'in', db().selectFrom('outbox').select('id').where('aggregate_id', '=', oldPayment)).execute();
  await db().updateTable('webhook_deliveries').set({ updated_at: daysAgo(40) }).where('event_id', 'in', db().selectFrom('outbox').select('id').where('aggregate_id', '=', oldPayment)).execute();
  // Old unused checkout sessions, and 2,500 old inbox entries of another consumer (more than two batches).
  const customer = (await keel.request('POST', '/v1/brandpay/customers', { body: { customer_key: uniqueKey('shopper') } })).body.id;
  const sessionBody = () => ({ customer, amount: 5000, currency: 'KRW', order_id: uniqueKey('ord'), success_url: 'https://shop.example/ok', fail_url: 'https://shop.example/fail' });
  const unused = (await keel.request('POST', '/v1/brandpay/checkout_sessions', { body: sessionBody() })).body.id;
  const fresh = (await keel.request('POST', '/v1/brandpay/checkout_sessions', { body: sessionBody() })).body.id;
  await db().updateTable('checkout_sessions').set({ expires_at: daysAgo(35) }).where('id', '=', publicToUuid('checkoutSession', unused) ?? '').execute();
  await sql`INSERT INTO inbox (consumer, event_id, processed_at) SELECT 'retention_test', gen_random_uuid(), ${daysAgo(45)} FROM generate_series(1, 2500)`.execute(db());

  const moneyBefore = await Promise.all(['payments', 'payment_attempts', 'ledger_entries', 'ledger_transactions'].map((table) => sql<{ count: string }>`SELECT count(*)::text AS count FROM ${sql.table(table)}`.execute(db())));
  const report = await keel.keel.jobs.retention();

  assert.ok(report.inbox >= 2_500 + 2, `2,500 old entries and the old events', in batches of ${retentionBatchSize}: ${JSON.stringify(report)}`);
  assert.equal(report.idempotency_keys, 1);
  assert.equal(report.outbox, 2, 'the old payment\'s two events');
  assert.equal(report.webhook_deliveries, 2);
  assert.equal(report.checkout_sessions, 1);
  assert.equal((await db().selectFrom('outbox').select('id').where('aggregate_id', '=', oldPayment).execute()).length, 0);
  assert.equal((await db().selectFrom('outbox').select('id').where('aggregate_id', '=', stuckPayment).execute()).length, 2, 'unpublished events are never pruned');
  assert.equal((await db().selectFrom('outbox').select('id').where('aggregate_id', '=', publicToUuid('payment', young.id) ?? '').execute()).length, 2);
  assert.equal((await db().selectFrom('idempotency_keys').select('id').where('key', '=', young.key).execute()).length, 1);
  assert.equal((await db().selectFrom('checkout_sessions').select('id').where('id', '=', publicToUuid('checkoutSession', fresh) ?? '').execute()).length, 1);
  const moneyAfter = await Promise.all(['payments', 'payment_attempts', 'ledger_entries', 'ledger_transactions'].map((table) => sql<{ count: string }>`SELECT count(*)::text AS count FROM ${sql.table(table)}`.execute(db())));
  assert.deepEqual(moneyAfter.map((result) => result.rows[0]?.count), moneyBefore.map((result) => result.rows[0]?.count), 'records of money are never pruned');
  const mark = await db().selectFrom('retention_marks').select('pruned_before').where('name', '=', 'outbox').executeTakeFirstOrThrow();
  assert.equal(new Date(mark.pruned_before).getTime(), retentionCutoff(30).getTime());
  // A second run finds nothing due.
  assert.deepEqual(Object.values(await keel.keel.jobs.retention()), [0, 0, 0, 0, 0]);

  // The read model still counts the old payment's day after a rebuild, though its events are gone.
  await keel.keel.jobs.relay();
  const reportBefore = await reportRows();
  assert.match(reportBefore, new RegExp(fortyDaysAgo.toISOString().slice(0, 10)));
  await rebuildProjections(db(), keel.keel.logger);
  assert.equal(await reportRows(), reportBefore);
});
