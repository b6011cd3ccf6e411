// Proves the upgrade that makes a settlement discharge the partner's receivable (migration 0024): a settlement
// booked by an earlier Keel (pending to available and fees only) gets its payout day and the two entries it
// lacked, so the receivable shows what the partner still holds and every transaction still sums to zero.
import assert from 'node:assert/strict';
import { sql } from 'kysely';
import { test } from 'node:test';
import { useUpgradeDatabase } from '../testing/harness.js';
import { verifyLedger } from '../ledger/ledger.js';
import { migrateToLatest } from './database.js';
import { newId } from './ids.js';

const startAt = useUpgradeDatabase();

test('a settlement booked before the upgrade discharges the receivable after it', async () => {
  const { database, merchantId: merchant } = await startAt('0023_reconciliation_at_scale');
  const db = database.db;
  const payment = newId('payment').uuid;
  await sql`INSERT INTO payments (id, merchant_id, order_id, amount, currency, country, status, capture_method, amount_received, gateway, partner_payment_id)
    VALUES (${payment}, ${merchant}, 'ord_upgraded', 10000, 'KRW', 'KR', 'succeeded', 'automatic', 10000, 'toss', 'tpk_upgraded')`.execute(db);
  const journal = async (kind: string, reference: string | null, entries: readonly [string, number][]) => {
    const id = newId('payment').uuid;
    await sql`INSERT INTO ledger_transactions (id, merchant_id, kind, payment_id, external_reference, created_at)
      VALUES (${id}, ${merchant}, ${kind}, ${payment}, ${reference}, '2026-11-30T10:00:00Z')`.execute(db);
    for (const [account, amount] of entries) {
      await sql`INSERT INTO ledger_entries (transaction_id, merchant_id, account, currency, amount) VALUES (${id}, ${merchant}, ${account}, 'KRW', ${amount})`.execute(db);
    }
    return id;
  };
  await journal('capture', null, [['partner_receivable:toss', 10000], ['merchant_pending', -10000]]);
  const settlement = await journal('settlement', 'toss:tpk_upgraded', [['merchant_pending', 10000], ['merchant_available', -9725], ['fees', -275]]);

  await migrateToLatest(database);
  const accounts = await sql<{ account: string; total: string }>`
    SELECT account, sum(amount)::text AS total FROM ledger_entries WHERE merchant_id = ${merchant} GROUP BY account ORDER BY account`.execute(db);
  assert.deepEqual(accounts.rows.map((row) => [row.account, Number(row.total)]), [
    ['fees', -275],
    ['merchant_available', -9725],
    ['merchant_pending', 0],
    ['partner_receivable:toss', 0],
    ['partner_settled:toss', 10000],
  ]);
  const dated = await sql<{ day: string }>`SELECT to_char(effective_date, 'YYYY-MM-DD') AS day FROM ledger_transactions WHERE id = ${settlement}`.execute(db);
  assert.equal(dated.rows[0]?.day, '2026-11-30');
  const verified = await verifyLedger(db);
  assert.deepEqual([verified.unbalanced, verified.differences], [[], []]);
});
