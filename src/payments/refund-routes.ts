import { Type } from 'typebox';
import { KeelError } from '../errors.js';
import { createRefund, startRefund } from './operations/refund.js';
import { findPayment, findRefund, listRefunds, toRefund } from './repository.js';
import { ListQuery, listOf, pageOf } from '../http/lists.js';
import { refundToApi } from './serialize.js';
import { publicToUuid } from '../storage/ids.js';
import type { KeelApp, KeelServices } from '../http/app.js';
import { inContext } from '../http/app.js';
import { idempotent } from './keyed.js';
import { CreateRefundBody, IdParams } from '../http/schemas.js';
import { checkAmount } from '../http/validation.js';

const ListRefundsQuery = ListQuery({ payment: Type.Optional(Type.String({ maxLength: 64 })) });

/** `/v1/refunds`: create (partial or full), retrieve, and list (all, or one payment's). */
export function registerRefundRoutes(app: KeelApp, services: KeelServices): void {
  const { deps } = services;
  const secret = { auth: 'secret' } as const;

  app.post('/v1/refunds', { config: secret, schema: { body: CreateRefundBody, tags: ['refunds'] } }, (request, reply) =>
    inContext(request, async () => {
      const { body } = request;
      const paymentId = publicToUuid('payment', body.payment);
      // The cost floor first (its statement checks the payment and what remains refundable); a refund it cannot
      // reserve goes the general way, which answers why.
      const fresh = startRefund(deps, request.merchant, paymentId, { amount: body.amount === undefined ? undefined : BigInt(body.amount), reason: body.reason });
      return idempotent(
        services,
        request,
        reply,
        async (context) => {
          const payment = paymentId === undefined ? undefined : await findPayment(deps.db, context.merchant.id, paymentId);
          if (payment === undefined) throw new KeelError('resource_missing', `No such payment: ${body.payment}.`, { param: 'payment' });
          const amount = body.amount === undefined ? undefined : checkAmount(body.amount, payment.currency);
          return createRefund(context, { paymentId: payment.id, amount, reason: body.reason });
        },
        fresh,
      );
    }),
  );

  app.get('/v1/refunds', { config: secret, schema: { querystring: ListRefundsQuery, tags: ['refunds'] } }, (request) =>
    inContext(request, async () => {
      const page = pageOf(request.query, 'refund');
      let paymentId: string | undefined;
      if (request.query.payment !== undefined) {
        paymentId = publicToUuid('payment', request.query.payment);
        if (paymentId === undefined) throw new KeelError('parameter_invalid', 'payment must be a payment id (pay_…).', { param: 'payment' });
      }
      return listOf(await listRefunds(deps.db, request.merchant.id, paymentId, page), page, (row) => refundToApi(toRefund(row)));
    }),
  );

  app.get('/v1/refunds/:id', { config: secret, schema: { params: IdParams, tags: ['refunds'] } }, (request) =>
    inContext(request, async () => {
      const merchant = request.merchant;
      const refundId = publicToUuid('refund', request.params.id);
      const refund = refundId === undefined ? undefined : await findRefund(deps.db, merchant.id, refundId);
      if (refund === undefined) throw new KeelError('resource_missing', `No such refund: ${request.params.id}.`, { param: 'id' });
      return refundToApi(refund);
    }),
  );
}
