import { sql } from 'kysely';
import { loadMerchantContext } from '../../merchants/merchants.js';
import { newJobContext, runWithContext } from '../../observability/context.js';
import type { AttemptRow } from '../../storage/schema.js';
import { askAgain } from '../operations/ask-again.js';
import type { PaymentsDeps } from '../operations/context.js';
import { findAttempt, findPayment, toAttempt } from '../repository.js';
import type { Attempt, Payment } from '../types.js';

/**
 * The janitor settles attempts whose outcome is unknown (a timeout or a 5xx after sending) by the partner's
 * word only: the same request under the attempt's own partner idempotency key where Keel can rebuild it (the
 * partner answers with the first request's outcome, never a second charge), otherwise a status inquiry, whose
 * "no such charge" counts only past the partner's consistency window. Attempts are claimed with a lease
 * (`next_inquiry_at` pushed forward under `FOR UPDATE SKIP LOCKED`), so several workers share the work without
 * asking the partner twice at once. After `inquiryCountMax` unanswered rounds the attempt becomes an anomaly
 * for a person.
 */
export interface JanitorOptions {
  readonly batchSizeMax: number;
  readonly leaseSeconds: number;
  readonly inquiryCountMax: number;
}

export const janitorDefaults: JanitorOptions = { batchSizeMax: 50, leaseSeconds: 60, inquiryCountMax: 20 };

export interface JanitorReport {
  readonly claimed: number;
  readonly settled: number;
  readonly anomalies: number;
}

export async function runJanitor(deps: PaymentsDeps, options: JanitorOptions = janitorDefaults): Promise<JanitorReport> {
  const claimed = await sql<AttemptRow>`
    UPDATE payment_attempts SET next_inquiry_at = now() + make_interval(secs => ${options.leaseSeconds})
    WHERE id IN (
      SELECT id FROM payment_attempts
      WHERE status = 'unknown' AND next_inquiry_at <= now()
      ORDER BY next_inquiry_at LIMIT ${options.batchSizeMax}
      FOR UPDATE SKIP LOCKED
    ) RETURNING *`.execute(deps.db);
  let settled = 0;
  let anomalies = 0;
  for (const row of claimed.rows) {
    const attempt = toAttempt(row);
    const outcome = await runWithContext(newJobContext('janitor', row.correlation_id ?? undefined), async () => {
      const merchant = await loadMerchantContext(deps.db, deps.cipher, attempt.merchantId);
      const payment = await findPayment(deps.db, attempt.merchantId, attempt.paymentId);
      if (merchant === undefined || payment === undefined) return 'skipped' as const;
      if (attempt.inquiryCount >= options.inquiryCountMax) {
        await recordAnomaly(deps, payment, attempt, attempt.inquiryCount);
        return 'anomaly' as const;
      }
      await askAgain({ deps, merchant, key: null }, attempt, payment);
      const after = await findAttempt(deps.db, attempt.merchantId, attempt.id);
      deps.logger.info({ attempt_id: attempt.id, operation: attempt.operation, status: after?.status }, 'janitor asked the partner again');
      return after?.status === 'unknown' ? ('pending' as const) : ('settled' as const);
    }).catch((error: unknown) => {
      deps.logger.error({ err: error, attempt_id: attempt.id }, 'janitor failed to settle an attempt; it will be retried after its lease');
      return 'failed' as const;
    });
    if (outcome === 'settled') settled += 1;
    if (outcome === 'anomaly') anomalies += 1;
  }
  return { claimed: claimed.rows.length, settled, anomalies };
}

async function recordAnomaly(deps: PaymentsDeps, payment: Payment, attempt: Attempt, inquiries: number): Promise<void> {
  await deps.db.transaction().execute(async (trx) => {
    await deps.stuckAttempts.record(trx, payment, attempt, inquiries);
    // Stop asking: reconciliation asks again in its run, or a person resolves it from the anomaly.
    await trx.updateTable('payment_attempts').set({ next_inquiry_at: null }).where('id', '=', attempt.id).execute();
  });
  deps.logger.warn({ attempt_id: attempt.id, payment_id: payment.id }, 'attempt left unresolved after the inquiry limit; anomaly recorded');
}
