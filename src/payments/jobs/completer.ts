import { claimAbandonedKeys, discardKey, finishKey, releaseKey, type IdempotencyKey } from '../../idempotency/keys.js';
import { loadMerchantContext } from '../../merchants/merchants.js';
import { newJobContext, runWithContext } from '../../observability/context.js';
import { askAgain } from '../operations/ask-again.js';
import type { OperationContext, PaymentsDeps } from '../operations/context.js';
import { currentAnswer, isOpen, resultForPayment } from '../operations/steps.js';
import { findAttempt, findPayment } from '../repository.js';

/**
 * The completer finishes idempotency keys whose request died mid-flight and was not retried: a key stuck
 * before any side effect is forgotten; a key with an open attempt asks the partner again (the same request under
 * the same partner key when Keel can rebuild it, else an inquiry; never a new charge); a key with a settled
 * attempt, or with only a payment, is finished with the object as it stands. The stored answer is what a late
 * retry with the same key is then replayed.
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
  const payment = await findPayment(deps.db, merchant.id, key.paymentId);
  if (payment === undefined) return;
  const attempt = key.attemptId === null ? undefined : await findAttempt(deps.db, merchant.id, key.attemptId);
  if (attempt !== undefined && isOpen(attempt)) {
    const result = await askAgain(context, attempt, payment);
    if (!result.final) await releaseKey(deps.db, key);
    else if (key.recoveryPoint !== 'finished') await finishKey(deps.db, key, result.status, result.body);
    return;
  }
  const result = attempt === undefined ? resultForPayment(payment) : await currentAnswer(deps.db, payment, attempt);
  await finishKey(deps.db, key, result.status, result.body);
}
