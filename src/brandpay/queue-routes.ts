import { Type } from 'typebox';
import { KeelError } from '../errors.js';
import type { KeelApp, KeelServices } from '../http/app.js';
import { inContext } from '../http/app.js';
import { customerOr404 } from './customers.js';
import { ticketToApi } from '../queue/checkout-queue.js';

/**
 * A shop's own checkout in the same queue as the hosted page: `POST /v1/queue_tickets` joins the merchant's
 * country's queue and `GET /v1/queue_tickets/{id}` follows the ticket; a payment created with an admitted ticket
 * (`queue_ticket`) has the priority of work that finishes a payment. Joining is not keyed: each POST is a new
 * place at the back, so a shop keeps the ticket's id rather than retrying the POST.
 */
const TicketBody = Type.Object({ customer: Type.Optional(Type.String({ pattern: '^cus_[0-9A-Za-z]{26}$' })) }, { additionalProperties: false });
const TicketParams = Type.Object({ id: Type.String({ maxLength: 64 }) });

export function registerQueueRoutes(app: KeelApp, services: KeelServices): void {
  const queue = services.checkoutQueue;
  app.post('/v1/queue_tickets', { config: { auth: 'secret' }, schema: { body: TicketBody, tags: ['queue'] } }, (request) =>
    inContext(request, async () => {
      const merchant = request.merchant;
      const customer = request.body?.customer;
      if (customer !== undefined) await customerOr404(services.deps.db, merchant.id, customer, { param: 'customer' });
      return ticketToApi(await queue.join({ queue: merchant.country, merchant: merchant.id, customer: customer ?? null, session: null }));
    }),
  );

  app.get('/v1/queue_tickets/:id', { config: { auth: 'secret' }, schema: { params: TicketParams, tags: ['queue'] } }, (request) =>
    inContext(request, async () => {
      const ticket = await queue.status(request.params.id);
      if (ticket === undefined || ticket.merchant !== request.merchant.id) throw new KeelError('resource_missing', `No such queue ticket: ${request.params.id}.`, { param: 'id' });
      return ticketToApi(ticket);
    }),
  );
}

