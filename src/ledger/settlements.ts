import type { Kysely } from 'kysely';
import type { Logger } from 'pino';
import { request } from 'undici';
import type { TossSettlement } from '../gateways/toss/wire.js';
import type { MerchantContext } from '../payments/types.js';
import { isUniqueViolation } from '../storage/database.js';
import type { KeelDatabase } from '../storage/schema.js';
import { postTransaction, settlementPostings } from './ledger.js';

/**
 * Imports a partner's settlement report (Toss Payments' `/v1/settlements`, the shape the benchmark gateway also
 * serves) into the journal: each sale row settles its payment (pending → available, less the fee). Rows are
 * recorded once by their transaction key, so importing the same day twice changes nothing. Refund rows were
 * booked when the refund happened; rows that match no payment are counted for reconciliation.
 */
export interface SettlementImport {
  readonly settled: number;
  readonly alreadySettled: number;
  readonly unmatched: number;
}

export async function importTossSettlements(
  db: Kysely<KeelDatabase>,
  merchant: MerchantContext,
  partnerBaseUrl: string,
  period: { readonly startDate: string; readonly endDate: string },
  logger: Logger,
): Promise<SettlementImport> {
  const toss = merchant.partners.find((partner) => partner.gateway === 'toss');
  if (toss === undefined) return { settled: 0, alreadySettled: 0, unmatched: 0 };
  const query = new URLSearchParams({ startDate: period.startDate, endDate: period.endDate });
  const response = await request(`${partnerBaseUrl.replace(/\/+$/, '')}/v1/settlements?${query.toString()}`, {
    headers: { authorization: `Basic ${Buffer.from(`${toss.partnerSecretKey}:`).toString('base64')}` },
    headersTimeout: 10_000,
    bodyTimeout: 10_000,
  });
  if (response.statusCode !== 200) throw new Error(`settlement report answered ${response.statusCode}`);
  const rows = (await response.body.json()) as TossSettlement[];
  let settled = 0;
  let alreadySettled = 0;
  let unmatched = 0;
  for (const row of rows.filter((candidate) => candidate.amount > 0)) {
    const payment = await db
      .selectFrom('payments')
      .select(['id', 'currency'])
      .where('merchant_id', '=', merchant.id)
      .where('partner_payment_id', '=', row.paymentKey)
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
          externalReference: `toss:${row.transactionKey}`,
          postings: settlementPostings(BigInt(row.amount), BigInt(row.payOutAmount)),
        }),
      );
      settled += 1;
    } catch (error) {
      if (!isUniqueViolation(error)) throw error;
      alreadySettled += 1;
    }
  }
  logger.info({ merchant_id: merchant.id, settled, already_settled: alreadySettled, unmatched }, 'settlement report imported');
  return { settled, alreadySettled, unmatched };
}
