import type { Attempt, Payment } from '../types.js';
import { askAuthorizeAgain } from './authorize.js';
import { askCancelAgain } from './cancel.js';
import { askCaptureAgain } from './capture.js';
import type { OperationContext, OperationResult } from './context.js';
import { askRefundAgain } from './refund.js';

/**
 * Settling an open attempt without its original request (the janitor, the completer): each operation asks the
 * partner again in its own way, under the attempt's own partner idempotency key.
 */
export function askAgain(context: OperationContext, attempt: Attempt, payment: Payment): Promise<OperationResult> {
  switch (attempt.operation) {
    case 'authorize':
      return askAuthorizeAgain(context, attempt, payment);
    case 'capture':
      return askCaptureAgain(context, attempt, payment);
    case 'cancel':
      return askCancelAgain(context, attempt, payment);
    case 'refund':
      return askRefundAgain(context, attempt, payment);
  }
}
