import type { Static } from 'typebox';
import { KeelError } from '../../errors.js';
import { authorizePayment } from '../../payments/operations/authorize.js';
import { cancelPayment } from '../../payments/operations/cancel.js';
import { capturePayment } from '../../payments/operations/capture.js';
import { createPayment } from '../../payments/operations/create.js';
import { findPayment, listPayments } from '../../payments/repository.js';
import { paymentToApi } from '../../payments/serialize.js';
import type { MerchantContext, Payment } from '../../payments/types.js';
import { publicToUuid } from '../../storage/ids.js';
import type { KeelApp, KeelServices } from '../app.js';
import { inContext } from '../app.js';
import { runIdempotent } from '../idempotent-route.js';
import { CancelBody, CaptureBody, ConfirmBody, CreatePaymentBody, IdParams, ListPaymentsQuery, type PaymentMethodInput } from '../schemas.js';
import { checkAmount, checkCard, checkCountry } from '../validation.js';

/** `/v1/payments`: create (and confirm), confirm, capture, cancel, retrieve, list. */
export function registerPaymentRoutes(app: KeelApp, services: KeelServices): void {
  const { deps, config } = services;
  const lockTimeoutMs = config.idempotencyLockTimeoutMs;
  const secret = { auth: 'secret' } as const;

  async function loadOr404(merchant: MerchantContext, publicId: string): Promise<Payment> {
    const uuid = publicToUuid('payment', publicId);
    const payment = uuid === undefined ? undefined : await findPayment(deps.db, merchant.id, uuid);
    if (payment === undefined) throw new KeelError('resource_missing', `No such payment: ${publicId}.`, { param: 'id' });
    return payment;
  }

  app.post('/v1/payments', { config: secret, schema: { body: CreatePaymentBody, tags: ['payments'] } }, (request, reply) =>
    inContext(request, async () => {
      const merchant = request.merchant;
      const body = request.body;
      const amount = checkAmount(body.amount, body.currency);
      const country = checkCountry(body.country ?? merchant.country);
      const method = paymentMethodFrom(body.payment_method);
      if (body.confirm === true && method === undefined) {
        throw new KeelError('payment_method_required', 'confirm: true needs a payment_method.', { param: 'payment_method' });
      }
      return runIdempotent({
        request,
        reply,
        deps,
        merchant,
        lockTimeoutMs,
        operation: (context) =>
          createPayment(context, {
            amount,
            currency: body.currency,
            orderId: body.order_id,
            country,
            captureMethod: body.capture_method ?? 'automatic',
            card: method?.card,
            snapshot: method?.snapshot,
            confirm: body.confirm === true,
            description: body.description,
            metadata: body.metadata ?? {},
          }),
      });
    }),
  );

  app.post('/v1/payments/:id/confirm', { config: secret, schema: { params: IdParams, body: ConfirmBody, tags: ['payments'] } }, (request, reply) =>
    inContext(request, async () => {
      const merchant = request.merchant;
      const method = paymentMethodFrom(request.body?.payment_method);
      const payment = await loadOr404(merchant, request.params.id);
      return runIdempotent({
        request,
        reply,
        deps,
        merchant,
        lockTimeoutMs,
        operation: (context) =>
          authorizePayment(context, {
            paymentId: payment.id,
            source: method === undefined ? undefined : { card: method.card },
            snapshot: method?.snapshot,
          }),
      });
    }),
  );

  app.post('/v1/payments/:id/capture', { config: secret, schema: { params: IdParams, body: CaptureBody, tags: ['payments'] } }, (request, reply) =>
    inContext(request, async () => {
      const merchant = request.merchant;
      const payment = await loadOr404(merchant, request.params.id);
      const amount = request.body?.amount === undefined ? undefined : checkAmount(request.body.amount, payment.currency);
      return runIdempotent({ request, reply, deps, merchant, lockTimeoutMs, operation: (context) => capturePayment(context, payment.id, amount) });
    }),
  );

  app.post('/v1/payments/:id/cancel', { config: secret, schema: { params: IdParams, body: CancelBody, tags: ['payments'] } }, (request, reply) =>
    inContext(request, async () => {
      const merchant = request.merchant;
      const payment = await loadOr404(merchant, request.params.id);
      return runIdempotent({ request, reply, deps, merchant, lockTimeoutMs, operation: (context) => cancelPayment(context, payment.id, request.body?.reason) });
    }),
  );

  app.get('/v1/payments/:id', { config: secret, schema: { params: IdParams, tags: ['payments'] } }, (request) =>
    inContext(request, async () => {
      const merchant = request.merchant;
      return paymentToApi(await loadOr404(merchant, request.params.id));
    }),
  );

  app.get('/v1/payments', { config: secret, schema: { querystring: ListPaymentsQuery, tags: ['payments'] } }, (request) =>
    inContext(request, async () => {
      const merchant = request.merchant;
      const query = request.query;
      let startingAfter: string | undefined;
      if (query.starting_after !== undefined) {
        startingAfter = publicToUuid('payment', query.starting_after);
        if (startingAfter === undefined) throw new KeelError('parameter_invalid', 'starting_after must be a payment id.', { param: 'starting_after' });
      }
      const { payments, hasMore } = await listPayments(deps.db, merchant.id, {
        limit: query.limit ?? 10,
        ...(query.status === undefined ? {} : { status: query.status as Payment['status'] }),
        ...(query.order_id === undefined ? {} : { orderId: query.order_id }),
        ...(startingAfter === undefined ? {} : { startingAfter }),
      });
      return { object: 'list', data: payments.map(paymentToApi), has_more: hasMore };
    }),
  );
}

function paymentMethodFrom(input: Static<typeof PaymentMethodInput> | undefined) {
  if (input === undefined) return undefined;
  if (typeof input === 'string') {
    throw new KeelError('resource_missing', `No such payment method: ${input}.`, { param: 'payment_method' });
  }
  return checkCard(input.card);
}
