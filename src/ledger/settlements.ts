import { sql, type Kysely } from 'kysely';
import type { Logger } from 'pino';
import { request } from 'undici';
import type { GatewayName } from '../gateways/connector.js';
import type { StripeBalanceTransaction, StripeList } from '../gateways/stripe/wire.js';
import { tossAuthorization, type TossSettlement } from '../gateways/toss/wire.js';
import type { MerchantContext } from '../merchants/types.js';
import type { KeelDatabase } from '../storage/schema.js';
import { uuidv7 } from '../storage/ids.js';
import { balancedPostings, effectiveDay, settlementPostings } from './ledger.js';

/**
 * Imports partners' settlement reports into the journal. A sale row settles its payment once the partner has paid
 * it out (Toss's `paidOutDate` has come, Stripe's balance transaction is `available`): pending becomes available,
 * less the partner's fee, and the partner's receivable is discharged; a row not paid out yet waits for a later
 * import. A refund row (negative) is the refund coming out of the payout: the refund
 * was booked against pending when it happened, and now moves from available back to pending, so after both a
 * refunded sale leaves exactly its payout (gross − fee − refund) available and nothing pending. Rows are recorded
 * once by the partner's transaction id, so importing the same period twice changes nothing; rows that match no
 * payment are counted for reconciliation.
 *
 * - Toss Payments: `GET /v1/settlements?startDate&endDate` (the shape the benchmark gateway also serves), matched
 *   by `paymentKey`; a refund row carries the cancel's `transactionKey`.
 * - Stripe: `GET /v1/balance_transactions?created[gte]&created[lte]&expand[]=data.source`, paged, charge and
 *   refund rows matched by their source's `payment_intent`.
 */
export interface SettlementImport {
  readonly settled: number;
  readonly alreadySettled: number;
  readonly unmatched: number;
  /** Rows the partner has not paid out yet (Toss's `paidOutDate` still to come, Stripe's `pending`). */
  readonly pending: number;
}

export interface SettlementPeriod {
  readonly startDate: string;
  readonly endDate: string;
}

/**
 * A row of the partner's report: its own id, the partner's payment id, a sale or a refund (negative gross), the
 * order id where the partner reports it (Toss does, Stripe's balance transactions do not), gross, fee (VAT
 * included) and net amounts in minor units.
 */
export interface SettlementRow {
  readonly reference: string;
  readonly partnerPaymentId: string;
  readonly kind: 'sale' | 'refund';
  readonly orderId: string | null;
  readonly currency: string;
  readonly gross: bigint;
  readonly fee: bigint;
  readonly net: bigint;
  /** The UTC day the sale or refund happened at the partner. */
  readonly soldOn: string;
  /** The UTC day the partner paid the row out (Stripe: made it available), or null while it has not. */
  readonly paidOn: string | null;
}

/** A page of the partner's report. */
export interface ReportPage {
  readonly rows: SettlementRow[];
}

/**
 * The partner's report of the period for one of its accounts, page by page as the partner serves it (Toss
 * `page`/`size`, Stripe `starting_after`), so a day of any size is read in bounded memory.
 */
export async function* partnerReportPages(
  gateway: GatewayName,
  partnerBaseUrl: string,
  secretKey: string,
  period: SettlementPeriod,
  pageSize = gateway === 'toss' ? tossPageSize : stripePageSize,
): AsyncGenerator<ReportPage> {
  const base = partnerBaseUrl.replace(/\/+$/, '');
  yield* gateway === 'toss' ? tossPages(base, secretKey, period, pageSize) : stripePages(base, secretKey, period, pageSize);
}

const reportTimeoutMs = 10_000;
export const stripePageSize = 100;
/** Rows asked of Toss per settlement page (its largest page). */
export const tossPageSize = 10_000;
const settledTypes: ReadonlySet<string> = new Set(['charge', 'payment', 'refund', 'payment_refund']);

export async function importSettlements(
  db: Kysely<KeelDatabase>,
  merchant: MerchantContext,
  gateway: GatewayName,
  partnerBaseUrl: string,
  period: SettlementPeriod,
  logger: Logger,
): Promise<SettlementImport> {
  const partner = merchant.partners.find((candidate) => candidate.gateway === gateway);
  const secretKey = partner?.partnerSecretKey;
  if (secretKey === undefined || secretKey === null) return { settled: 0, alreadySettled: 0, unmatched: 0, pending: 0 };
  const total = { settled: 0, alreadySettled: 0, unmatched: 0, pending: 0 };
  for await (const page of partnerReportPages(gateway, partnerBaseUrl, secretKey, period)) {
    const paid = page.rows.filter((row) => row.paidOn !== null);
    total.pending += page.rows.length - paid.length;
    const booked = await settleRows(db, merchant.id, gateway, paid);
    total.settled += booked.settled;
    total.alreadySettled += booked.alreadySettled;
    total.unmatched += booked.unmatched;
  }
  logger.info({ merchant_id: merchant.id, gateway, settled: total.settled, already_settled: total.alreadySettled, unmatched: total.unmatched, pending: total.pending }, 'settlement report imported');
  return total;
}

/**
 * Books report rows the partner has paid out, each once, in one statement per call: every row is joined to the
 * payment it names (a row that names none is counted unmatched), a `settlement` transaction is inserted per row
 * unless its reference is already in the journal (counted already settled), dated the day the partner paid it
 * out, with the postings `settlementPostings` gives — checked to sum to zero before they are sent.
 */
export async function settleRows(db: Kysely<KeelDatabase>, merchantId: string, gateway: GatewayName, rows: readonly SettlementRow[]): Promise<Omit<SettlementImport, 'pending'>> {
  if (rows.length === 0) return { settled: 0, alreadySettled: 0, unmatched: 0 };
  const ids = rows.map(() => uuidv7());
  const entries = { transaction: [] as string[], account: [] as string[], amount: [] as string[] };
  for (const [index, row] of rows.entries()) {
    for (const posting of balancedPostings('settlement', settlementPostings(gateway, row.gross, row.net))) {
      entries.transaction.push(ids[index] ?? '');
      entries.account.push(posting.account);
      entries.amount.push(posting.amount.toString());
    }
  }
  const column = <T>(of: (row: SettlementRow) => T) => rows.map(of);
  const result = await sql<{ matched: string; settled: string }>`
    WITH r AS (
      SELECT * FROM unnest(${ids}::uuid[], ${column((row) => row.reference)}::text[], ${column((row) => row.partnerPaymentId)}::text[], ${column((row) => row.paidOn)}::date[])
        AS r(id, reference, partner_payment_id, paid_on)),
    m AS (
      SELECT r.*, p.id AS payment_id, p.currency FROM r
      JOIN payments p ON p.merchant_id = ${merchantId}::uuid AND p.gateway = ${gateway} AND p.partner_payment_id = r.partner_payment_id),
    t AS (
      INSERT INTO ledger_transactions (id, merchant_id, kind, payment_id, external_reference, effective_date)
      SELECT id, ${merchantId}::uuid, 'settlement', payment_id, ${`${gateway}:`} || reference, paid_on FROM m
      ON CONFLICT DO NOTHING RETURNING id),
    e AS (
      INSERT INTO ledger_entries (transaction_id, merchant_id, account, currency, amount)
      SELECT e.transaction_id, ${merchantId}::uuid, e.account, m.currency, e.amount
      FROM unnest(${entries.transaction}::uuid[], ${entries.account}::text[], ${entries.amount}::bigint[]) AS e(transaction_id, account, amount)
      JOIN t ON t.id = e.transaction_id JOIN m ON m.id = e.transaction_id)
    SELECT (SELECT count(*) FROM m)::text AS matched, (SELECT count(*) FROM t)::text AS settled`.execute(db);
  const matched = Number(result.rows[0]?.matched ?? 0);
  const settled = Number(result.rows[0]?.settled ?? 0);
  return { settled, alreadySettled: matched - settled, unmatched: rows.length - matched };
}

async function fetchJson(url: string, authorization: string): Promise<unknown> {
  const response = await request(url, { headers: { authorization }, headersTimeout: reportTimeoutMs, bodyTimeout: reportTimeoutMs });
  if (response.statusCode !== 200) {
    await response.body.dump();
    throw new Error(`settlement report answered ${response.statusCode}`);
  }
  return response.body.json();
}

async function* tossPages(base: string, secretKey: string, period: SettlementPeriod, pageSize: number): AsyncGenerator<ReportPage> {
  const today = effectiveDay(new Date());
  for (let page = 1; ; page += 1) {
    const query = new URLSearchParams({ startDate: period.startDate, endDate: period.endDate, page: String(page), size: String(pageSize) });
    const report = (await fetchJson(`${base}/v1/settlements?${query.toString()}`, tossAuthorization(secretKey))) as TossSettlement[];
    const rows = report
      .filter((row) => row.amount !== 0)
      .map((row) => ({
        reference: row.transactionKey,
        partnerPaymentId: row.paymentKey,
        kind: row.amount < 0 ? ('refund' as const) : ('sale' as const),
        orderId: row.orderId,
        currency: row.currency,
        gross: BigInt(row.amount),
        fee: BigInt(row.fees.reduce((sum, fee) => sum + fee.fee, 0) + row.vat),
        net: BigInt(row.payOutAmount),
        soldOn: effectiveDay(new Date(row.approvedAt)),
        paidOn: row.paidOutDate <= today ? row.paidOutDate : null,
      }));
    yield { rows };
    // A page shorter than asked for is the last one.
    if (report.length < pageSize) return;
  }
}

async function* stripePages(base: string, secretKey: string, period: SettlementPeriod, pageSize: number): AsyncGenerator<ReportPage> {
  const since = Math.floor(Date.parse(`${period.startDate}T00:00:00Z`) / 1000);
  const until = Math.floor(Date.parse(`${period.endDate}T23:59:59Z`) / 1000);
  let startingAfter: string | undefined;
  for (;;) {
    const rows: SettlementRow[] = [];
    const query = new URLSearchParams({ 'created[gte]': String(since), 'created[lte]': String(until), limit: String(pageSize) });
    query.append('expand[]', 'data.source');
    if (startingAfter !== undefined) query.set('starting_after', startingAfter);
    const page = (await fetchJson(`${base}/v1/balance_transactions?${query.toString()}`, `Bearer ${secretKey}`)) as StripeList<StripeBalanceTransaction>;
    for (const transaction of page.data) {
      // Payouts, adjustments and Stripe's own fees are not a payment's money.
      if (!settledTypes.has(transaction.type)) continue;
      const source = transaction.source;
      const paymentIntent = typeof source === 'object' && source !== null ? source.payment_intent : null;
      // A charge without a PaymentIntent was not made through Keel: it stays unmatched.
      rows.push({
        reference: transaction.id,
        partnerPaymentId: paymentIntent ?? '',
        kind: transaction.amount < 0 ? 'refund' : 'sale',
        orderId: null,
        currency: transaction.currency.toUpperCase(),
        gross: BigInt(transaction.amount),
        fee: BigInt(transaction.fee),
        net: BigInt(transaction.net),
        soldOn: effectiveDay(new Date(transaction.created * 1000)),
        paidOn: transaction.status === 'available' ? effectiveDay(new Date(transaction.available_on * 1000)) : null,
      });
    }
    yield { rows };
    const last = page.data.at(-1);
    if (!page.has_more || last === undefined) return;
    startingAfter = last.id;
  }
}
