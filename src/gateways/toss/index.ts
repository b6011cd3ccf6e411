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
 * matched to the attempt by `metadata.keel_attempt`.
 */
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
    request: { billingKey: string; customerKey: string; amount: bigint; orderId: string; attemptId: string },
  ): Promise<PartnerOutcome<TossPayment>> {
    const answer = await send(context, 'POST', `/v1/billing/${encodeURIComponent(request.billingKey)}`, {
      customerKey: request.customerKey,
      amount: Number(request.amount),
      orderId: request.orderId,
      orderName: request.orderId,
      metadata: { keel_attempt: request.attemptId },
    });
    return mapAnswer(answer, (body) => body as TossPayment);
  }

  return {
    name: 'toss',

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
      const path =
        request.operation === 'refund' && request.partnerPaymentId !== null
          ? `/v1/payments/${encodeURIComponent(request.partnerPaymentId)}`
          : `/v1/payments/orders/${encodeURIComponent(request.orderId)}`;
      const answer = await send(context, 'GET', path);
      if (answer.kind === 'response' && answer.status === 404) return { kind: 'ok', value: { state: 'not_found' } };
      return mapAnswer(answer, (body) => interpretInquiry(request, body));
    },
  };
}

function interpretInquiry(request: InquiryRequest, body: unknown): InquiryResult {
  if (!isTossPayment(body)) return { state: 'pending' };
  if (request.operation === 'refund') {
    // Toss cancels carry no client reference, so a refund is proven by the partner's cancelled total covering
    // everything Keel already counts plus this refund.
    const canceled = (body.cancels ?? []).reduce((sum, cancel) => sum + BigInt(cancel.cancelAmount), 0n);
    return canceled >= request.refundedBefore + request.amount
      ? { state: 'succeeded', partnerPaymentId: body.paymentKey, captured: true, canceled: false }
      : { state: 'not_found' };
  }
  if (body.metadata?.['keel_attempt'] !== request.attemptId) return { state: 'not_found' };
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
    return { kind: 'rejected', reason: `${body.code}: ${body.message}` };
  });
}
