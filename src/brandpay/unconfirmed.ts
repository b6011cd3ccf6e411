import { sql } from 'kysely';
import { loadMerchantContext } from '../merchants/merchants.js';
import { newJobContext, runWithContext } from '../observability/context.js';
import { cancelPayment } from '../payments/operations/cancel.js';
import type { PaymentsDeps } from '../payments/operations/context.js';

/**
 * Authorizations the shop never confirms are canceled at the partner. A hosted-page approval authorizes the
 * payment and leaves the capture to the shop's confirm (`POST /v1/brandpay/payments/confirm`); a shop whose
 * success page never ran (the shopper closed the tab, the shop's server failed) would otherwise leave the amount
 * held on the shopper's card until the partner lets the hold lapse (days). Past `timeoutMs` after the approval
 * (`KEEL_BRANDPAY_CONFIRM_TIMEOUT_MINUTES`, default 60) the payment is canceled like `POST /v1/payments/{id}/cancel` (event `payment.canceled`); a confirm after that
 * answers 409 `payment_unexpected_state`.
 *
 * Sessions are claimed under `FOR UPDATE SKIP LOCKED`, their `updated_at` pushed to now as a lease, so workers
 * share the work and a cancel that could not reach the partner is tried again one timeout later.
 */
export async function cancelUnconfirmed(deps: PaymentsDeps, timeoutMs: number, batchSizeMax = 50): Promise<{ readonly canceled: number }> {
  const claimed = await sql<{ merchant_id: string; payment_id: string }>`
    UPDATE checkout_sessions SET updated_at = now()
    WHERE id IN (
      SELECT s.id FROM checkout_sessions s JOIN payments p ON p.id = s.payment_id AND p.merchant_id = s.merchant_id
      WHERE s.status = 'approved' AND p.status = 'requires_capture' AND s.updated_at <= now() - make_interval(secs => ${timeoutMs / 1000})
      ORDER BY s.updated_at LIMIT ${batchSizeMax}
      FOR UPDATE OF s SKIP LOCKED
    ) RETURNING merchant_id, payment_id`.execute(deps.db);
  let canceled = 0;
  for (const row of claimed.rows) {
    const result = await runWithContext(newJobContext('unconfirmed', undefined), async () => {
      const merchant = await loadMerchantContext(deps.db, deps.cipher, row.merchant_id);
      if (merchant === undefined) return undefined;
      return cancelPayment({ deps, merchant, key: null }, row.payment_id, `not confirmed by the shop within ${Math.round(timeoutMs / 60_000)} minutes`);
    }).catch((error: unknown) => {
      deps.logger.error({ err: error, payment_id: row.payment_id }, 'canceling an unconfirmed authorization failed; it is tried again later');
      return undefined;
    });
    if (result?.status === 200) canceled += 1;
    deps.logger.info({ payment_id: row.payment_id, status: result?.status }, 'unconfirmed Brand Pay authorization canceled');
  }
  return { canceled };
}
