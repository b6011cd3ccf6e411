import type { DeclineCode, PartnerOutcome } from '../../gateways/connector.js';

/**
 * What Keel knows of an attempt once it has asked the partner: one case per thing known, so no reader has to
 * guess which of several meanings a value has.
 * - `approved`: the partner did it.
 * - `declined`: the partner refused the card (or the refund) for a business reason.
 * - `not_sent`: the request provably never reached the partner (connection refused, breaker open, bulkhead
 *   full, 429); nothing happened.
 * - `refused`: the partner answered that it did nothing (a 4xx that is not a decline).
 * - `unknown`: it may or may not have happened; ask again, not before `askAgainAfter` when that is set.
 * - `absent_confirmed`: the partner has no record of it, from an inquiry made after the partner's consistency
 *   window had passed since Keel last sent it, so the answer cannot be lag.
 */
export type Settlement<T> =
  | { readonly kind: 'approved'; readonly value: T }
  | { readonly kind: 'declined'; readonly code: DeclineCode; readonly message: string }
  | { readonly kind: 'not_sent'; readonly reason: string; readonly retryAfterMs?: number }
  | { readonly kind: 'refused'; readonly reason: string }
  | { readonly kind: 'unknown'; readonly reason: string; readonly askAgainAfter?: Date }
  | { readonly kind: 'absent_confirmed' };

/** A partner call's answer, read as what it proves. */
export function fromPartner<T, U>(outcome: PartnerOutcome<T>, value: (answer: T) => U): Settlement<U> {
  switch (outcome.kind) {
    case 'ok':
      return { kind: 'approved', value: value(outcome.value) };
    case 'declined':
      return { kind: 'declined', code: outcome.code, message: outcome.message };
    case 'unreachable':
      return { kind: 'not_sent', reason: outcome.reason, ...(outcome.retryAfterMs === undefined ? {} : { retryAfterMs: outcome.retryAfterMs }) };
    case 'rejected':
      return { kind: 'refused', reason: outcome.reason };
    case 'unknown':
      return { kind: 'unknown', reason: outcome.reason };
  }
}
