import { recordChange, simId, type SimCharge, type SimState } from './model.js';
import { recordCharge, type SimAnswer } from './toss.js';

/**
 * Test hooks for reconciliation: the partner's own record made to disagree with Keel's, as real partners'
 * records sometimes do. `POST /__sim/drift` changes the record of one order (so its inquiries, searches and
 * settlement reports change with it); `POST /__sim/charges` makes a charge no Keel payment made. Every change is
 * recorded in the charge's history, so a lagging inquiry sees it late like any other.
 */
export const driftKinds = ['amount', 'uncaptured', 'captured', 'duplicate', 'missing', 'refund', 'fee'] as const;
export type DriftKind = (typeof driftKinds)[number];

function positiveInteger(value: unknown): number | undefined {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0 ? value : undefined;
}

/** The order's charge drift applies to: its latest one that was not declined. */
function chargeOf(state: SimState, orderId: string): SimCharge | undefined {
  return [...state.charges.values()].filter((charge) => charge.orderId === orderId && charge.status !== 'declined').at(-1);
}

export function applyDrift(state: SimState, body: Record<string, unknown>): SimAnswer {
  const orderId = body['order_id'];
  const kind = body['kind'] as DriftKind;
  if (typeof orderId !== 'string' || orderId === '') return { status: 400, body: { error: 'order_id is required' } };
  if (!driftKinds.includes(kind)) return { status: 400, body: { error: `kind must be one of ${driftKinds.join(', ')}` } };
  const amount = body['amount'] === undefined ? undefined : positiveInteger(body['amount']);
  if (body['amount'] !== undefined && amount === undefined) return { status: 400, body: { error: 'amount must be an integer >= 0 in minor units' } };
  if ((kind === 'amount' || kind === 'refund' || kind === 'fee') && amount === undefined) return { status: 400, body: { error: `amount is required for ${kind}` } };
  const charge = chargeOf(state, orderId);
  if (charge === undefined) return { status: 404, body: { error: `no charge for order ${orderId}` } };
  switch (kind) {
    case 'amount':
      charge.amount = amount ?? charge.amount;
      if (charge.capturedAmount > 0) charge.capturedAmount = charge.amount;
      break;
    case 'uncaptured':
      charge.status = 'authorized';
      charge.capturedAmount = 0;
      break;
    case 'captured':
      // Only a partner that holds authorizations can have captured what Keel holds uncaptured or canceled.
      if (charge.dialect !== 'stripe') return { status: 400, body: { error: 'captured applies to partners that hold authorizations (stripe)' } };
      charge.status = 'captured';
      charge.capturedAmount = charge.amount;
      break;
    case 'duplicate': {
      const second = recordCharge(
        { state, account: charge.account, country: charge.country, correlationId: charge.correlationId },
        {
          id: simId(charge.dialect === 'toss' ? 'tpk_' : 'pi_'),
          dialect: charge.dialect,
          orderId: charge.orderId,
          orderName: charge.orderName,
          amount: amount ?? charge.amount,
          currency: charge.currency,
          status: 'captured',
          metadata: { ...charge.metadata },
          cardNumber: `000000000000${charge.cardLast4}`,
          decline: null,
          paymentMethod: charge.paymentMethod,
        },
      );
      return { status: 200, body: { order_id: orderId, kind, charges: [charge.id, second.id] } };
    }
    case 'missing':
      for (const [id, candidate] of state.charges) if (candidate.orderId === orderId) state.charges.delete(id);
      return { status: 200, body: { order_id: orderId, kind, charges: [] } };
    case 'refund':
      setRefundedTotal(charge, amount ?? 0);
      break;
    case 'fee':
      charge.feeOverride = amount ?? 0;
      break;
  }
  recordChange(charge);
  return { status: 200, body: { order_id: orderId, kind, charges: [charge.id] } };
}

/** The partner's total refunded for the charge becomes `total`: a refund row is added, or the last ones trimmed. */
function setRefundedTotal(charge: SimCharge, total: number): void {
  let difference = total - charge.refundedAmount;
  if (difference > 0) {
    charge.cancels.push({ amount: difference, reason: 'refund at the partner', transactionKey: simId('txn_'), refundId: simId('re_'), metadata: {}, at: new Date() });
  }
  while (difference < 0 && charge.cancels.length > 0) {
    const last = charge.cancels.pop();
    if (last === undefined) break;
    const kept = last.amount + difference;
    if (kept > 0) charge.cancels.push({ ...last, amount: kept });
    difference = Math.min(0, kept);
  }
  charge.refundedAmount = total;
}

/** `POST /__sim/charges`: a captured charge at the partner that no Keel payment made, in that key's account. */
export function recordUnmadeCharge(state: SimState, body: Record<string, unknown>): SimAnswer {
  const { order_id: orderId, currency, country, dialect, secret_key: secretKey } = body;
  const amount = positiveInteger(body['amount']);
  if (typeof orderId !== 'string' || orderId === '' || amount === undefined || amount === 0) return { status: 400, body: { error: 'order_id and a positive amount are required' } };
  if (typeof currency !== 'string' || !/^[A-Z]{3}$/.test(currency)) return { status: 400, body: { error: 'currency must be an ISO 4217 code' } };
  if (dialect !== 'toss' && dialect !== 'stripe') return { status: 400, body: { error: 'dialect must be toss or stripe' } };
  if (typeof secretKey !== 'string' || secretKey === '') return { status: 400, body: { error: 'secret_key names the partner account' } };
  const charge = recordCharge(
    { state, account: secretKey, country: typeof country === 'string' ? country.toUpperCase() : 'KR', correlationId: null },
    {
      id: simId(dialect === 'toss' ? 'tpk_' : 'pi_'),
      dialect,
      orderId,
      orderName: orderId,
      amount,
      currency,
      status: 'captured',
      metadata: dialect === 'stripe' ? { order_id: orderId } : {},
      cardNumber: '4242424242424242',
      decline: null,
      paymentMethod: null,
    },
  );
  return { status: 201, body: { id: charge.id, order_id: orderId, amount, currency, dialect } };
}
