import { claimAbandonedKeys, discardKey, finishKey, releaseKey, type IdempotencyKey } from '../../http/idempotency.js';
import { loadMerchantContext } from '../../merchants/merchants.js';
import { newJobContext, runWithContext } from '../../observability/context.js';
import { runAttempt } from '../operations/attempt-runner.js';
import type { OperationContext, PaymentsDeps } from '../operations/context.js';
import { resultForPayment } from '../operations/records.js';
import { findAttempt, findPayment } from '../repository.js';
import { planForAttempt } from './plans.js';

/**
 * The completer finishes idempotency keys whose request died mid-flight and was not retried: a key stuck
 * before any side effect is forgotten; a key with an attempt is resumed (inquiry first, never a blind resend);
 * a key with only a payment is finished with the payment as it stands. The stored answer is what a late retry
 * with the same key will then be replayed.
 */
export interface CompleterOptions {
  readonly abandonedAfterMs: number;
  readonly batchSizeMax: number;
}

export async function runCompleter(deps: PaymentsDeps, options: CompleterOptions): Promise<{ completed: number }> {
  const keys = await claimAbandonedKeys(deps.db, options.abandonedAfterMs, options.batchSizeMax);
  let completed = 0;
  for (const key of keys) {
    await runWithContext(newJobContext('completer'), () => completeKey(deps, key))
      .then(() => {
        completed += 1;
      })
      .catch(async (error: unknown) => {
        deps.logger.error({ err: error, idempotency_key_id: key.id }, 'completer failed; the key will be claimed again');
        await releaseKey(deps.db, key).catch(() => undefined);
      });
  }
  return { completed };
}

async function completeKey(deps: PaymentsDeps, key: IdempotencyKey): Promise<void> {
  if (key.recoveryPoint === 'started' || key.paymentId === null) {
    await discardKey(deps.db, key);
    return;
  }
  const merchant = await loadMerchantContext(deps.db, deps.cipher, key.merchantId);
  if (merchant === undefined) return;
  const context: OperationContext = { deps, merchant, key };
  const attempt = key.attemptId === null ? undefined : await findAttempt(deps.db, merchant.id, key.attemptId);
  if (attempt?.status === 'pending') {
    const result = await runAttempt(context, attempt.paymentId, planForAttempt(context, attempt));
    if (!result.final) await releaseKey(deps.db, key);
    else if (key.recoveryPoint !== 'finished') await finishKey(deps.db, key, result.status, result.body);
    return;
  }
  if (attempt !== undefined) {
    // Settled, or left unknown for the janitor: the key's answer is the object as it stands.
    const plan = planForAttempt(context, attempt);
    const result = await deps.db.transaction().execute(async (trx) => {
      const payment = await findPayment(trx, merchant.id, attempt.paymentId);
      if (payment === undefined) throw new Error(`attempt ${attempt.id} has no payment`);
      return plan.describe(trx, payment, attempt);
    });
    await finishKey(deps.db, key, result.status, result.body);
    return;
  }
  const payment = await findPayment(deps.db, merchant.id, key.paymentId);
  if (payment === undefined) return;
  const result = resultForPayment(payment);
  await finishKey(deps.db, key, result.status, result.body);
}
