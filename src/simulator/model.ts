import { randomBytes } from 'node:crypto';
import type { StripeBalanceTransaction } from '../gateways/stripe/wire.js';

/**
 * The benchmark gateway's memory: the partner's own ledger of charges (the ground truth of "charged exactly
 * once"), its tokens, its idempotency cache, and the faults and latency an operator or test has set per country.
 */

export type SimChargeStatus = 'authorized' | 'captured' | 'canceled' | 'declined' | 'requires_action';

export interface SimCancel {
  readonly amount: number;
  readonly reason: string;
  readonly transactionKey: string;
  readonly refundId: string;
  readonly metadata: Record<string, string>;
  readonly at: Date;
}

export interface SimCharge {
  readonly id: string;
  readonly dialect: 'toss' | 'stripe';
  readonly account: string;
  readonly orderId: string;
  /** What the order was called in the request (Toss `orderName`, which it requires); null where none is sent. */
  readonly orderName: string | null;
  /** What was charged; drift (`POST /__sim/drift` kind `amount`) may change it after the fact. */
  amount: number;
  readonly currency: string;
  readonly country: string;
  status: SimChargeStatus;
  capturedAmount: number;
  refundedAmount: number;
  readonly cancels: SimCancel[];
  readonly metadata: Record<string, string>;
  readonly cardLast4: string;
  readonly createdAt: Date;
  approvedAt: Date | null;
  readonly decline: { readonly code: string; readonly message: string } | null;
  readonly paymentMethod: string | null;
  /** The `X-Correlation-Id` the request carried, so tests can follow one request across the partner boundary. */
  readonly correlationId: string | null;
  /** Every state the charge has been in, with when it entered it: what a lagging inquiry sees. */
  readonly history: { readonly at: number; readonly state: ChargeState }[];
  /** The whole settlement fee for this sale (VAT included) when drift set one; null: the contract rate. */
  feeOverride: number | null;
}

/** The part of a charge that changes after it is created. */
export interface ChargeState {
  readonly status: SimChargeStatus;
  readonly capturedAmount: number;
  readonly refundedAmount: number;
  readonly cancelCount: number;
}

/** Records a charge's current state in its history; every change to a charge calls it. */
export function recordChange(charge: SimCharge, now = Date.now()): void {
  charge.history.push({
    at: now,
    state: { status: charge.status, capturedAmount: charge.capturedAmount, refundedAmount: charge.refundedAmount, cancelCount: charge.cancels.length },
  });
}

export type FaultMode = 'outage' | 'latency' | 'errors' | 'hang';

export interface Fault {
  readonly country: string | null;
  readonly mode: FaultMode;
  readonly rate: number;
  readonly latencyMs: number;
  readonly until: number;
}

export interface LatencyModel {
  readonly p50Ms: number;
  readonly p99Ms: number;
}

export interface StoredCard {
  readonly number: string;
  readonly expMonth: number;
  readonly expYear: number;
  readonly account: string;
}

export interface IdempotentEntry {
  readonly requestHash: string;
  response: { readonly status: number; readonly body: unknown } | null;
}

/** What a test card makes the partner do. */
export type CardBehaviour =
  | { readonly kind: 'approve' }
  | { readonly kind: 'decline'; readonly code: 'card_declined' | 'insufficient_funds' }
  | { readonly kind: 'error_without_charge' }
  | { readonly kind: 'charge_then_hang' }
  | { readonly kind: 'authentication_required' };

export const testCards = {
  approve: '4242424242424242',
  decline: '4000000000000002',
  insufficientFunds: '4000000000009995',
  errorWithoutCharge: '4000000000000119',
  chargeThenHang: '4000000000000259',
  authenticationRequired: '4000002760003184',
} as const;

export function cardBehaviour(number: string): CardBehaviour {
  switch (number) {
    case testCards.decline:
      return { kind: 'decline', code: 'card_declined' };
    case testCards.insufficientFunds:
      return { kind: 'decline', code: 'insufficient_funds' };
    case testCards.errorWithoutCharge:
      return { kind: 'error_without_charge' };
    case testCards.chargeThenHang:
      return { kind: 'charge_then_hang' };
    case testCards.authenticationRequired:
      return { kind: 'authentication_required' };
    default:
      return { kind: 'approve' };
  }
}

const idempotencyEntriesMax = 200_000;
/** The benchmark gateway pays a sale out two days after it, in both dialects, unless `POST /__sim/payouts` says otherwise. */
export const defaultPayoutDelayDays = 2;
/** The longest payout delay `POST /__sim/payouts` takes. */
export const payoutDelayDaysMax = 30;

export class SimState {
  readonly charges = new Map<string, SimCharge>();
  readonly cards = new Map<string, StoredCard>();
  readonly idempotency = new Map<string, IdempotentEntry>();
  faults: Fault[] = [];
  readonly latency = new Map<string, LatencyModel>();
  /** How long after it happens an effect becomes visible to inquiries, search and lists. */
  inquiryLagMs = 0;
  /** Days after a sale (or refund) that the partner pays it out: Toss's `paidOutDate`, Stripe's `available_on`. */
  payoutDelayDays = defaultPayoutDelayDays;
  /**
   * The rows of the settlement report last read from its first page (an account and period), so that its later
   * pages are sliced rather than found again; reading page 1 builds it afresh.
   */
  settlementIndex: { readonly key: string; readonly rows: readonly { readonly charge: SimCharge; readonly cancel: number }[] } | null = null;
  /**
   * Stripe's balance transactions of the list last read from its start (an account, period, type and expansion),
   * in list order, with each one's position, so that a page `starting_after` one of them is sliced, not sorted again.
   */
  balanceIndex: { readonly key: string; readonly rows: readonly StripeBalanceTransaction[]; readonly positions: ReadonlyMap<string, number> } | null = null;

  reset(): void {
    this.charges.clear();
    this.cards.clear();
    this.idempotency.clear();
    this.faults = [];
    this.latency.clear();
    this.inquiryLagMs = 0;
    this.payoutDelayDays = defaultPayoutDelayDays;
    this.settlementIndex = null;
    this.balanceIndex = null;
  }

  /**
   * The charge as an inquiry sees it now: its state `inquiryLagMs` ago, or undefined if it did not exist yet.
   * Writes (capture, cancel, refund) always act on the true state; only reads lag, as a partner's search and
   * replicas do.
   */
  visible(charge: SimCharge, now = Date.now()): SimCharge | undefined {
    const horizon = now - this.inquiryLagMs;
    const seen = charge.history.findLast((entry) => entry.at <= horizon);
    if (seen === undefined) return undefined;
    return {
      ...charge,
      status: seen.state.status,
      capturedAmount: seen.state.capturedAmount,
      refundedAmount: seen.state.refundedAmount,
      cancels: charge.cancels.slice(0, seen.state.cancelCount),
    };
  }

  activeFault(country: string, now: number): Fault | undefined {
    this.faults = this.faults.filter((fault) => fault.until > now);
    return this.faults.find((fault) => fault.country === country) ?? this.faults.find((fault) => fault.country === null);
  }

  latencyFor(country: string): LatencyModel | undefined {
    return this.latency.get(country) ?? this.latency.get('*');
  }

  remember(key: string, entry: IdempotentEntry): void {
    if (this.idempotency.size >= idempotencyEntriesMax) {
      const oldest = this.idempotency.keys().next().value;
      if (oldest !== undefined) this.idempotency.delete(oldest);
    }
    this.idempotency.set(key, entry);
  }

  /** Tests: every recorded change moves `ms` into the past, as if that much time had passed for inquiries. */
  ageHistory(ms: number): void {
    for (const charge of this.charges.values()) {
      charge.history.splice(0, charge.history.length, ...charge.history.map((entry) => ({ at: entry.at - ms, state: entry.state })));
    }
  }

  /** The charges of an order that an inquiry can see now (see `visible`). */
  visibleByOrder(account: string, orderId: string): SimCharge[] {
    const now = Date.now();
    return [...this.charges.values()]
      .filter((charge) => charge.account === account && charge.orderId === orderId)
      .flatMap((charge) => this.visible(charge, now) ?? []);
  }
}

export function simId(prefix: string): string {
  return `${prefix}${randomBytes(12).toString('hex')}`;
}
