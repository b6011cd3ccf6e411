import assert from 'node:assert/strict';
import type { PaymentStatus } from './types.js';

/**
 * The payment state machine of the contract. Every status change goes through `assertTransition`, so a
 * programming error that would skip a state crashes loudly instead of writing a payment no one can explain.
 */
const transitions: Readonly<Record<PaymentStatus, readonly PaymentStatus[]>> = {
  requires_payment_method: ['requires_confirmation', 'processing', 'requires_capture', 'succeeded', 'failed', 'canceled'],
  requires_confirmation: ['requires_payment_method', 'processing', 'requires_capture', 'succeeded', 'failed', 'canceled'],
  processing: ['requires_confirmation', 'requires_capture', 'succeeded', 'failed', 'canceled'],
  requires_capture: ['processing', 'succeeded', 'failed', 'canceled'],
  succeeded: [],
  failed: [],
  canceled: [],
};

export function canTransition(from: PaymentStatus, to: PaymentStatus): boolean {
  return from === to || transitions[from].includes(to);
}

export function assertTransition(from: PaymentStatus, to: PaymentStatus): void {
  assert.ok(canTransition(from, to), `illegal payment transition ${from} -> ${to}`);
}

/** Statuses from which a confirm may start a partner call. */
export const confirmableStatuses: readonly PaymentStatus[] = ['requires_payment_method', 'requires_confirmation'];
export const cancelableStatuses: readonly PaymentStatus[] = ['requires_payment_method', 'requires_confirmation', 'requires_capture'];
