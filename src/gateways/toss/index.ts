import type {
  AuthorizeResult,
  CancelRequest,
  CaptureRequest,
  Connector,
  InquiryRequest,
  InquiryResult,
  PartnerCallContext,
  PartnerOutcome,
  RefundRequest,
  TokenizeRequest,
  TokenizeResult,
} from '../connector.js';
import { cardBrand, cardLast4 } from '../connector.js';
import { readAnswer, type PartnerHttpAnswer, type PartnerHttpClient } from '../http.js';
import {
  isTossError,
  isTossPayment,
  mapTossStatus,
  tossAuthorization,
  tossDeclineCode,
  type TossBillingAuthorization,
  type TossPayment,
} from './wire.js';

/**
 * Toss Payments. Cards go through the billing API: the card is exchanged for a billing key
 * (`/v1/billing/authorizations/card`), and the charge is `/v1/billing/{billingKey}`. With manual capture the
 * billing key is the authorization (the card is verified, no funds are held) and the charge happens at capture.
 * Refunds and cancels are `/v1/payments/{paymentKey}/cancel`; inquiries are `/v1/payments/orders/{orderId}`,
 * matched to the attempt by `metadata.keel_attempt`. Toss charges won only (KRW) and keeps an idempotency key
 * for 15 days from its first use.
 */
export const tossIdempotencyKeyRetentionMs = 15 * 24 * 3_600_000;

export function createTossConnector(http: PartnerHttpClient): Connector {
  const send = (context: PartnerCallContext, method: 'GET' | 'POST' | 'DELETE', path: string, body?: unknown) =>
    http.send({
      method,
      path,
      headers: {
        authorization: tossAuthorization(context.partnerSecretKey),
        'content-type': 'application/json',
        'idempotency-key': context.idempotencyKey,
        'x-correlation-id': context.correlationId,
        'keel-country': context.country,
      },
      ...(context.readTimeoutMs === undefined ? {} : { readTimeoutMs: context.readTimeoutMs }),
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });

  async function issueBillingKey(context: PartnerCallContext, request: TokenizeRequest): Promise<PartnerOutcome<TokenizeResult>> {
    const answer = await send({ ...context, idempotencyKey: `${context.idempotencyKey}:billing-key` }, 'POST', '/v1/billing/authorizations/card', {
      customerKey: request.customerKey,
      cardNumber: request.card.number,
      cardExpirationYear: String(request.card.expYear % 100).padStart(2, '0'),
      cardExpirationMonth: String(request.card.expMonth).padStart(2, '0'),
      customerIdentityNumber: '881212',
    });
    return mapAnswer(answer, (body) => {
      const billing = body as TossBillingAuthorization;
      return { token: billing.billingKey, brand: cardBrand(request.card.number), last4: cardLast4(request.card.number) };
    });
  }

  async function chargeBillingKey(
    context: PartnerCallContext,
    request: { billingKey: string; customerKey: string; amount: bigint; orderId: string; orderName: string; attemptId: string },
  ): Promise<PartnerOutcome<TossPayment>> {
    const answer = await send(context, 'POST', `/v1/billing/${encodeURIComponent(request.billingKey)}`, {
      customerKey: request.customerKey,
      amount: Number(request.amount),
      orderId: request.orderId,
      orderName: request.orderName,
      metadata: { keel_attempt: request.attemptId },
    });
    return mapAnswer(answer, (body) => body as TossPayment);
  }

  return {
    name: 'toss',
    supportsCurrency: (currency) => currency === 'KRW',
    idempotencyKeyRetentionMs: tossIdempotencyKeyRetentionMs,

    tokenize: issueBillingKey,

    async detach(context, request) {
      const answer = await send(context, 'DELETE', `/v1/billing/${encodeURIComponent(request.token)}`);
      // Already gone at the partner is as good as revoked.
      if (answer.kind === 'response' && answer.status === 404) return { kind: 'ok', value: null };
      return mapAnswer(answer, () => null);
    },

    async authorize(context, request): Promise<PartnerOutcome<AuthorizeResult>> {
      let billingKey: string;
      let card: AuthorizeResult['card'] = null;
      if ('card' in request.source) {
        const issued = await issueBillingKey(context, { customerKey: request.customerKey, card: request.source.card });
        if (issued.kind !== 'ok') return issued;
        billingKey = issued.value.token;
        card = { brand: issued.value.brand, last4: issued.value.last4 };
      } else {
        billingKey = request.source.token;
      }
      if (request.captureMethod === 'manual') {
        return { kind: 'ok', value: { partnerPaymentId: null, captured: false, token: billingKey, card } };
      }
      const charged = await chargeBillingKey(context, { ...request, billingKey });
      if (charged.kind !== 'ok') return charged;
      return { kind: 'ok', value: { partnerPaymentId: charged.value.paymentKey, captured: true, token: billingKey, card } };
    },

    async capture(context, request: CaptureRequest) {
      if (request.token === null) return { kind: 'rejected', reason: 'no billing key to capture with' };
      const charged = await chargeBillingKey(context, { ...request, billingKey: request.token });
      if (charged.kind !== 'ok') return charged;
      return { kind: 'ok', value: { partnerPaymentId: charged.value.paymentKey } };
    },

    async cancel(context, request: CancelRequest): Promise<PartnerOutcome<null>> {
      // An uncaptured Toss payment is only a billing key: nothing is held at the partner, so nothing to void.
      if (request.partnerPaymentId === null) return { kind: 'ok', value: null };
      const answer = await send(context, 'POST', `/v1/payments/${encodeURIComponent(request.partnerPaymentId)}/cancel`, {
        cancelReason: request.reason,
      });
      return mapAnswer(answer, () => null);
    },

    async refund(context, request: RefundRequest) {
      const answer = await send(context, 'POST', `/v1/payments/${encodeURIComponent(request.partnerPaymentId)}/cancel`, {
        cancelReason: request.reason,
        cancelAmount: Number(request.amount),
      });
      return mapAnswer(answer, (body) => {
        const payment = body as TossPayment;
        return { partnerRefundId: payment.cancels?.at(-1)?.transactionKey ?? null };
      });
    },

    async inquire(context, request: InquiryRequest): Promise<PartnerOutcome<InquiryResult>> {
      // Toss cancels carry no client reference: which cancel of a payment is this refund cannot be read from the
      // partner's records, and comparing cancelled totals could credit one refund with another's money. A refund
      // is proven only by the answer to its own request, sent again under its own key.
      if (request.operation === 'refund' || request.operation === 'cancel') {
        return { kind: 'ok', value: { state: 'unverifiable', reason: 'Toss cancels carry no client reference' } };
      }
      const answer = await send(context, 'GET', `/v1/payments/orders/${encodeURIComponent(request.orderId)}`);
      if (answer.kind === 'response' && answer.status === 404) return { kind: 'ok', value: { state: 'absent' } };
      return mapAnswer(answer, (body) => interpretInquiry(request, body));
    },
  };
}

function interpretInquiry(request: InquiryRequest, body: unknown): InquiryResult {
  if (!isTossPayment(body)) return { state: 'pending' };
  // The order's payment was made by another attempt (a capture's charge, or an earlier try): not this one's.
  if (body.metadata?.['keel_attempt'] !== request.attemptId) return { state: 'absent' };
  const meaning = mapTossStatus(body.status);
  switch (meaning) {
    case 'pending':
      return { state: 'pending' };
    case 'captured':
    case 'canceled':
      return { state: 'succeeded', partnerPaymentId: body.paymentKey, captured: true, canceled: meaning === 'canceled' };
    case 'failed': {
      const code = body.failure ? tossDeclineCode(body.failure.code) : undefined;
      return { state: 'declined', code: code ?? 'card_declined', message: body.failure?.message ?? 'declined' };
    }
  }
}

/** The shared reading of a Toss answer: 2xx is the value, a decline code is a decline, 429 was not processed. */
export function mapAnswer<T>(answer: PartnerHttpAnswer, read: (body: unknown) => T): PartnerOutcome<T> {
  return readAnswer(answer, read, (status, body) => {
    if (!isTossError(body)) return { kind: 'rejected', reason: `partner answered ${status}` };
    const decline = tossDeclineCode(body.code);
    if (decline !== undefined) return { kind: 'declined', code: decline, message: body.message };
    if (body.code === 'IDEMPOTENT_REQUEST_PROCESSING') return { kind: 'unknown', reason: body.code };
    // The partner knows this key from an earlier request: whatever that did, this answer does not say.
    if (body.code === 'INVALID_IDEMPOTENCY_KEY') return { kind: 'unknown', reason: body.code };
    return { kind: 'rejected', reason: `${body.code}: ${body.message}` };
  });
}
