import type {
  AuthorizeResult,
  Connector,
  InquiryRequest,
  InquiryResult,
  PartnerCallContext,
  PartnerOutcome,
  TokenizeResult,
} from '../connector.js';
import { cardBrand, cardLast4 } from '../connector.js';
import { readAnswer, type PartnerHttpAnswer, type PartnerHttpClient } from '../http.js';
import {
  isStripeErrorBody,
  mapStripeStatus,
  stripeDeclineCode,
  toStripeForm,
  type StripeList,
  type StripePaymentIntent,
  type StripePaymentMethod,
  type StripeRefund,
} from './wire.js';

/**
 * Stripe. A payment is one PaymentIntent created and confirmed in one call; manual capture holds the funds
 * until `/capture`. Requests are form-encoded; the attempt id travels in `metadata[keel_attempt]`, which is how an
 * inquiry (`/v1/payment_intents/search`, `/v1/refunds?payment_intent=`) finds the attempt again.
 */
export function createStripeConnector(http: PartnerHttpClient): Connector {
  const send = (context: PartnerCallContext, method: 'GET' | 'POST', path: string, parameters?: Record<string, unknown>) =>
    http.send({
      method,
      path,
      headers: {
        authorization: `Bearer ${context.partnerSecretKey}`,
        'content-type': 'application/x-www-form-urlencoded',
        'idempotency-key': context.idempotencyKey,
        'x-correlation-id': context.correlationId,
        'keel-country': context.country,
      },
      ...(context.readTimeoutMs === undefined ? {} : { readTimeoutMs: context.readTimeoutMs }),
      ...(parameters === undefined ? {} : { body: toStripeForm(parameters) }),
    });

  return {
    name: 'stripe',

    async tokenize(context, request): Promise<PartnerOutcome<TokenizeResult>> {
      const answer = await send(context, 'POST', '/v1/payment_methods', {
        type: 'card',
        card: { number: request.card.number, exp_month: request.card.expMonth, exp_year: request.card.expYear, cvc: request.card.cvc },
      });
      return mapStripeAnswer(answer, (body) => {
        const method = body as StripePaymentMethod;
        return { token: method.id, brand: method.card.brand, last4: method.card.last4 };
      });
    },

    async detach(context, request) {
      const answer = await send(context, 'POST', `/v1/payment_methods/${encodeURIComponent(request.token)}/detach`, {});
      if (answer.kind === 'response' && answer.status === 404) return { kind: 'ok', value: null };
      return mapStripeAnswer(answer, () => null);
    },

    async authorize(context, request): Promise<PartnerOutcome<AuthorizeResult>> {
      const source =
        'card' in request.source
          ? {
              payment_method_data: {
                type: 'card',
                card: {
                  number: request.source.card.number,
                  exp_month: request.source.card.expMonth,
                  exp_year: request.source.card.expYear,
                  cvc: request.source.card.cvc,
                },
              },
            }
          : { payment_method: request.source.token };
      const answer = await send(context, 'POST', '/v1/payment_intents', {
        amount: request.amount.toString(),
        currency: request.currency.toLowerCase(),
        confirm: 'true',
        capture_method: request.captureMethod,
        ...source,
        metadata: { order_id: request.orderId, keel_attempt: request.attemptId },
      });
      return mapStripeAnswer(answer, (body) => {
        const intent = body as StripePaymentIntent;
        const card = 'card' in request.source ? { brand: cardBrand(request.source.card.number), last4: cardLast4(request.source.card.number) } : null;
        return { partnerPaymentId: intent.id, captured: mapStripeStatus(intent.status) === 'captured', token: null, card };
      });
    },

    async capture(context, request) {
      if (request.partnerPaymentId === null) return { kind: 'rejected', reason: 'no PaymentIntent to capture' };
      const answer = await send(context, 'POST', `/v1/payment_intents/${encodeURIComponent(request.partnerPaymentId)}/capture`, {
        amount_to_capture: request.amount.toString(),
      });
      return mapStripeAnswer(answer, (body) => ({ partnerPaymentId: (body as StripePaymentIntent).id }));
    },

    async cancel(context, request) {
      if (request.partnerPaymentId === null) return { kind: 'ok', value: null };
      const answer = await send(context, 'POST', `/v1/payment_intents/${encodeURIComponent(request.partnerPaymentId)}/cancel`, {
        cancellation_reason: 'requested_by_customer',
      });
      return mapStripeAnswer(answer, () => null);
    },

    async refund(context, request) {
      const answer = await send(context, 'POST', '/v1/refunds', {
        payment_intent: request.partnerPaymentId,
        amount: request.amount.toString(),
        metadata: { keel_attempt: request.attemptId },
      });
      return mapStripeAnswer(answer, (body) => ({ partnerRefundId: (body as StripeRefund).id }));
    },

    async inquire(context, request): Promise<PartnerOutcome<InquiryResult>> {
      if (request.operation === 'refund' && request.partnerPaymentId !== null) {
        const answer = await send(context, 'GET', `/v1/refunds?payment_intent=${encodeURIComponent(request.partnerPaymentId)}&limit=100`);
        return mapStripeAnswer(answer, (body) => interpretRefunds(request, body as StripeList<StripeRefund>));
      }
      if (request.operation !== 'authorize' && request.partnerPaymentId !== null) {
        // Captures and cancels act on the intent the authorization created; its state tells their outcome.
        const answer = await send(context, 'GET', `/v1/payment_intents/${encodeURIComponent(request.partnerPaymentId)}`);
        return mapStripeAnswer(answer, (body) => interpretIntent(body as StripePaymentIntent));
      }
      const query = `metadata['keel_attempt']:'${request.attemptId}'`;
      const answer = await send(context, 'GET', `/v1/payment_intents/search?query=${encodeURIComponent(query)}`);
      return mapStripeAnswer(answer, (body) => {
        const intent = (body as StripeList<StripePaymentIntent>).data[0];
        return intent === undefined ? { state: 'not_found' } : interpretIntent(intent);
      });
    },
  };
}

export function interpretIntent(intent: StripePaymentIntent): InquiryResult {
  const meaning = mapStripeStatus(intent.status);
  switch (meaning) {
    case 'pending':
      return { state: 'pending' };
    case 'authorized':
      return { state: 'succeeded', partnerPaymentId: intent.id, captured: false, canceled: false };
    case 'captured':
    case 'canceled':
      return { state: 'succeeded', partnerPaymentId: intent.id, captured: meaning === 'captured', canceled: meaning === 'canceled' };
    case 'needs_payment_method':
      return intent.last_payment_error === null
        ? { state: 'not_found' }
        : { state: 'declined', code: stripeDeclineCode(intent.last_payment_error), message: intent.last_payment_error.message };
  }
}

function interpretRefunds(request: InquiryRequest, list: StripeList<StripeRefund>): InquiryResult {
  const refund = list.data.find((candidate) => candidate.metadata['keel_attempt'] === request.attemptId);
  if (refund === undefined) return { state: 'not_found' };
  if (refund.status === 'succeeded') return { state: 'succeeded', partnerPaymentId: refund.payment_intent, captured: true, canceled: false };
  if (refund.status === 'failed' || refund.status === 'canceled') return { state: 'declined', code: 'card_declined', message: `refund ${refund.status}` };
  return { state: 'pending' };
}

/** The shared reading of a Stripe answer: card_error is a decline, 429 was not processed, 5xx is unknown. */
export function mapStripeAnswer<T>(answer: PartnerHttpAnswer, read: (body: unknown) => T): PartnerOutcome<T> {
  return readAnswer(answer, read, (status, body) => {
    if (!isStripeErrorBody(body)) return { kind: 'rejected', reason: `partner answered ${status}` };
    if (body.error.type === 'card_error') return { kind: 'declined', code: stripeDeclineCode(body.error), message: body.error.message };
    if (body.error.type === 'idempotency_error' && status === 409) return { kind: 'unknown', reason: 'partner still processing this key' };
    return { kind: 'rejected', reason: `${body.error.type}: ${body.error.message}` };
  });
}
