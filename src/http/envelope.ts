import type { KeelError } from '../errors.js';
import { currentContext } from '../observability/context.js';

/** The one error envelope of the contract: `{"error":{type, code, message, param?, request_id, payment?}}`. */
export function errorEnvelope(error: KeelError): Record<string, unknown> {
  return {
    error: {
      type: error.type,
      code: error.code,
      message: error.message,
      ...(error.param === undefined ? {} : { param: error.param }),
      request_id: currentContext()?.requestId ?? null,
      ...(error.payment === undefined ? {} : { payment: error.payment }),
    },
  };
}
