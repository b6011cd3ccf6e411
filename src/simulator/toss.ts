import type { TossPayment, TossSettlement } from '../gateways/toss/wire.js';
import { cardBehaviour, recordChange, simId, type SimCharge, type SimState } from './model.js';

/** The Toss Payments dialect of the benchmark gateway. */

export interface SimAnswer {
  readonly status: number;
  readonly body: unknown;
  /** Answer only after this long, with the work already done (the ambiguous case). */
  readonly delayMs?: number;
}

export interface SimCall {
  readonly state: SimState;
  readonly correlationId: string | null;
  readonly account: string;
  readonly country: string;
  readonly body: Record<string, unknown>;
  readonly query: URLSearchParams;
  readonly ambiguousDelayMs: number;
}

const tossDeclines = {
  card_declined: { code: 'REJECT_CARD_COMPANY', message: '카드사에서 결제를 거절했습니다.' },
  insufficient_funds: { code: 'REJECT_CARD_PAYMENT', message: '한도초과 혹은 잔액부족으로 결제에 실패했습니다.' },
} as const;

/** Records a charge in the partner's ledger; what both dialects share of creating one. */
export function recordCharge(
  call: Pick<SimCall, 'state' | 'account' | 'country' | 'correlationId'>,
  fields: Pick<SimCharge, 'id' | 'dialect' | 'orderId' | 'amount' | 'currency' | 'status' | 'metadata' | 'decline' | 'paymentMethod'> & { cardNumber: string; orderName?: string | null },
): SimCharge {
  const charge: SimCharge = {
    id: fields.id,
    dialect: fields.dialect,
    account: call.account,
    orderId: fields.orderId,
    orderName: fields.orderName ?? null,
    amount: fields.amount,
    currency: fields.currency,
    country: call.country,
    status: fields.status,
    capturedAmount: fields.status === 'captured' ? fields.amount : 0,
    refundedAmount: 0,
    cancels: [],
    metadata: fields.metadata,
    cardLast4: fields.cardNumber.slice(-4),
    createdAt: new Date(),
    approvedAt: fields.decline === null ? new Date() : null,
    decline: fields.decline,
    paymentMethod: fields.paymentMethod,
    correlationId: call.correlationId,
    history: [],
    feeOverride: null,
  };
  recordChange(charge);
  call.state.charges.set(charge.id, charge);
  return charge;
}

export function tossError(status: number, code: string, message: string): SimAnswer {
  return { status, body: { code, message } };
}

export function toTossPayment(charge: SimCharge): TossPayment {
  const status =
    charge.status === 'declined'
      ? 'ABORTED'
      : charge.status === 'canceled'
        ? 'CANCELED'
        : charge.refundedAmount > 0
          ? charge.refundedAmount >= charge.capturedAmount
            ? 'CANCELED'
            : 'PARTIAL_CANCELED'
          : 'DONE';
  return {
    mId: 'tosspayments',
    paymentKey: charge.id,
    orderId: charge.orderId,
    orderName: charge.orderName ?? charge.orderId,
    status,
    totalAmount: charge.amount,
    balanceAmount: charge.amount - charge.refundedAmount,
    currency: charge.currency,
    method: '카드',
    requestedAt: charge.createdAt.toISOString(),
    approvedAt: charge.approvedAt?.toISOString() ?? null,
    card: { number: `********${charge.cardLast4}`, cardType: '신용' },
    cancels: charge.cancels.map((cancel) => ({
      cancelAmount: cancel.amount,
      cancelReason: cancel.reason,
      canceledAt: cancel.at.toISOString(),
      transactionKey: cancel.transactionKey,
      cancelStatus: 'DONE',
    })),
    metadata: charge.metadata,
    failure: charge.decline,
  };
}

export function tossIssueBillingKey(call: SimCall): SimAnswer {
  const number = String(call.body['cardNumber'] ?? '');
  const customerKey = String(call.body['customerKey'] ?? '');
  if (!/^\d{12,19}$/.test(number) || customerKey === '') return tossError(400, 'INVALID_REQUEST', '잘못된 요청입니다.');
  const billingKey = simId('bk_');
  call.state.cards.set(billingKey, {
    number,
    expMonth: Number(call.body['cardExpirationMonth']),
    expYear: 2000 + Number(call.body['cardExpirationYear']),
    account: call.account,
  });
  return {
    status: 200,
    body: {
      mId: 'tosspayments',
      customerKey,
      authenticatedAt: new Date().toISOString(),
      method: '카드',
      billingKey,
      cardCompany: '신한',
      cardNumber: `${number.slice(0, 6)}******${number.slice(-4)}`,
      card: { number: `${number.slice(0, 6)}******${number.slice(-4)}`, cardType: '신용', ownerType: '개인' },
    },
  };
}

export function tossChargeBillingKey(call: SimCall, billingKey: string): SimAnswer {
  const card = call.state.cards.get(billingKey);
  if (card === undefined || card.account !== call.account) return tossError(404, 'NOT_FOUND_BILLING', '존재하지 않는 빌링키입니다.');
  const amount = Number(call.body['amount']);
  const orderId = String(call.body['orderId'] ?? '');
  const orderName = String(call.body['orderName'] ?? '');
  // Toss requires orderName (at most 100 characters) on a billing charge.
  if (!Number.isSafeInteger(amount) || amount <= 0 || orderId === '' || orderName === '' || orderName.length > 100) return tossError(400, 'INVALID_REQUEST', '잘못된 요청입니다.');
  const behaviour = cardBehaviour(card.number);
  if (behaviour.kind === 'error_without_charge') return tossError(500, 'FAILED_INTERNAL_SYSTEM_PROCESSING', '내부 시스템 처리 작업이 실패했습니다.');
  const metadata = (call.body['metadata'] ?? {}) as Record<string, string>;
  const decline = behaviour.kind === 'decline' ? tossDeclines[behaviour.code] : null;
  const charge = recordCharge(call, {
    id: simId('tpk_'),
    dialect: 'toss',
    orderId,
    orderName,
    amount,
    currency: 'KRW',
    status: decline === null ? 'captured' : 'declined',
    metadata,
    cardNumber: card.number,
    decline,
    paymentMethod: billingKey,
  });
  if (decline !== null) return tossError(400, decline.code, decline.message);
  const answer = { status: 200, body: toTossPayment(charge) };
  return behaviour.kind === 'charge_then_hang' ? { ...answer, delayMs: call.ambiguousDelayMs } : answer;
}

export function tossDeleteBillingKey(call: SimCall, billingKey: string): SimAnswer {
  const card = call.state.cards.get(billingKey);
  if (card === undefined || card.account !== call.account) return tossError(404, 'NOT_FOUND_BILLING', '존재하지 않는 빌링키입니다.');
  call.state.cards.delete(billingKey);
  return { status: 200, body: { billingKey, deleted: true } };
}

export function tossCancel(call: SimCall, paymentKey: string): SimAnswer {
  const charge = call.state.charges.get(paymentKey);
  if (charge === undefined || charge.account !== call.account || charge.dialect !== 'toss') {
    return tossError(404, 'NOT_FOUND_PAYMENT', '존재하지 않는 결제 정보 입니다.');
  }
  if (charge.status !== 'captured') return tossError(400, 'ALREADY_CANCELED_PAYMENT', '이미 취소된 결제 입니다.');
  const requested = call.body['cancelAmount'];
  const remaining = charge.capturedAmount - charge.refundedAmount;
  const amount = requested === undefined ? remaining : Number(requested);
  if (!Number.isSafeInteger(amount) || amount <= 0 || amount > remaining) {
    return tossError(400, 'NOT_CANCELABLE_AMOUNT', '취소 할 수 없는 금액 입니다.');
  }
  charge.refundedAmount += amount;
  charge.cancels.push({
    amount,
    reason: String(call.body['cancelReason'] ?? ''),
    transactionKey: simId('tx_'),
    refundId: simId('re_'),
    metadata: {},
    at: new Date(),
  });
  recordChange(charge);
  return { status: 200, body: toTossPayment(charge) };
}

/** An inquiry: it sees the charge as it was `inquiryLagMs` ago (404 before it existed). */
export function tossGetPayment(call: SimCall, lookup: { paymentKey?: string; orderId?: string }): SimAnswer {
  const byKey = lookup.paymentKey === undefined ? undefined : call.state.charges.get(lookup.paymentKey);
  const charge =
    lookup.paymentKey !== undefined
      ? byKey === undefined ? undefined : call.state.visible(byKey)
      : call.state.visibleByOrder(call.account, lookup.orderId ?? '').filter((candidate) => candidate.dialect === 'toss').at(-1);
  if (charge === undefined || charge.account !== call.account) return tossError(404, 'NOT_FOUND_PAYMENT', '존재하지 않는 결제 정보 입니다.');
  return { status: 200, body: toTossPayment(charge) };
}

/** Fees the benchmark gateway charges: 2.5% plus 10% VAT on the fee, rounded to the won. */
export const settlementFeePerMille = 25;
export const settlementVatRate = 0.1;

/** Toss answers a settlement page of at most this many rows (`size`, default 100). */
export const settlementPageSizeMax = 10_000;
/**
 * `GET /v1/settlements?startDate&endDate&page&size`: the account's sale and refund rows of the period, each on
 * its own day (a sale on the day it was approved, a refund on the day it was made), paid out
 * `SimState.payoutDelayDays` later, `size` rows (at most `settlementPageSizeMax`) from page `page` (1-based), as
 * Toss pages them. Page 1 finds the period's rows and keeps their order (`SimState.settlementIndex`); later pages
 * of the same account and period slice it, and only the page asked for is built.
 */
export function tossSettlements(call: SimCall): SimAnswer {
  const start = call.query.get('startDate');
  const end = call.query.get('endDate');
  if (start === null || end === null) return tossError(400, 'INVALID_REQUEST', 'startDate, endDate 는 필수입니다.');
  const page = Number(call.query.get('page') ?? 1);
  const size = Number(call.query.get('size') ?? 100);
  if (!Number.isInteger(page) || page < 1 || !Number.isInteger(size) || size < 1 || size > settlementPageSizeMax) {
    return tossError(400, 'INVALID_REQUEST', `page 는 1 이상, size 는 1~${settlementPageSizeMax} 입니다.`);
  }
  const from = new Date(`${start}T00:00:00Z`).getTime();
  const to = new Date(`${end}T23:59:59.999Z`).getTime();
  const key = `${call.account} ${start} ${end}`;
  if (page === 1 || call.state.settlementIndex?.key !== key) call.state.settlementIndex = { key, rows: [...settlementRows(call.state, call.account, from, to)] };
  const payoutDay = (at: Date) => day(new Date(at.getTime() + call.state.payoutDelayDays * 86_400_000));
  const rows = call.state.settlementIndex.rows.slice((page - 1) * size, page * size).map(({ charge, cancel }) => settlementRow(charge, cancel, payoutDay));
  return { status: 200, body: rows };
}

const day = (at: Date) => at.toISOString().slice(0, 10);

/** The account's settlement rows in the period, in a stable order: each a charge's sale (`cancel` -1) or one of its cancels. */
function* settlementRows(state: SimState, account: string, from: number, to: number): Generator<{ charge: SimCharge; cancel: number }> {
  for (const charge of state.charges.values()) {
    if (charge.account !== account || charge.capturedAmount === 0) continue;
    for (const [index, cancel] of charge.cancels.entries()) {
      const at = cancel.at.getTime();
      if (at >= from && at <= to) yield { charge, cancel: index };
    }
    const approvedAt = charge.approvedAt?.getTime();
    if (approvedAt !== undefined && approvedAt >= from && approvedAt <= to) yield { charge, cancel: -1 };
  }
}

function settlementRow(charge: SimCharge, cancelIndex: number, payoutDay: (at: Date) => string): TossSettlement {
  const row = (transactionKey: string, amount: number, at: Date, fee: number, vat: number): TossSettlement => ({
    mId: 'tosspayments',
    paymentKey: charge.id,
    transactionKey,
    orderId: charge.orderId,
    currency: charge.currency,
    method: '카드',
    amount,
    approvedAt: at.toISOString(),
    soldDate: day(at),
    paidOutDate: payoutDay(at),
    fees: [{ type: 'BASE', fee }],
    supplyAmount: amount - fee - vat,
    vat,
    payOutAmount: amount - fee - vat,
  });
  const cancel = charge.cancels[cancelIndex];
  if (cancel !== undefined) return row(cancel.transactionKey, -cancel.amount, cancel.at, 0, 0);
  // A drifted fee is the whole fee, VAT included: split back into fee and VAT at the same rate.
  // In integers (2.5% is 25 per mille, VAT a tenth), so a half rounds the same way every time.
  const fee = charge.feeOverride === null ? Math.round((charge.capturedAmount * settlementFeePerMille) / 1000) : Math.round(charge.feeOverride / (1 + settlementVatRate));
  const vat = charge.feeOverride === null ? Math.round(fee / 10) : charge.feeOverride - fee;
  return row(charge.id, charge.capturedAmount, charge.approvedAt ?? charge.createdAt, fee, vat);
}
