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
 * inquiry (`/v1/payment_intents/search`, `/v1/refunds?payment_intent=`) finds the attempt again. Stripe keeps an
 * idempotency key at least 24 hours. Keel does not run 3-D Secure: an intent that answers `requires_action` is
 * canceled at once and the payment declined with `card_authentication_required`.
 */
export const stripeIdempotencyKeyRetentionMs = 24 * 3_600_000;

/** The currencies Keel charges through Stripe: every currency of Keel's table is one Stripe presents. */
const stripeCurrencies: ReadonlySet<string> = new Set(
  'KRW JPY VND CLP TWD USD EUR GBP CAD AUD NZD CHF SEK NOK DKK PLN CZK SGD HKD CNY INR THB MYR PHP IDR MXN BRL ZAR AED ILS TRY KWD BHD JOD'.split(' '),
);

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

  /**
   * An intent waiting for 3-D Secure: canceled so that nothing can complete it later, and declined. If the
   * cancel's outcome is unknown, so is the attempt's: the next inquiry finds the intent and cancels it again.
   */
  async function declineForAuthentication(context: PartnerCallContext, intent: StripePaymentIntent): Promise<PartnerOutcome<never>> {
    const canceled = await send({ ...context, idempotencyKey: `${context.idempotencyKey}:authentication-cancel` }, 'POST', `/v1/payment_intents/${encodeURIComponent(intent.id)}/cancel`, {
      cancellation_reason: 'abandoned',
    });
    const outcome = mapStripeAnswer(canceled, () => null);
    if (outcome.kind !== 'ok' && outcome.kind !== 'rejected') return { kind: 'unknown', reason: `3-D Secure intent not yet canceled: ${outcome.kind}` };
    return { kind: 'declined', code: 'card_authentication_required', message: 'The card needs 3-D Secure authentication, which this shop does not run.' };
  }

  return {
    name: 'stripe',
    supportsCurrency: (currency) => stripeCurrencies.has(currency),
    idempotencyKeyRetentionMs: stripeIdempotencyKeyRetentionMs,

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
      const outcome = mapStripeAnswer(answer, (body) => body as StripePaymentIntent);
      if (outcome.kind !== 'ok') return outcome;
      const intent = outcome.value;
      if (intent.status === 'requires_action') return declineForAuthentication(context, intent);
      const card = 'card' in request.source ? { brand: cardBrand(request.source.card.number), last4: cardLast4(request.source.card.number) } : null;
      return { kind: 'ok', value: { partnerPaymentId: intent.id, captured: mapStripeStatus(intent.status) === 'captured', token: null, card } };
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
      const found = mapStripeAnswer(answer, (body) => (body as StripeList<StripePaymentIntent>).data[0]);
      if (found.kind !== 'ok') return found;
      if (found.value === undefined) return { kind: 'ok', value: { state: 'absent' } };
      if (found.value.status === 'requires_action') {
        const declined = await declineForAuthentication(context, found.value);
        return declined.kind === 'declined' ? { kind: 'ok', value: { state: 'declined', code: declined.code, message: declined.message } } : declined;
      }
      return { kind: 'ok', value: interpretIntent(found.value) };
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
    case 'needs_authentication':
      return { state: 'declined', code: 'card_authentication_required', message: 'The card needs 3-D Secure authentication.' };
    case 'needs_payment_method':
      return intent.last_payment_error === null
        ? { state: 'absent' }
        : { state: 'declined', code: stripeDeclineCode(intent.last_payment_error), message: intent.last_payment_error.message };
  }
}

function interpretRefunds(request: InquiryRequest, list: StripeList<StripeRefund>): InquiryResult {
  const refund = list.data.find((candidate) => candidate.metadata['keel_attempt'] === request.attemptId);
  if (refund === undefined) return { state: 'absent' };
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
    // The key was used with other parameters: the partner knows it, and this answer does not say what it did.
    if (body.error.type === 'idempotency_error') return { kind: 'unknown', reason: 'partner knows this key from another request' };
    return { kind: 'rejected', reason: `${body.error.type}: ${body.error.message}` };
  });
}
