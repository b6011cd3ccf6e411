import { KeelError } from '../../errors.js';
import type { CardDetails } from '../../gateways/connector.js';
import { advanceKey, finishKey } from '../../http/idempotency.js';
import { isUniqueViolation } from '../../storage/database.js';
import { newId } from '../../storage/ids.js';
import { findPayment, toPayment } from '../repository.js';
import type { CaptureMethod, PaymentMethodSnapshot } from '../types.js';
import { authorizePayment } from './authorize.js';
import type { OperationContext, OperationResult } from './context.js';
import { emitted, resultForPayment } from './records.js';

/** Creating a payment, and confirming it in the same request when `confirm` is true. */
export interface CreatePaymentInput {
  readonly amount: bigint;
  readonly currency: string;
  readonly orderId: string;
  readonly country: string;
  readonly captureMethod: CaptureMethod;
  readonly card: CardDetails | undefined;
  readonly snapshot: PaymentMethodSnapshot | undefined;
  readonly confirm: boolean;
  readonly description: string | undefined;
  readonly metadata: Readonly<Record<string, string>>;
}

export async function createPayment(context: OperationContext, input: CreatePaymentInput): Promise<OperationResult> {
  const { deps, merchant, key } = context;
  let paymentId = key?.paymentId ?? null;
  if (paymentId === null) {
    paymentId = await insertPayment(context, input);
    deps.faults.check('after_payment_created');
  }
  if (!input.confirm) {
    const payment = await findPayment(deps.db, merchant.id, paymentId);
    if (payment === undefined) throw new Error('created payment vanished');
    return resultForPayment(payment);
  }
  return authorizePayment(context, { paymentId, source: input.card === undefined ? undefined : { card: input.card }, snapshot: input.snapshot });
}

/** Phase `payment_created`: the payment row, its event and the key's recovery point in one transaction. */
async function insertPayment(context: OperationContext, input: CreatePaymentInput): Promise<string> {
  const { deps, merchant, key } = context;
  const { uuid } = newId('payment');
  try {
    await deps.db.transaction().execute(async (trx) => {
      const row = await trx
        .insertInto('payments')
        .values({
          id: uuid,
          merchant_id: merchant.id,
          order_id: input.orderId,
          amount: input.amount,
          currency: input.currency,
          country: input.country,
          status: input.card === undefined ? 'requires_payment_method' : 'requires_confirmation',
          capture_method: input.captureMethod,
          amount_capturable: 0n,
          amount_received: 0n,
          amount_refunded: 0n,
          gateway: merchant.gateway,
          payment_method: input.snapshot === undefined ? null : JSON.stringify(input.snapshot),
          description: input.description ?? null,
          metadata: JSON.stringify(input.metadata),
          livemode: merchant.livemode,
        })
        .returningAll()
        .executeTakeFirstOrThrow();
      const result = await emitted(trx, toPayment(row), 'payment.created', 200);
      if (key !== null) {
        await advanceKey(trx, key, 'payment_created', { paymentId: uuid });
        if (!input.confirm) await finishKey(trx, key, result.status, result.body);
      }
    });
  } catch (error) {
    if (isUniqueViolation(error, 'payments_merchant_id_order_id_key')) {
      throw new KeelError('order_id_taken', `This merchant already has a payment with order_id ${input.orderId}.`, { param: 'order_id' });
    }
    throw error;
  }
  return uuid;
}
