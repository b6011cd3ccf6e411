import { Type } from 'typebox';
import { KeelError } from '../errors.js';
import type { KeelApp, KeelServices } from '../http/app.js';
import { inContext } from '../http/app.js';
import { idempotent } from '../payments/keyed.js';
import { AttachMethodBody } from '../http/schemas.js';
import { checkCard } from '../http/validation.js';
import { ok } from '../payments/operations/context.js';
import type { MerchantContext } from '../merchants/types.js';
import { publicToUuid } from '../storage/ids.js';
import { ListQuery, listOf, pageOf } from '../http/lists.js';
import { createCustomer, customerOr404 as findCustomerOr404, customerToApi, listCustomers, markCustomerDeleted, setPin, unlockCustomer, type Customer } from './customers.js';
import { attachMethod, detachMethod, findMethod, listMethods, paymentMethodToApi, type MethodToAttach } from './payment-methods.js';

/** `/v1/brandpay/…`: customers, PINs and stored payment methods (secret key). */

const CustomerBody = Type.Object({ customer_key: Type.String({ minLength: 1, maxLength: 100 }) }, { additionalProperties: false });
const PinBody = Type.Object({ pin: Type.String({ maxLength: 16 }), current_pin: Type.Optional(Type.String({ maxLength: 16 })) }, { additionalProperties: false });
const CustomerParams = Type.Object({ id: Type.String({ maxLength: 64 }) });
const MethodParams = Type.Object({ id: Type.String({ maxLength: 64 }), pm: Type.String({ maxLength: 64 }) });
const EmptyBody = Type.Object({}, { additionalProperties: false });
const ListCustomersQuery = ListQuery({ customer_key: Type.Optional(Type.String({ minLength: 1, maxLength: 100 })) });

export function registerBrandPayRoutes(app: KeelApp, services: KeelServices): void {
  const { deps } = services;
  const secret = { auth: 'secret' } as const;

  const customerOr404 = (merchant: MerchantContext, publicId: string, options: { allowDeleted?: boolean } = {}): Promise<Customer> =>
    findCustomerOr404(deps.db, merchant.id, publicId, { param: 'id', ...options });

  app.post('/v1/brandpay/customers', { config: secret, schema: { body: CustomerBody, tags: ['brandpay'] } }, (request, reply) =>
    inContext(request, () =>
      idempotent(services, request, reply, async () => {
        const { customer, created } = await createCustomer(deps.db, request.merchant.id, request.body.customer_key);
        return ok(created ? 201 : 200, customerToApi(customer));
      }),
    ),
  );

  app.get('/v1/brandpay/customers', { config: secret, schema: { querystring: ListCustomersQuery, tags: ['brandpay'] } }, (request) =>
    inContext(request, async () => {
      const page = pageOf(request.query, 'customer');
      return listOf(await listCustomers(deps.db, request.merchant.id, request.query.customer_key, page), page, customerToApi);
    }),
  );

  app.get('/v1/brandpay/customers/:id', { config: secret, schema: { params: CustomerParams, tags: ['brandpay'] } }, (request) =>
    inContext(request, async () => customerToApi(await customerOr404(request.merchant, request.params.id, { allowDeleted: true }))),
  );

  // A finished key is answered before any lookup (the customer may be locked or deleted since): lookups run inside.
  app.post('/v1/brandpay/customers/:id/pin', { config: secret, schema: { params: CustomerParams, body: PinBody, tags: ['brandpay'] } }, (request, reply) =>
    inContext(request, () =>
      idempotent(services, request, reply, async () => {
        const customer = await customerOr404(request.merchant, request.params.id);
        return ok(200, customerToApi(await setPin(deps.db, request.merchant.id, customer.id, request.body.pin, request.body.current_pin)));
      }),
    ),
  );

  app.post('/v1/brandpay/customers/:id/unlock', { config: secret, schema: { params: CustomerParams, body: EmptyBody, tags: ['brandpay'] } }, (request, reply) =>
    inContext(request, () =>
      idempotent(services, request, reply, async () => {
        const customer = await customerOr404(request.merchant, request.params.id);
        return ok(200, customerToApi(await unlockCustomer(deps.db, request.merchant.id, customer.id)));
      }),
    ),
  );

  app.post('/v1/brandpay/customers/:id/payment_methods', { config: secret, schema: { params: CustomerParams, body: AttachMethodBody, tags: ['brandpay'] } }, (request, reply) =>
    inContext(request, () =>
      idempotent(services, request, reply, async () => {
        const customer = await customerOr404(request.merchant, request.params.id);
        // The merchant's server calls here: the customer's budget of new methods applies, no IP's.
        await services.shopperLimits.admitNewMethod({ customerId: customer.id });
        const { method, created } = await attachMethod(deps, request.merchant, customer, newMethodFrom(request.body));
        return ok(created ? 201 : 200, paymentMethodToApi(method));
      }),
    ),
  );

  app.get('/v1/brandpay/customers/:id/payment_methods', { config: secret, schema: { params: CustomerParams, tags: ['brandpay'] } }, (request) =>
    inContext(request, async () => {
      const customer = await customerOr404(request.merchant, request.params.id);
      const methods = await listMethods(deps.db, customer);
      return { object: 'list', data: methods.map(paymentMethodToApi), has_more: false };
    }),
  );

  app.delete('/v1/brandpay/customers/:id/payment_methods/:pm', { config: secret, schema: { params: MethodParams, tags: ['brandpay'] } }, (request) =>
    inContext(request, async () => {
      const customer = await customerOr404(request.merchant, request.params.id);
      const methodId = publicToUuid('paymentMethod', request.params.pm);
      const method = methodId === undefined ? undefined : await findMethod(deps.db, request.merchant.id, methodId);
      if (method === undefined || method.customer_id !== customer.id) {
        throw new KeelError('resource_missing', `No such payment method: ${request.params.pm}.`, { param: 'pm' });
      }
      return paymentMethodToApi(await detachMethod(deps, request.merchant, method));
    }),
  );

  app.post('/v1/brandpay/customers/:id/delete', { config: secret, schema: { params: CustomerParams, body: EmptyBody, tags: ['brandpay'] } }, (request, reply) =>
    inContext(request, () =>
      idempotent(services, request, reply, async () => {
        const customer = await customerOr404(request.merchant, request.params.id);
        // Tokens are revoked at the partner first; if one cannot be, the customer stays and the call may be retried.
        for (const method of await listMethods(deps.db, customer)) await detachMethod(deps, request.merchant, method);
        return ok(200, customerToApi(await markCustomerDeleted(deps.db, request.merchant.id, customer)));
      }),
    ),
  );
}

/** The body's method, with the card's rules checked (a bad card is refused naming `card.…`). */
export function newMethodFrom(body: AttachMethodBody): MethodToAttach {
  if (body.type === 'card') return { type: 'card', card: checkCard(body.card, new Date(), 'card').card };
  const account = body.bank_account;
  return { type: 'bank_account', bankAccount: { bankCode: account.bank_code, accountNumber: account.account_number, holderName: account.holder_name } };
}
