import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { verifyWebhook } from '../src/webhooks/signature.js';

/**
 * An example shop on Keel's Brand Pay, as a shop's own server would be written: a checkout page that includes
 * Keel's SDK with the publishable key; a backend that creates the Brand Pay customer and the checkout session
 * with the secret key; a success page whose backend confirms the payment with Keel and handles each answer
 * (200 complete, 202 still processing at the partner, 4xx refused); a fail page that explains the code Keel
 * sent; and a webhook receiver that checks every delivery's signature with `verifyWebhook` before it trusts it.
 * `npm run example` runs it against a running Keel (`examples/main.ts`); the browser tests drive it too.
 */
export interface ExampleShopOptions {
  readonly keelUrl: string;
  readonly secretKey: string;
  readonly publishableKey: string;
  /** The shopper's id in the shop (Brand Pay's `customer_key`). */
  readonly customerKey: string;
  readonly amount: number;
  /** Where the shop listens; 0 picks a free port. */
  readonly port?: number;
  /** Register a webhook endpoint for this shop at start (its own `/webhooks`). */
  readonly webhooks?: boolean;
}

export interface ReceivedEvent {
  readonly id: string;
  readonly type: string;
  readonly object: Record<string, unknown>;
}

export interface ExampleShop {
  readonly url: string;
  /** Deliveries whose signature verified, in order of arrival. */
  readonly events: readonly ReceivedEvent[];
  /** Deliveries refused for a bad or missing signature. */
  readonly refusedDeliveries: () => number;
  close(): Promise<void>;
}

/** What the shop tells the shopper for each code Keel can put on `fail_url` or answer a confirm with. */
const failureMessages: Record<string, string> = {
  card_declined: 'Your card was declined. Try another card.',
  insufficient_funds: 'Your card has insufficient funds.',
  expired_card: 'Your card has expired.',
  incorrect_card: 'The card details were not accepted.',
  card_authentication_required: 'Your card needs an authentication Keel does not run. Try another card.',
  customer_locked: 'Too many wrong PINs. Contact the shop to unlock your payments.',
  checkout_session_expired: 'The checkout expired. Start again.',
  checkout_session_used: 'This checkout was already used.',
  canceled: 'You left the payment page.',
  gateway_unavailable: 'The payment partner could not be reached. Nothing was charged; try again.',
  amount_mismatch: 'The amount changed. Nothing was charged.',
};

async function keelCall(options: ExampleShopOptions, method: 'GET' | 'POST', path: string, body?: unknown): Promise<{ status: number; body: Record<string, unknown> }> {
  const response = await fetch(`${options.keelUrl}${path}`, {
    method,
    headers: {
      authorization: `Bearer ${options.secretKey}`,
      ...(method === 'POST' ? { 'content-type': 'application/json', 'idempotency-key': randomUUID() } : {}),
    },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}

function readBody(request: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    request.on('error', reject);
  });
}

function escape(text: string): string {
  return text.replace(/[&<>"']/g, (char) => `&#${char.charCodeAt(0)};`);
}

export async function startExampleShop(options: ExampleShopOptions): Promise<ExampleShop> {
  let shopUrl = '';
  let orderSequence = 0;
  let webhookSecret = '';
  let refused = 0;
  const events: ReceivedEvent[] = [];
  const server: Server = createServer((request, response) => {
    const url = new URL(request.url ?? '/', shopUrl);
    const html = (body: string, status = 200) => {
      response.writeHead(status, { 'content-type': 'text/html; charset=utf-8' });
      response.end(`<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Demo Shop</title></head><body style="font-family: system-ui; max-width: 420px; margin: 40px auto">${body}</body></html>`);
    };
    const json = (status: number, body: unknown) => {
      response.writeHead(status, { 'content-type': 'application/json' });
      response.end(JSON.stringify(body));
    };
    void (async () => {
      if (url.pathname === '/' && request.method === 'GET') {
        return html(`<h1>Demo Shop</h1><p>Keel T-shirt · ${options.amount.toLocaleString('en-US')} KRW</p>
<button id="buy" type="button">Pay with Demo Pay</button><p id="error" role="alert"></p>
<script src="${options.keelUrl}/v1/brandpay.js"></script>
<script>
document.getElementById('buy').addEventListener('click', async () => {
  const session = await (await fetch('/checkout', { method: 'POST' })).json();
  KeelPay(${JSON.stringify(options.publishableKey)}).requestPayment({ checkoutSession: session.id, lang: 'en' }).catch((error) => { document.getElementById('error').textContent = error.message; });
});
</script>`);
      }
      // The shop's backend: the customer (created once, then found by the same customer_key) and a session.
      if (url.pathname === '/checkout' && request.method === 'POST') {
        const customer = await keelCall(options, 'POST', '/v1/brandpay/customers', { customer_key: options.customerKey });
        orderSequence += 1;
        const session = await keelCall(options, 'POST', '/v1/brandpay/checkout_sessions', {
          customer: customer.body['id'],
          amount: options.amount,
          currency: 'KRW',
          order_id: `demo_${Date.now()}_${orderSequence}`,
          order_name: 'Keel T-shirt',
          success_url: `${shopUrl}/success`,
          fail_url: `${shopUrl}/fail`,
        });
        return json(session.status, { id: session.body['id'], url: session.body['url'] });
      }
      // The success redirect names the payment; only the shop's server confirms it, with the amount it expects.
      if (url.pathname === '/success' && request.method === 'GET') {
        const paymentKey = url.searchParams.get('paymentKey') ?? '';
        const orderId = url.searchParams.get('orderId') ?? '';
        const confirmed = await keelCall(options, 'POST', '/v1/brandpay/payments/confirm', { payment_key: paymentKey, order_id: orderId, amount: options.amount });
        if (confirmed.status === 200) return html(`<h1 id="result">Payment complete</h1><p>Order ${escape(orderId)}: ${escape(String(confirmed.body['status']))}</p>`);
        if (confirmed.status === 202) {
          // The partner has not answered yet: the payment settles by itself; the page asks the shop until it has.
          return html(`<h1 id="result">Payment processing</h1><p id="detail">Order ${escape(orderId)} is being confirmed with the card company. This page updates by itself.</p>
<script>
const poll = async () => {
  const answer = await (await fetch('/orders/status?payment=${encodeURIComponent(paymentKey)}')).json();
  if (answer.status === 'succeeded' || answer.status === 'requires_capture') { document.getElementById('result').textContent = 'Payment complete'; document.getElementById('detail').textContent = 'Order ${escape(orderId)}: ' + answer.status; return; }
  if (answer.status === 'failed' || answer.status === 'canceled' || answer.status === 'requires_confirmation') { document.getElementById('result').textContent = 'Payment failed'; document.getElementById('detail').textContent = answer.failure_message || answer.status; return; }
  setTimeout(poll, 1000);
};
setTimeout(poll, 1000);
</script>`);
        }
        const error = (confirmed.body['error'] ?? {}) as { code?: string; message?: string };
        return html(`<h1 id="result">Payment failed</h1><p id="detail">${escape(failureMessages[error.code ?? ''] ?? error.message ?? 'The payment did not go through.')}</p>`, 402);
      }
      if (url.pathname === '/fail' && request.method === 'GET') {
        const code = url.searchParams.get('code') ?? '';
        return html(`<h1 id="result">Payment failed</h1><p id="detail">${escape(failureMessages[code] ?? 'The payment did not go through.')}</p><p><code>${escape(code)}</code></p><p><a href="/">Back to the shop</a></p>`);
      }
      if (url.pathname === '/orders/status' && request.method === 'GET') {
        const payment = await keelCall(options, 'GET', `/v1/payments/${encodeURIComponent(url.searchParams.get('payment') ?? '')}`);
        return json(payment.status, { status: payment.body['status'], failure_message: payment.body['failure_message'] ?? null });
      }
      // Webhooks: the raw body is verified before it is parsed; a bad signature is refused and not trusted.
      if (url.pathname === '/webhooks' && request.method === 'POST') {
        const raw = await readBody(request);
        if (!verifyWebhook(raw, request.headers['keel-signature'] as string | undefined, webhookSecret)) {
          refused += 1;
          response.writeHead(400).end();
          return;
        }
        const event = JSON.parse(raw) as { id: string; type: string; data: { object: Record<string, unknown> } };
        events.push({ id: event.id, type: event.type, object: event.data.object });
        response.writeHead(200).end();
        return;
      }
      response.writeHead(404).end();
    })().catch((error: unknown) => {
      response.writeHead(500).end(String(error));
    });
  });
  await new Promise<void>((resolve) => server.listen(options.port ?? 0, '127.0.0.1', () => resolve()));
  shopUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  if (options.webhooks === true) {
    const endpoint = await keelCall(options, 'POST', '/v1/webhook_endpoints', { url: `${shopUrl}/webhooks`, events: ['*'] });
    if (endpoint.status !== 200) throw new Error(`registering the webhook endpoint failed: ${JSON.stringify(endpoint.body)}`);
    webhookSecret = String(endpoint.body['secret']);
  }
  return {
    url: shopUrl,
    events,
    refusedDeliveries: () => refused,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
