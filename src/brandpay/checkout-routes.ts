import type { FastifyReply, FastifyRequest } from 'fastify';
import { Type } from 'typebox';
import { KeelError } from '../errors.js';
import type { KeelApp, KeelServices } from '../http/app.js';
import { inContext } from '../http/app.js';
import { idempotent } from '../payments/keyed.js';
import { AttachMethodBody } from '../http/schemas.js';
import { checkAmount, checkCountry } from '../http/validation.js';
import { loadMerchantContext } from '../merchants/merchants.js';
import { currencyRule } from '../money.js';
import { chargeablePartners } from '../payments/operations/authorize.js';
import { ok } from '../payments/operations/context.js';
import { approvalStatus, approveSession, assertOpen, confirmBrandPayPayment, createSession, findSession, sessionIsOpen, sessionToApi, type Approval } from './checkout.js';
import type { CheckoutSessionRow } from '../storage/schema.js';
import { ticketToApi, type Ticket } from '../queue/checkout-queue.js';
import { renderWaitingRoom } from './waiting-room.js';
import { customerOr404, customerToApi, findCustomer, setPin } from './customers.js';
import { languageFrom, payPageCss, payPageScript, renderPayPage, renderSdk } from './page.js';
import { attachMethod, listMethods, paymentMethodToApi } from './payment-methods.js';
import { newMethodFrom } from './routes.js';

/**
 * Checkout sessions and the merchant's confirm (`/v1/brandpay/…`), the hosted page and its calls (`/pay/…`,
 * credentialed by the session id alone), and the browser SDK (`/v1/brandpay.js`).
 */
/** The pay page's policy: Keel's own script and stylesheet only, nothing inline, never framed. */
export const payPageCsp =
  "default-src 'none'; script-src 'self'; style-src 'self'; img-src https: http: data:; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

const url = Type.String({ pattern: '^https?://', maxLength: 2000 });
const SessionBody = Type.Object(
  {
    customer: Type.String({ pattern: '^cus_[0-9A-Za-z]{26}$' }),
    amount: Type.Integer({ minimum: 1, maximum: Number.MAX_SAFE_INTEGER }),
    currency: Type.String({ pattern: '^[A-Z]{3}$' }),
    order_id: Type.String({ minLength: 1, maxLength: 64, pattern: '^[\\x21-\\x7e]+$' }),
    country: Type.Optional(Type.String({ pattern: '^[A-Z]{2}$' })),
    success_url: url,
    fail_url: url,
    /** What the shopper buys, shown on the page and sent to the partner (Toss `orderName`); default: the order id. */
    order_name: Type.Optional(Type.String({ minLength: 1, maxLength: 100 })),
  },
  { additionalProperties: false },
);
const ConfirmBody = Type.Object(
  { payment_key: Type.String({ maxLength: 64 }), order_id: Type.String({ minLength: 1, maxLength: 64 }), amount: Type.Integer({ minimum: 1, maximum: Number.MAX_SAFE_INTEGER }) },
  { additionalProperties: false },
);
const SessionParams = Type.Object({ session: Type.String({ maxLength: 64 }) });
const IdParams = Type.Object({ id: Type.String({ maxLength: 64 }) });
const ApproveBody = Type.Object({ payment_method: Type.String({ maxLength: 64 }), pin: Type.String({ maxLength: 16 }) }, { additionalProperties: false });
const PagePinBody = Type.Object({ pin: Type.String({ maxLength: 16 }) }, { additionalProperties: false });

export function registerCheckoutRoutes(app: KeelApp, services: KeelServices): void {
  const { deps, config } = services;
  const publicUrl = config.publicUrl;
  const { shopperLimits, checkoutQueue } = services;
  const secureCookie = publicUrl.startsWith('https:');

  /**
   * The shopper's place in the checkout queue: the ticket their signed cookie names for this session, or a new
   * one at the back (with its cookie) when they have none, it is forged or another session's, or it lapsed.
   * Undefined when the queue is off, or its store cannot be reached: checkout then goes on unqueued, since the
   * queue must never be what stops a payment.
   */
  const placeInQueue = async (request: FastifyRequest, reply: FastifyReply, sessionId: string, session: CheckoutSessionRow, rejoinExpired: boolean): Promise<Ticket | undefined> => {
    if (!checkoutQueue.enabled) return undefined;
    try {
      const held = checkoutQueue.ticketFromCookie(request.headers.cookie, sessionId);
      const ticket = held === undefined ? undefined : await checkoutQueue.status(held);
      if (ticket !== undefined && ticket.session === sessionId && (ticket.status !== 'expired' || !rejoinExpired)) return ticket;
      const joined = await checkoutQueue.join({ queue: session.country, merchant: session.merchant_id, customer: session.customer_id, session: sessionId });
      void reply.header('set-cookie', checkoutQueue.setCookieHeader(joined.id, sessionId, secureCookie));
      return joined;
    } catch (error) {
      request.log.warn({ err_message: String(error) }, 'checkout queue unavailable; checkout goes on unqueued');
      return undefined;
    }
  };
  /** Lets an admitted shopper into checkout (using the admission for this session), or refuses with their wait. */
  const admitToCheckout = async (request: FastifyRequest, reply: FastifyReply, sessionId: string, session: CheckoutSessionRow): Promise<void> => {
    const ticket = await placeInQueue(request, reply, sessionId, session, true);
    if (ticket === undefined) return;
    if (ticket.status === 'admitted') {
      const used = await checkoutQueue.use(ticket.id, sessionId, session.merchant_id).catch(() => undefined);
      if (used === undefined || used.result === 'ok') return;
    }
    const waitS = Math.max(1, Math.ceil(ticket.estimatedWaitS ?? 1));
    throw new KeelError('overloaded', `Checkout is busy: you are number ${ticket.position ?? '?'} in the queue, about ${waitS} s from your turn.`, { retryAfterSeconds: waitS });
  };

  app.post('/v1/brandpay/checkout_sessions', { config: { auth: 'secret' }, schema: { body: SessionBody, tags: ['brandpay'] } }, (request, reply) =>
    inContext(request, async () =>
      idempotent(services, request, reply, async (context) => {
        const body = request.body;
        const merchant = request.merchant;
        const amount = checkAmount(body.amount, body.currency);
        chargeablePartners(context, body.currency, undefined);
        const country = checkCountry(body.country ?? merchant.country);
        const customer = await customerOr404(deps.db, merchant.id, body.customer, { param: 'customer' });
        const session = await createSession(deps.db, {
          merchantId: merchant.id,
          customerId: customer.id,
          amount,
          currency: body.currency,
          orderId: body.order_id,
          country,
          successUrl: body.success_url,
          failUrl: body.fail_url,
          orderName: body.order_name ?? null,
        });
        return ok(200, sessionToApi(session, publicUrl));
      }),
    ),
  );

  // Read by the browser SDK with the publishable key, from the shop's own origin.
  app.options('/v1/brandpay/checkout_sessions/:id', { schema: { hide: true } }, async (_request, reply) =>
    reply
      .header('access-control-allow-origin', '*')
      .header('access-control-allow-headers', 'authorization')
      .header('access-control-allow-methods', 'GET')
      .header('access-control-max-age', '600')
      .status(204)
      .send(),
  );
  app.get('/v1/brandpay/checkout_sessions/:id', { config: { auth: 'publishable' }, schema: { params: IdParams, tags: ['brandpay'] } }, (request, reply) =>
    inContext(request, async () => {
      void reply.header('access-control-allow-origin', '*');
      const session = await findSession(deps.db, request.params.id);
      if (session.merchant_id !== request.merchant.id) throw new KeelError('resource_missing', 'No such checkout session.', { param: 'id' });
      return sessionToApi(session, publicUrl);
    }),
  );

  app.post('/v1/brandpay/payments/confirm', { config: { auth: 'secret' }, schema: { body: ConfirmBody, tags: ['brandpay'] } }, (request, reply) =>
    inContext(request, async () =>
      idempotent(services, request, reply, (context) =>
        confirmBrandPayPayment(context, { paymentKey: request.body.payment_key, orderId: request.body.order_id, amount: BigInt(request.body.amount) })),
    ),
  );

  app.get('/v1/brandpay.js', { schema: { hide: true } }, async (_request, reply) =>
    reply.header('content-type', 'application/javascript; charset=utf-8').header('cache-control', 'public, max-age=300').send(renderSdk(publicUrl)),
  );

  // The hosted page. Errors here are answered in the envelope too, and the page shows their messages.
  app.get('/pay/:session', { schema: { params: SessionParams, hide: true } }, async (request, reply) => {
    const session = await findSession(deps.db, request.params.session);
    const merchant = await deps.db.selectFrom('merchants').select(['brand_name', 'brand_color', 'brand_logo_url', 'livemode']).where('id', '=', session.merchant_id).executeTakeFirstOrThrow();
    const query = request.query as { lang?: string };
    const language = languageFrom(query.lang, request.headers['accept-language']);
    const brand = { name: merchant.brand_name, color: merchant.brand_color, logoUrl: merchant.brand_logo_url };
    let waiting: Ticket | undefined;
    if (sessionIsOpen(session)) {
      const ticket = await placeInQueue(request, reply, request.params.session, session, true);
      if (ticket?.status === 'admitted') await checkoutQueue.use(ticket.id, request.params.session, session.merchant_id).catch(() => undefined);
      else waiting = ticket;
    }
    void reply
      .header('content-type', 'text/html; charset=utf-8')
      .header('content-security-policy', payPageCsp)
      // No site may frame the page that takes the PIN (clickjacking); X-Frame-Options for browsers without CSP 2.
      .header('x-frame-options', 'DENY')
      .header('x-content-type-options', 'nosniff')
      .header('referrer-policy', 'no-referrer')
      .header('cache-control', 'no-store');
    if (waiting !== undefined) {
      const room = { position: waiting.position ?? 1, estimatedWaitS: waiting.estimatedWaitS ?? 1, orderLabel: session.order_name ?? session.order_id, testMode: !merchant.livemode };
      return reply.send(renderWaitingRoom(brand, room, language).text);
    }
    return reply
      .send(
        renderPayPage(
          request.params.session,
          brand,
          { orderId: session.order_id, orderName: session.order_name, failUrl: session.fail_url, testMode: !merchant.livemode },
          language,
        ).text,
      );
  });

  // The page's own static files: the only script and stylesheet its CSP admits.
  app.get('/assets/pay-page.js', { schema: { hide: true } }, async (_request, reply) =>
    reply.header('content-type', 'application/javascript; charset=utf-8').header('x-content-type-options', 'nosniff').header('cache-control', 'public, max-age=300').send(payPageScript()),
  );
  app.get('/assets/pay-page.css', { schema: { hide: true } }, async (_request, reply) =>
    reply.header('content-type', 'text/css; charset=utf-8').header('x-content-type-options', 'nosniff').header('cache-control', 'public, max-age=300').send(payPageCss),
  );

  app.get('/pay/:session/session', { schema: { params: SessionParams, hide: true } }, async (request) => {
    const session = await findSession(deps.db, request.params.session);
    assertOpen(session);
    const customer = await findCustomer(deps.db, session.merchant_id, session.customer_id);
    if (customer === undefined || customer.status === 'deleted') throw new KeelError('checkout_session_used', 'This checkout is no longer available.');
    if (customer.status === 'locked') throw new KeelError('customer_locked', 'Payments are locked after 5 wrong PINs.');
    const methods = await listMethods(deps.db, customer);
    return {
      object: 'checkout_session',
      amount: Number(session.amount),
      currency: session.currency,
      exponent: currencyRule(session.currency)?.exponent ?? 0,
      order_id: session.order_id,
      has_pin: customer.hasPin,
      methods: methods.map(paymentMethodToApi),
      expires_at: new Date(session.expires_at).toISOString(),
    };
  });

  // The shopper's place, for a page that polls instead of reloading; joins the queue when they hold no ticket.
  app.get('/pay/:session/queue', { schema: { params: SessionParams, hide: true } }, async (request, reply) => {
    const session = await findSession(deps.db, request.params.session);
    assertOpen(session);
    void reply.header('cache-control', 'no-store');
    const ticket = await placeInQueue(request, reply, request.params.session, session, false);
    if (ticket === undefined) return { object: 'queue_position', status: 'admitted', position: 0, estimated_wait_s: 0, joined_at: null, admitted_at: null };
    const { joined_at: joinedAt, admitted_at: admittedAt } = ticketToApi(ticket);
    return { object: 'queue_position', status: ticket.status, position: ticket.position, estimated_wait_s: ticket.estimatedWaitS, joined_at: joinedAt, admitted_at: admittedAt };
  });

  app.post('/pay/:session/payment_methods', { schema: { params: SessionParams, body: AttachMethodBody, hide: true } }, async (request, reply) => {
    const session = await findSession(deps.db, request.params.session);
    assertOpen(session);
    await admitToCheckout(request, reply, request.params.session, session);
    const merchant = await loadMerchantContext(deps.db, deps.cipher, session.merchant_id);
    const customer = await findCustomer(deps.db, session.merchant_id, session.customer_id);
    if (merchant === undefined || customer === undefined || customer.status !== 'active') throw new KeelError('customer_inactive', 'This shopper cannot add payment methods now.');
    // Card testing: new cards are limited per session, customer and client IP before any is tokenized.
    await shopperLimits.admitNewMethod({ customerId: customer.id, sessionId: session.id, ip: request.ip });
    const { method, created } = await attachMethod(deps, merchant, customer, newMethodFrom(request.body));
    return reply.status(created ? 201 : 200).send(paymentMethodToApi(method));
  });

  app.post('/pay/:session/pin', { schema: { params: SessionParams, body: PagePinBody, hide: true } }, async (request) => {
    const session = await findSession(deps.db, request.params.session);
    assertOpen(session);
    const customer = await findCustomer(deps.db, session.merchant_id, session.customer_id);
    // The page sets only a first PIN; changing one goes through the merchant with the current PIN.
    if (customer === undefined || customer.hasPin) throw new KeelError('pin_required', 'This shopper already has a PIN.');
    return customerToApi(await setPin(deps.db, session.merchant_id, customer.id, request.body.pin, undefined));
  });

  app.post('/pay/:session/approve', { schema: { params: SessionParams, body: ApproveBody, hide: true } }, (request, reply) =>
    inContext(request, async () => {
      const session = await findSession(deps.db, request.params.session);
      if (sessionIsOpen(session)) await admitToCheckout(request, reply, request.params.session, session);
      await shopperLimits.admitPin({ customerId: session.customer_id, ip: request.ip });
      const merchant = await loadMerchantContext(deps.db, deps.cipher, session.merchant_id);
      if (merchant === undefined) throw new KeelError('resource_missing', 'No such checkout session.');
      // A refusal is thrown, and the error handler answers with it (Retry-After included), as on every route.
      const approval = await approveSession(deps, merchant, config.idempotencyLockTimeoutMs, {
        sessionId: request.params.session,
        methodPublicId: request.body.payment_method,
        pin: request.body.pin,
      });
      return approvalAnswer(reply, approval);
    }),
  );

  // A page waiting for an approval under way (a second tap, a reload) asks here until it has its redirect.
  app.get('/pay/:session/approval', { schema: { params: SessionParams, hide: true } }, async (request, reply) => {
    const approval = await approvalStatus(deps.db, request.params.session);
    if (approval.kind === 'open') return reply.send({ object: 'approval', status: 'open' });
    return approvalAnswer(reply, approval);
  });
}

function approvalAnswer(reply: FastifyReply, approval: Approval): FastifyReply {
  if (approval.kind === 'processing') return reply.status(202).send({ object: 'approval', status: 'processing' });
  return reply.send({ object: 'approval', status: 'done', redirect_url: approval.url });
}
