import { KeelError } from '../../errors.js';
import { appendEvent } from '../../events/outbox.js';
import type { PaymentSource } from '../../gateways/connector.js';
import { advanceKey, finishKey } from '../../idempotency/keys.js';
import { isUniqueViolation } from '../../storage/database.js';
import { newId } from '../../storage/ids.js';
import { findPayment, toPayment } from '../repository.js';
import { paymentToApi } from '../serialize.js';
import type { Attempt, CaptureMethod, Payment, PaymentMethodSnapshot } from '../types.js';
import { authorizePayment, chargeablePartners, chargeAndRecord, sourceFingerprint } from './authorize.js';
import type { OperationContext, OperationResult, PaymentsDeps } from './context.js';
import type { FreshStart } from '../keyed.js';
import type { MerchantContext } from '../../merchants/types.js';
import { startPayment } from './first-send.js';
import { openAttempt, resultForPayment } from './steps.js';

/** Creating a payment, and confirming it in the same request when `confirm` is true. */
export interface CreatePaymentInput {
  readonly amount: bigint;
  readonly currency: string;
  readonly orderId: string;
  readonly country: string;
  readonly captureMethod: CaptureMethod;
  readonly source: PaymentSource | undefined;
  readonly snapshot: PaymentMethodSnapshot | undefined;
  readonly customerId: string | undefined;
  readonly paymentMethodId: string | undefined;
  readonly confirm: boolean;
  readonly description: string | undefined;
  readonly metadata: Readonly<Record<string, string>>;
}

export async function createPayment(context: OperationContext, input: CreatePaymentInput): Promise<OperationResult> {
  const { deps, merchant, key } = context;
  if (key?.paymentId != null) {
    // A resumed key: the payment exists; confirming resumes from the attempt the key records.
    if (input.confirm) return authorizePayment(context, { paymentId: key.paymentId, source: input.source, snapshot: input.snapshot });
    const payment = await findPayment(deps.db, merchant.id, key.paymentId);
    if (payment === undefined) throw new Error('created payment vanished');
    return resultForPayment(payment);
  }
  const created = await insertPayment(context, input);
  deps.faults.check('after_payment_created');
  if (created.attempt === undefined || input.source === undefined) return resultForPayment(created.payment);
  return chargeAndRecord(context, created.attempt, created.payment, input.source);
}

/**
 * Creating and confirming a new payment at its cost floor (first-send.ts): the input's checks, then phase
 * `attempt_created` with the key inserted in it, then the partner call and the outcome. `undefined` while the
 * key exists: the request then goes the general way.
 */
export function startCreatePayment(deps: PaymentsDeps, merchant: MerchantContext, inputOf: () => Promise<CreatePaymentInput>): FreshStart {
  return async (claim) => {
    const input = await inputOf();
    const source = input.source;
    if (!input.confirm || source === undefined) return undefined;
    const started = await startPayment(deps, merchant, claim, { ...input, source });
    if (started === undefined) return undefined;
    return {
      key: started.key,
      rest: (context) => {
        context.deps.faults.check('after_payment_created');
        return chargeAndRecord(context, started.attempt, started.payment, source);
      },
    };
  };
}

/**
 * Phase `payment_created`: the payment row, its event, and (when confirming) its first attempt with its own
 * partner idempotency key, with the key's recovery point, in one transaction. A currency none of the
 * merchant's partners can charge (with this source) is refused before anything is written.
 */
async function insertPayment(context: OperationContext, input: CreatePaymentInput): Promise<{ payment: Payment; attempt: Attempt | undefined }> {
  const { deps, merchant, key } = context;
  const [gateway] = chargeablePartners(context, input.currency, input.source);
  const { uuid } = newId('payment');
  try {
    return await deps.db.transaction().execute(async (trx) => {
      const row = await trx
        .insertInto('payments')
        .values({
          id: uuid,
          merchant_id: merchant.id,
          order_id: input.orderId,
          amount: input.amount,
          currency: input.currency,
          country: input.country,
          status: input.source === undefined ? 'requires_payment_method' : 'requires_confirmation',
          capture_method: input.captureMethod,
          amount_capturable: 0n,
          amount_received: 0n,
          amount_refunded: 0n,
          gateway,
          payment_method: input.snapshot === undefined ? null : JSON.stringify(input.snapshot),
          customer_id: input.customerId ?? null,
          payment_method_id: input.paymentMethodId ?? null,
          description: input.description ?? null,
          metadata: JSON.stringify(input.metadata),
          livemode: merchant.livemode,
        })
        .returningAll()
        .executeTakeFirstOrThrow();
      const payment = toPayment(row);
      const object = paymentToApi(payment);
      await appendEvent(trx, { merchantId: payment.merchantId, type: 'payment.created', aggregateId: payment.id, object });
      if (input.confirm && input.source !== undefined) {
        const attempt = await openAttempt(trx, context, payment, { operation: 'authorize', amount: payment.amount, sourceFingerprint: sourceFingerprint(deps.cipher, input.source) });
        return { payment, attempt };
      }
      if (key !== null) {
        await advanceKey(trx, key, 'payment_created', { paymentId: uuid });
        await finishKey(trx, key, 200, object);
      }
      return { payment, attempt: undefined };
    });
  } catch (error) {
    if (isUniqueViolation(error, 'payments_merchant_id_order_id_key')) {
      throw new KeelError('order_id_taken', `This merchant already has a payment with order_id ${input.orderId}.`, { param: 'order_id' });
    }
    throw error;
  }
}
