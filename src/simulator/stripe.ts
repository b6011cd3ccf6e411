import { cardBrand } from '../gateways/connector.js';
import type { StripeBalanceTransaction, StripePaymentIntent, StripeRefund } from '../gateways/stripe/wire.js';
import { cardBehaviour, recordChange, simId, type SimCharge } from './model.js';
import { recordCharge, type SimAnswer, type SimCall } from './toss.js';

/** The Stripe dialect of the benchmark gateway (form-encoded PaymentIntents, refunds, payment methods). */

export function stripeError(status: number, type: string, message: string, extra: Record<string, unknown> = {}): SimAnswer {
  return { status, body: { error: { type, message, ...extra } } };
}

export function toIntent(charge: SimCharge): StripePaymentIntent {
  const status =
    charge.status === 'declined'
      ? 'requires_payment_method'
      : charge.status === 'authorized'
        ? 'requires_capture'
        : charge.status === 'canceled'
          ? 'canceled'
          : charge.status === 'requires_action'
            ? 'requires_action'
            : 'succeeded';
  return {
    id: charge.id,
    object: 'payment_intent',
    amount: charge.amount,
    amount_capturable: charge.status === 'authorized' ? charge.amount : 0,
    amount_received: charge.capturedAmount,
    currency: charge.currency.toLowerCase(),
    status,
    capture_method: charge.status === 'authorized' || charge.metadata['capture_method'] === 'manual' ? 'manual' : 'automatic',
    latest_charge: charge.status === 'declined' || charge.status === 'requires_action' ? null : `ch_${charge.id.slice(3)}`,
    metadata: charge.metadata,
    last_payment_error:
      charge.decline === null ? null : { type: 'card_error', code: 'card_declined', decline_code: charge.decline.code, message: charge.decline.message },
    payment_method: charge.paymentMethod,
  };
}

function cardFrom(call: SimCall): { number: string; pm: string | null } | undefined {
  const pm = call.body['payment_method'];
  if (typeof pm === 'string') {
    const stored = call.state.cards.get(pm);
    return stored === undefined || stored.account !== call.account ? undefined : { number: stored.number, pm };
  }
  const data = call.body['payment_method_data'] as { card?: { number?: string } } | undefined;
  const number = data?.card?.number;
  return typeof number === 'string' && /^\d{12,19}$/.test(number) ? { number, pm: null } : undefined;
}

export function stripeCreateIntent(call: SimCall): SimAnswer {
  const amount = Number(call.body['amount']);
  const currency = String(call.body['currency'] ?? '').toUpperCase();
  if (!Number.isSafeInteger(amount) || amount <= 0 || !/^[A-Z]{3}$/.test(currency)) {
    return stripeError(400, 'invalid_request_error', 'Invalid amount or currency.', { param: 'amount' });
  }
  const card = cardFrom(call);
  if (card === undefined) return stripeError(400, 'invalid_request_error', 'A valid payment method is required.', { param: 'payment_method' });
  const behaviour = cardBehaviour(card.number);
  if (behaviour.kind === 'error_without_charge') return stripeError(500, 'api_error', 'An unknown error occurred.');
  const manual = call.body['capture_method'] === 'manual';
  const metadata = { ...((call.body['metadata'] ?? {}) as Record<string, string>) };
  const decline =
    behaviour.kind === 'decline'
      ? { code: behaviour.code, message: behaviour.code === 'insufficient_funds' ? 'Your card has insufficient funds.' : 'Your card was declined.' }
      : null;
  const charge = recordCharge(call, {
    id: simId('pi_'),
    dialect: 'stripe',
    orderId: metadata['order_id'] ?? '',
    amount,
    currency,
    // The 3-D Secure card: the intent waits for the shopper's authentication, nothing is held yet.
    status: decline !== null ? 'declined' : behaviour.kind === 'authentication_required' ? 'requires_action' : manual ? 'authorized' : 'captured',
    metadata,
    cardNumber: card.number,
    decline,
    paymentMethod: card.pm,
  });
  if (decline !== null) {
    return stripeError(402, 'card_error', decline.message, {
      code: 'card_declined',
      decline_code: decline.code,
      payment_intent: toIntent(charge),
    });
  }
  const answer = { status: 200, body: toIntent(charge) };
  return behaviour.kind === 'charge_then_hang' ? { ...answer, delayMs: call.ambiguousDelayMs } : answer;
}

function ownIntent(call: SimCall, id: string): SimCharge | undefined {
  const charge = call.state.charges.get(id);
  return charge !== undefined && charge.account === call.account && charge.dialect === 'stripe' ? charge : undefined;
}

const noSuchIntent = (id: string) => stripeError(404, 'invalid_request_error', `No such payment_intent: '${id}'`, { code: 'resource_missing' });

export function stripeCapture(call: SimCall, id: string): SimAnswer {
  const charge = ownIntent(call, id);
  if (charge === undefined) return noSuchIntent(id);
  if (charge.status !== 'authorized') {
    return stripeError(400, 'invalid_request_error', `This PaymentIntent could not be captured because it has a status of ${toIntent(charge).status}.`, {
      code: 'payment_intent_unexpected_state',
    });
  }
  const requested = call.body['amount_to_capture'];
  const amount = requested === undefined ? charge.amount : Number(requested);
  if (!Number.isSafeInteger(amount) || amount <= 0 || amount > charge.amount) {
    return stripeError(400, 'invalid_request_error', 'Invalid amount_to_capture.', { param: 'amount_to_capture' });
  }
  charge.status = 'captured';
  charge.capturedAmount = amount;
  recordChange(charge);
  return { status: 200, body: toIntent(charge) };
}

export function stripeCancel(call: SimCall, id: string): SimAnswer {
  const charge = ownIntent(call, id);
  if (charge === undefined) return noSuchIntent(id);
  if (charge.status === 'captured') {
    return stripeError(400, 'invalid_request_error', 'You cannot cancel this PaymentIntent because it has a status of succeeded.', {
      code: 'payment_intent_unexpected_state',
    });
  }
  charge.status = 'canceled';
  recordChange(charge);
  return { status: 200, body: toIntent(charge) };
}

/** Retrieval, search and lists are inquiries: they see each intent as it was `inquiryLagMs` ago. */
export function stripeGetIntent(call: SimCall, id: string): SimAnswer {
  const own = ownIntent(call, id);
  const charge = own === undefined ? undefined : call.state.visible(own);
  return charge === undefined ? noSuchIntent(id) : { status: 200, body: toIntent(charge) };
}

/** Supports the one query form Keel sends: `metadata['key']:'value'`. */
export function stripeSearchIntents(call: SimCall): SimAnswer {
  const match = /^metadata\[['"]([^'"]+)['"]\]:['"]([^'"]*)['"]$/.exec(call.query.get('query') ?? '');
  if (match === null) return stripeError(400, 'invalid_request_error', 'Unsupported search query.', { param: 'query' });
  const [, key = '', value = ''] = match;
  const now = Date.now();
  const data = [...call.state.charges.values()]
    .filter((charge) => charge.account === call.account && charge.dialect === 'stripe' && charge.metadata[key] === value)
    .flatMap((charge) => call.state.visible(charge, now) ?? [])
    .map(toIntent);
  return { status: 200, body: { object: 'search_result', data, has_more: false } };
}

function toRefund(charge: SimCharge, cancel: SimCharge['cancels'][number]): StripeRefund {
  return {
    id: cancel.refundId,
    object: 'refund',
    amount: cancel.amount,
    currency: charge.currency.toLowerCase(),
    payment_intent: charge.id,
    status: 'succeeded',
    metadata: cancel.metadata,
  };
}

export function stripeRefund(call: SimCall): SimAnswer {
  const id = String(call.body['payment_intent'] ?? '');
  const charge = ownIntent(call, id);
  if (charge === undefined) return noSuchIntent(id);
  const remaining = charge.capturedAmount - charge.refundedAmount;
  const amount = call.body['amount'] === undefined ? remaining : Number(call.body['amount']);
  if (charge.status !== 'captured' || !Number.isSafeInteger(amount) || amount <= 0 || amount > remaining) {
    return stripeError(400, 'invalid_request_error', 'Refund amount is greater than the unrefunded amount on the charge.', {
      code: 'amount_too_large',
    });
  }
  charge.refundedAmount += amount;
  const cancel = {
    amount,
    reason: 'requested_by_customer',
    transactionKey: simId('txn_'),
    refundId: simId('re_'),
    metadata: { ...((call.body['metadata'] ?? {}) as Record<string, string>) },
    at: new Date(),
  };
  charge.cancels.push(cancel);
  recordChange(charge);
  return { status: 200, body: toRefund(charge, cancel) };
}

export function stripeListRefunds(call: SimCall): SimAnswer {
  const id = call.query.get('payment_intent') ?? '';
  const own = ownIntent(call, id);
  const charge = own === undefined ? undefined : call.state.visible(own);
  const data = charge === undefined ? [] : charge.cancels.map((cancel) => toRefund(charge, cancel));
  return { status: 200, body: { object: 'list', data, has_more: false } };
}

export function stripeCreatePaymentMethod(call: SimCall): SimAnswer {
  const card = call.body['card'] as { number?: string; exp_month?: string; exp_year?: string } | undefined;
  const number = card?.number ?? '';
  if (!/^\d{12,19}$/.test(number)) return stripeError(402, 'card_error', 'Your card number is incorrect.', { code: 'incorrect_number' });
  const id = simId('pm_');
  const expMonth = Number(card?.exp_month);
  const expYear = Number(card?.exp_year);
  call.state.cards.set(id, { number, expMonth, expYear, account: call.account });
  return {
    status: 200,
    body: { id, object: 'payment_method', type: 'card', card: { brand: cardBrand(number), last4: number.slice(-4), exp_month: expMonth, exp_year: expYear } },
  };
}

export function stripeDetachPaymentMethod(call: SimCall, id: string): SimAnswer {
  const card = call.state.cards.get(id);
  if (card === undefined || card.account !== call.account) {
    return stripeError(404, 'invalid_request_error', `No such PaymentMethod: '${id}'`, { code: 'resource_missing' });
  }
  call.state.cards.delete(id);
  return { status: 200, body: { id, object: 'payment_method', type: 'card', customer: null } };
}

/** Fees the benchmark gateway charges in its Stripe dialect: 2.9%, plus 30 minor units outside zero-decimal currencies. */
export const stripeFeePerMille = 29;
export const stripeFixedFee = 30;
const zeroDecimalCurrencies = new Set(['KRW', 'JPY', 'VND', 'CLP', 'ISK', 'XOF', 'XAF', 'UGX']);
const balanceListLimitMax = 100;

/**
 * `GET /v1/balance_transactions`: one `charge` row per captured PaymentIntent (less the fee) and one `refund`
 * row per refund, newest first, filtered by `created[gte]`/`created[lte]` (Unix seconds) and `type`, paged by
 * `limit` and `starting_after`. A list read from its start is kept in order (`SimState.balanceIndex`), and its
 * later pages are sliced from it. A row's funds become available `SimState.payoutDelayDays` after it (`available_on`);
 * until then its status is `pending`.
 */
export function stripeBalanceTransactions(call: SimCall): SimAnswer {
  const since = Number(call.query.get('created[gte]') ?? 0);
  const until = Number(call.query.get('created[lte]') ?? Number.MAX_SAFE_INTEGER);
  const type = call.query.get('type');
  const limit = Math.min(balanceListLimitMax, Math.max(1, Number(call.query.get('limit') ?? 10)));
  const expand = call.query.getAll('expand[]').includes('data.source');
  const after = call.query.get('starting_after');
  const key = JSON.stringify([call.account, since, until, type, expand]);
  if (after === null || call.state.balanceIndex?.key !== key) {
    const rows = [...balanceTransactions(call, expand)]
      .filter((row) => row.created >= since && row.created <= until && (type === null || row.type === type))
      .sort((a, b) => b.created - a.created || (a.id < b.id ? 1 : -1));
    call.state.balanceIndex = { key, rows, positions: new Map(rows.map((row, index) => [row.id, index])) };
  }
  const { rows, positions } = call.state.balanceIndex;
  const start = after === null ? 0 : (positions.get(after) ?? -1) + 1;
  return { status: 200, body: { object: 'list', data: rows.slice(start, start + limit), has_more: start + limit < rows.length } };
}

/** The account's balance transactions: a `charge` per captured PaymentIntent (less the fee) and a `refund` per refund. */
function* balanceTransactions(call: SimCall, expand: boolean): Generator<StripeBalanceTransaction> {
  const now = Date.now() / 1000;
  const availability = (created: number) => {
    const availableOn = created + call.state.payoutDelayDays * 86_400;
    return { status: availableOn <= now ? ('available' as const) : ('pending' as const), available_on: availableOn };
  };
  for (const charge of call.state.charges.values()) {
    if (charge.account !== call.account || charge.dialect !== 'stripe' || charge.capturedAmount === 0 || charge.approvedAt === null) continue;
    const created = Math.floor(charge.approvedAt.getTime() / 1000);
    const fee = charge.feeOverride ?? Math.round((charge.capturedAmount * stripeFeePerMille) / 1000) + (zeroDecimalCurrencies.has(charge.currency) ? 0 : stripeFixedFee);
    const chargeId = `ch_${charge.id.slice(3)}`;
    yield {
      id: `txn_${charge.id.slice(3)}`,
      object: 'balance_transaction',
      amount: charge.capturedAmount,
      currency: charge.currency.toLowerCase(),
      fee,
      net: charge.capturedAmount - fee,
      type: 'charge',
      ...availability(created),
      created,
      source: expand ? { id: chargeId, object: 'charge', payment_intent: charge.id } : chargeId,
    };
    for (const cancel of charge.cancels) {
      const at = Math.floor(cancel.at.getTime() / 1000);
      yield {
        id: cancel.transactionKey,
        object: 'balance_transaction',
        amount: -cancel.amount,
        currency: charge.currency.toLowerCase(),
        fee: 0,
        net: -cancel.amount,
        type: 'refund',
        ...availability(at),
        created: at,
        source: expand ? { id: cancel.refundId, object: 'refund', payment_intent: charge.id } : cancel.refundId,
      };
    }
  }
}
