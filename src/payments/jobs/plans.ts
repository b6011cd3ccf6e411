import type { AttemptPlan } from '../operations/attempt-runner.js';
import { authorizePlan } from '../operations/authorize.js';
import { cancelPlan } from '../operations/cancel.js';
import { capturePlan } from '../operations/capture.js';
import type { OperationContext } from '../operations/context.js';
import { refundPlan } from '../operations/refund.js';
import type { Attempt } from '../types.js';

/**
 * The plan that settles an attempt without its original request: what the janitor and the completer use.
 * Everything a plan needs is on the attempt row, except a card, which Keel never stores.
 */
export function planForAttempt(context: OperationContext, attempt: Attempt): AttemptPlan<unknown> {
  switch (attempt.operation) {
    case 'authorize':
      return authorizePlan(context, { source: undefined, snapshot: undefined }) as AttemptPlan<unknown>;
    case 'capture':
      return capturePlan(context, attempt.amount) as AttemptPlan<unknown>;
    case 'cancel':
      return cancelPlan(context, undefined) as AttemptPlan<unknown>;
    case 'refund':
      return refundPlan(context, { paymentId: attempt.paymentId, amount: attempt.amount, reason: undefined }) as AttemptPlan<unknown>;
  }
}
