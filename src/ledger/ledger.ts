import assert from 'node:assert/strict';
import { sql, type Kysely } from 'kysely';
import { uuidv7 } from '../storage/ids.js';
import type { KeelDatabase, LedgerTransactionsTable } from '../storage/schema.js';

/**
 * The double-entry journal. Every transaction's entries sum to zero (debits positive, credits negative),
 * asserted before the write and checked again after reading; it is written in the same database transaction as
 * the state change it records, so a balance never drifts from the payments it comes from.
 *
 * Accounts, per merchant and currency:
 * - `partner_receivable:<partner>` (asset): what the partner holds for captured payments and has not paid out yet
 *   (captures less refunds less settlements), the figure reconciliation compares with the partner's own;
 * - `partner_settled:<partner>` (asset): what the partner has paid out (or kept as its fee), gross;
 * - `merchant_pending` (liability): what is owed to the merchant and not yet settled;
 * - `merchant_available` (liability): settled and available to the merchant;
 * - `fees`: the partner's fees, booked when its settlement report is imported.
 */
export type LedgerKind = LedgerTransactionsTable['kind'];

export interface Posting {
  readonly account: string;
  readonly amount: bigint;
}

export interface JournalTransaction {
  readonly merchantId: string;
  readonly currency: string;
  readonly kind: LedgerKind;
  readonly paymentId?: string;
  readonly refundId?: string;
  /** The partner's reference (a settlement's transaction key): a transaction is recorded once per reference. */
  readonly externalReference?: string;
  /**
   * The UTC day (`YYYY-MM-DD`) the transaction took effect at the partner — the day a capture's or refund's
   * request was sent (`effectiveDay(attempt.createdAt)`, so an answer settled days later by the janitor still
   * belongs to its day), a settlement's payout day; the day it is written when left out.
   */
  readonly effectiveDate?: string;
  readonly postings: readonly Posting[];
}

export function receivable(gateway: string): string {
  return `partner_receivable:${gateway}`;
}

/** The UTC day of a moment, as `JournalTransaction.effectiveDate` takes it. */
export function effectiveDay(at: Date): string {
  return at.toISOString().slice(0, 10);
}

export function settled(gateway: string): string {
  return `partner_settled:${gateway}`;
}

/** A transaction's postings, asserted to sum to zero with none of them zero. */
export function balancedPostings(kind: LedgerKind, postings: readonly Posting[]): readonly Posting[] {
  const total = postings.reduce((sum, posting) => sum + posting.amount, 0n);
  assert.equal(total, 0n, `ledger transaction ${kind} must sum to zero`);
  assert.ok(postings.every((posting) => posting.amount !== 0n), 'no zero postings');
  return postings;
}

/** A transaction's id and its balanced postings as parallel arrays, for a statement that writes them itself. */
export function journalValues(transaction: Pick<JournalTransaction, 'kind' | 'postings'>): { id: string; accounts: string[]; amounts: string[] } {
  const postings = balancedPostings(transaction.kind, transaction.postings);
  return { id: uuidv7(), accounts: postings.map((posting) => posting.account), amounts: postings.map((posting) => String(posting.amount)) };
}

export async function postTransaction(trx: Kysely<KeelDatabase>, transaction: JournalTransaction): Promise<string> {
  balancedPostings(transaction.kind, transaction.postings);
  const uuid = uuidv7();
  // One statement, one round trip: the transaction row and its entries (foreign keys are checked at its end).
  await trx
    .with('journal_transaction', (db) =>
      db.insertInto('ledger_transactions').values({
        id: uuid,
        merchant_id: transaction.merchantId,
        kind: transaction.kind,
        payment_id: transaction.paymentId ?? null,
        refund_id: transaction.refundId ?? null,
        external_reference: transaction.externalReference ?? null,
        ...(transaction.effectiveDate === undefined ? {} : { effective_date: transaction.effectiveDate }),
      }),
    )
    .insertInto('ledger_entries')
    .values(transaction.postings.map((posting) => ({ transaction_id: uuid, merchant_id: transaction.merchantId, account: posting.account, currency: transaction.currency, amount: posting.amount })))
    .execute();
  return uuid;
}

/** A capture: the partner now owes the amount, and Keel owes it to the merchant until settlement. */
export function capturePostings(gateway: string, amount: bigint): Posting[] {
  return [
    { account: receivable(gateway), amount },
    { account: 'merchant_pending', amount: -amount },
  ];
}

/** A refund: the partner returns the money to the shopper, out of what the merchant was owed. */
export function refundPostings(gateway: string, amount: bigint): Posting[] {
  return [
    { account: 'merchant_pending', amount },
    { account: receivable(gateway), amount: -amount },
  ];
}

/**
 * A settlement: the partner pays out the sale less its fee; what was pending becomes available, and what the
 * partner held moves from its receivable to what it has settled. A refund row (negative gross) does the reverse.
 */
export function settlementPostings(gateway: string, gross: bigint, payout: bigint): Posting[] {
  const fee = gross - payout;
  return [
    { account: 'merchant_pending', amount: gross },
    { account: 'merchant_available', amount: -payout },
    ...(fee === 0n ? [] : [{ account: 'fees', amount: -fee }]),
    { account: receivable(gateway), amount: -gross },
    { account: settled(gateway), amount: gross },
  ];
}

export interface Balance {
  readonly pending: { amount: number; currency: string }[];
  readonly available: { amount: number; currency: string }[];
}

/** The merchant's balances, as liabilities (credit balances shown positive). */
export async function readBalance(db: Kysely<KeelDatabase>, merchantId: string): Promise<Balance> {
  const rows = await db
    .selectFrom('ledger_entries')
    .select(['account', 'currency', (eb) => eb.fn.sum<string>('amount').as('total')])
    .where('merchant_id', '=', merchantId)
    .where('account', 'in', ['merchant_pending', 'merchant_available'])
    .groupBy(['account', 'currency'])
    .orderBy('currency')
    .execute();
  const of = (account: string) => rows.filter((row) => row.account === account).map((row) => ({ amount: -Number(row.total), currency: row.currency.trim() }));
  return { pending: of('merchant_pending'), available: of('merchant_available') };
}

export interface VerifyReport {
  readonly transactions: number;
  readonly unbalanced: string[];
  readonly differences: { merchant: string; currency: string; journal: string; payments: string }[];
}

/**
 * Recomputes from two sides: every transaction must sum to zero, and what each merchant is owed or was paid
 * (pending + available + the fees taken from it) must equal what its payments and refunds say (received less
 * refunded).
 */
export async function verifyLedger(db: Kysely<KeelDatabase>): Promise<VerifyReport> {
  const sums = await sql<{ transaction_id: string; total: string }>`
    SELECT transaction_id, sum(amount)::text AS total FROM ledger_entries GROUP BY transaction_id`.execute(db);
  const unbalanced = sums.rows.filter((row) => BigInt(row.total) !== 0n).map((row) => row.transaction_id);
  const journal = await sql<{ merchant_id: string; currency: string; total: string }>`
    SELECT merchant_id, currency, (-sum(amount))::text AS total FROM ledger_entries
    WHERE account IN ('merchant_pending', 'merchant_available', 'fees') GROUP BY merchant_id, currency`.execute(db);
  const settled = await sql<{ merchant_id: string; currency: string; total: string }>`
    SELECT merchant_id, currency, sum(amount_received - amount_refunded)::text AS total FROM payments
    WHERE amount_received > 0 GROUP BY merchant_id, currency`.execute(db);
  const key = (row: { merchant_id: string; currency: string }) => `${row.merchant_id}/${row.currency.trim()}`;
  const fromJournal = new Map(journal.rows.map((row) => [key(row), row.total]));
  const fromPayments = new Map(settled.rows.map((row) => [key(row), row.total]));
  const differences = [...new Set([...fromJournal.keys(), ...fromPayments.keys()])]
    .filter((name) => BigInt(fromJournal.get(name) ?? '0') !== BigInt(fromPayments.get(name) ?? '0'))
    .map((name) => {
      const [merchant = '', currency = ''] = name.split('/');
      return { merchant, currency, journal: fromJournal.get(name) ?? '0', payments: fromPayments.get(name) ?? '0' };
    });
  return { transactions: sums.rows.length, unbalanced, differences };
}
