import type { Kysely } from 'kysely';
import type { Logger } from 'pino';
import { request } from 'undici';
import type { GatewayName } from '../gateways/connector.js';
import type { StripeBalanceTransaction, StripeList } from '../gateways/stripe/wire.js';
import { tossAuthorization, type TossSettlement } from '../gateways/toss/wire.js';
import type { MerchantContext } from '../merchants/types.js';
import { isUniqueViolation } from '../storage/database.js';
import type { KeelDatabase } from '../storage/schema.js';
import { postTransaction, settlementPostings } from './ledger.js';

/**
 * Imports partners' settlement reports into the journal. A sale row settles its payment: pending becomes
 * available, less the partner's fee. A refund row (negative) is the refund coming out of the payout: the refund
 * was booked against pending when it happened, and now moves from available back to pending, so after both a
 * refunded sale leaves exactly its payout (gross − fee − refund) available and nothing pending. Rows are recorded
 * once by the partner's transaction id, so importing the same period twice changes nothing; rows that match no
 * payment are counted for reconciliation.
 *
 * - Toss Payments: `GET /v1/settlements?startDate&endDate` (the shape the benchmark gateway also serves), matched
 *   by `paymentKey`; a refund row carries the cancel's `transactionKey`.
 * - Stripe: `GET /v1/balance_transactions?created[gte]&created[lte]&expand[]=data.source`, paged, charge and
 *   refund rows matched by their source's `payment_intent`; rows still `pending` at Stripe wait for a later
 *   import.
 */
export interface SettlementImport {
  readonly settled: number;
  readonly alreadySettled: number;
  readonly unmatched: number;
  /** Rows the partner has not made available yet (Stripe's `pending`). */
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
}

/** The partner's report of the period for one of its accounts, and how many rows it has not made available yet. */
export async function partnerReport(gateway: GatewayName, partnerBaseUrl: string, secretKey: string, period: SettlementPeriod): Promise<{ rows: SettlementRow[]; pending: number }> {
  const base = partnerBaseUrl.replace(/\/+$/, '');
  return gateway === 'toss' ? { rows: await tossRows(base, secretKey, period), pending: 0 } : stripeRows(base, secretKey, period);
}

const reportTimeoutMs = 10_000;
export const stripePageSize = 100;
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
  const { rows, pending } = await partnerReport(gateway, partnerBaseUrl, secretKey, period);
  let settled = 0;
  let alreadySettled = 0;
  let unmatched = 0;
  for (const row of rows) {
    const payment = await db
      .selectFrom('payments')
      .select(['id', 'currency'])
      .where('merchant_id', '=', merchant.id)
      .where('gateway', '=', gateway)
      .where('partner_payment_id', '=', row.partnerPaymentId)
      .executeTakeFirst();
    if (payment === undefined) {
      unmatched += 1;
      continue;
    }
    try {
      await db.transaction().execute((trx) =>
        postTransaction(trx, {
          merchantId: merchant.id,
          currency: payment.currency.trim(),
          kind: 'settlement',
          paymentId: payment.id,
          externalReference: `${gateway}:${row.reference}`,
          postings: settlementPostings(row.gross, row.net),
        }),
      );
      settled += 1;
    } catch (error) {
      if (!isUniqueViolation(error)) throw error;
      alreadySettled += 1;
    }
  }
  logger.info({ merchant_id: merchant.id, gateway, settled, already_settled: alreadySettled, unmatched, pending }, 'settlement report imported');
  return { settled, alreadySettled, unmatched, pending };
}

async function fetchJson(url: string, authorization: string): Promise<unknown> {
  const response = await request(url, { headers: { authorization }, headersTimeout: reportTimeoutMs, bodyTimeout: reportTimeoutMs });
  if (response.statusCode !== 200) {
    await response.body.dump();
    throw new Error(`settlement report answered ${response.statusCode}`);
  }
  return response.body.json();
}

async function tossRows(base: string, secretKey: string, period: SettlementPeriod): Promise<SettlementRow[]> {
  const query = new URLSearchParams({ startDate: period.startDate, endDate: period.endDate });
  const report = (await fetchJson(`${base}/v1/settlements?${query.toString()}`, tossAuthorization(secretKey))) as TossSettlement[];
  return report
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
    }));
}

async function stripeRows(base: string, secretKey: string, period: SettlementPeriod): Promise<{ rows: SettlementRow[]; pending: number }> {
  const since = Math.floor(Date.parse(`${period.startDate}T00:00:00Z`) / 1000);
  const until = Math.floor(Date.parse(`${period.endDate}T23:59:59Z`) / 1000);
  const rows: SettlementRow[] = [];
  let pending = 0;
  let startingAfter: string | undefined;
  for (;;) {
    const query = new URLSearchParams({ 'created[gte]': String(since), 'created[lte]': String(until), limit: String(stripePageSize) });
    query.append('expand[]', 'data.source');
    if (startingAfter !== undefined) query.set('starting_after', startingAfter);
    const page = (await fetchJson(`${base}/v1/balance_transactions?${query.toString()}`, `Bearer ${secretKey}`)) as StripeList<StripeBalanceTransaction>;
    for (const transaction of page.data) {
      // Payouts, adjustments and Stripe's own fees are not a payment's money.
      if (!settledTypes.has(transaction.type)) continue;
      const source = transaction.source;
      const paymentIntent = typeof source === 'object' && source !== null ? source.payment_intent : null;
      if (transaction.status === 'pending') {
        pending += 1;
        continue;
      }
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
      });
    }
    const last = page.data.at(-1);
    if (!page.has_more || last === undefined) break;
    startingAfter = last.id;
  }
  return { rows, pending };
}
