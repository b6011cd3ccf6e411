import type { Static } from 'typebox';
import { KeelError } from '../errors.js';
import { authorizePayment } from './operations/authorize.js';
import { cancelPayment } from './operations/cancel.js';
import { capturePayment, startCapture } from './operations/capture.js';
import { createPayment, startCreatePayment, type CreatePaymentInput } from './operations/create.js';
import { findPayment, listPayments, toPayment } from './repository.js';
import { listOf, pageOf } from '../http/lists.js';
import { paymentToApi } from './serialize.js';
import type { MerchantContext } from '../merchants/types.js';
import type { Payment } from './types.js';
import { publicToUuid, uuidToPublic } from '../storage/ids.js';
import type { PaymentSource } from '../gateways/connector.js';
import type { KeelApp, KeelServices } from '../http/app.js';
import { inContext } from '../http/app.js';
import { idempotent } from './keyed.js';
import { useQueueTicket } from '../queue/checkout-queue.js';
import { CancelBody, CaptureBody, ConfirmBody, CreatePaymentBody, IdParams, ListPaymentsQuery, type PaymentMethodInput } from '../http/schemas.js';
import { checkAmount, checkCard, checkCountry } from '../http/validation.js';

/** `/v1/payments`: create (and confirm), confirm, capture, cancel, retrieve, list. */
export function registerPaymentRoutes(app: KeelApp, services: KeelServices): void {
  const { deps } = services;
  const secret = { auth: 'secret' } as const;

  async function loadOr404(merchant: MerchantContext, publicId: string): Promise<Payment> {
    const uuid = publicToUuid('payment', publicId);
    const payment = uuid === undefined ? undefined : await findPayment(deps.db, merchant.id, uuid);
    if (payment === undefined) throw new KeelError('resource_missing', `No such payment: ${publicId}.`, { param: 'id' });
    return payment;
  }

  // Every POST answers a finished key from the key before any lookup or check that can change over time: the
  // operation (lookups included) runs only for a request that is not a replay.
  // Admitted once its body is read: an admitted queue ticket gives it the priority of work that finishes a payment.
  app.post('/v1/payments', { config: { ...secret, admitAfterBody: true }, schema: { body: CreatePaymentBody, tags: ['payments'] } }, (request, reply) =>
    inContext(request, async () => {
      const { merchant, body } = request;
      const inputOf = async (): Promise<CreatePaymentInput> => {
        const amount = checkAmount(body.amount, body.currency);
        const country = checkCountry(body.country ?? merchant.country);
        if (body.queue_ticket !== undefined) await useQueueTicket(services.checkoutQueue, body.queue_ticket, merchant.id, body.order_id);
        const method = await paymentMethodFrom(merchant, body.payment_method, body.customer);
        const customerId = method?.customerId ?? (await customerIdFrom(merchant, body.customer));
        if (body.confirm === true && method === undefined) {
          throw new KeelError('payment_method_required', 'confirm: true needs a payment_method.', { param: 'payment_method' });
        }
        return {
          amount,
          currency: body.currency,
          orderId: body.order_id,
          country,
          captureMethod: body.capture_method ?? 'automatic',
          source: method?.source,
          snapshot: method?.snapshot,
          customerId,
          paymentMethodId: method?.paymentMethodId,
          confirm: body.confirm === true,
          description: body.description,
          metadata: body.metadata ?? {},
        };
      };
      // A confirmed create tries the cost floor first: its checks, then the key inserted with the payment.
      const fresh = body.confirm === true ? startCreatePayment(deps, merchant, inputOf) : undefined;
      return idempotent(services, request, reply, async (context) => createPayment(context, await inputOf()), fresh);
    }),
  );

  app.post('/v1/payments/:id/confirm', { config: secret, schema: { params: IdParams, body: ConfirmBody, tags: ['payments'] } }, (request, reply) =>
    inContext(request, async () =>
      idempotent(services, request, reply, async (context) => {
        const payment = await loadOr404(context.merchant, request.params.id);
        const customer = payment.customerId === null ? undefined : uuidToPublic('customer', payment.customerId);
        const method = await paymentMethodFrom(context.merchant, request.body?.payment_method, customer);
        return authorizePayment(context, { paymentId: payment.id, source: method?.source, snapshot: method?.snapshot });
      }),
    ),
  );

  app.post('/v1/payments/:id/capture', { config: secret, schema: { params: IdParams, body: CaptureBody, tags: ['payments'] } }, (request, reply) =>
    inContext(request, async () => {
      const requested = request.body?.amount;
      // The cost floor first (its statement checks the payment); a payment it cannot capture goes the general way.
      const fresh = startCapture(deps, request.merchant, publicToUuid('payment', request.params.id), requested === undefined ? undefined : BigInt(requested));
      return idempotent(
        services,
        request,
        reply,
        async (context) => {
          const payment = await loadOr404(context.merchant, request.params.id);
          const amount = requested === undefined ? undefined : checkAmount(requested, payment.currency);
          return capturePayment(context, payment.id, amount);
        },
        fresh,
      );
    }),
  );

  app.post('/v1/payments/:id/cancel', { config: secret, schema: { params: IdParams, body: CancelBody, tags: ['payments'] } }, (request, reply) =>
    inContext(request, async () =>
      idempotent(services, request, reply, async (context) => cancelPayment(context, (await loadOr404(context.merchant, request.params.id)).id, request.body?.reason)),
    ),
  );

  app.get('/v1/payments/:id', { config: secret, schema: { params: IdParams, tags: ['payments'] } }, (request) =>
    inContext(request, async () => {
      const merchant = request.merchant;
      return paymentToApi(await loadOr404(merchant, request.params.id));
    }),
  );

  app.get('/v1/payments', { config: secret, schema: { querystring: ListPaymentsQuery, tags: ['payments'] } }, (request) =>
    inContext(request, async () => {
      const { query } = request;
      const page = pageOf(query, 'payment');
      const filter = {
        ...(query.status === undefined ? {} : { status: query.status as Payment['status'] }),
        ...(query.order_id === undefined ? {} : { orderId: query.order_id }),
      };
      return listOf(await listPayments(deps.db, request.merchant.id, filter, page), page, (row) => paymentToApi(toPayment(row)));
    }),
  );

  /** A card in the body, or a stored method of the named customer (a one-click payment the shopper approved). */
  async function paymentMethodFrom(merchant: MerchantContext, input: Static<typeof PaymentMethodInput> | undefined, customer: string | undefined) {
    if (input === undefined) return undefined;
    if (typeof input !== 'string') {
      const { card, snapshot } = checkCard(input.card);
      return { source: { card } as PaymentSource, snapshot, customerId: undefined, paymentMethodId: undefined };
    }
    return deps.storedMethods.chargeable(merchant.id, input, customer);
  }

  async function customerIdFrom(merchant: MerchantContext, customer: string | undefined): Promise<string | undefined> {
    return customer === undefined ? undefined : deps.storedMethods.customerId(merchant.id, customer);
  }
}
