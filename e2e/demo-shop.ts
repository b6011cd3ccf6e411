import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * A demo shop for the browser test: a checkout page that includes Keel's SDK with the publishable key, a
 * backend that creates the Brand Pay customer and checkout session with the secret key, and a success page
 * whose backend confirms the payment with Keel, as a shop's own server would.
 */
export interface DemoShop {
  readonly url: string;
  close(): Promise<void>;
}

export interface DemoShopOptions {
  readonly keelUrl: string;
  readonly secretKey: string;
  readonly publishableKey: string;
  readonly customerKey: string;
  readonly amount: number;
}

async function keel(options: DemoShopOptions, path: string, body: unknown): Promise<{ status: number; body: Record<string, unknown> }> {
  const response = await fetch(`${options.keelUrl}${path}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${options.secretKey}`, 'content-type': 'application/json', 'idempotency-key': crypto.randomUUID() },
    body: JSON.stringify(body),
  });
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}

export async function startDemoShop(options: DemoShopOptions): Promise<DemoShop> {
  let shopUrl = '';
  let orderSequence = 0;
  const server: Server = createServer((request, response) => {
    const url = new URL(request.url ?? '/', shopUrl);
    const html = (body: string) => {
      response.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      response.end(`<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Demo Shop</title></head><body style="font-family: system-ui; max-width: 420px; margin: 40px auto">${body}</body></html>`);
    };
    void (async () => {
      if (url.pathname === '/') {
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
      if (url.pathname === '/checkout' && request.method === 'POST') {
        const customer = await keel(options, '/v1/brandpay/customers', { customer_key: options.customerKey });
        orderSequence += 1;
        const session = await keel(options, '/v1/brandpay/checkout_sessions', {
          customer: customer.body['id'],
          amount: options.amount,
          currency: 'KRW',
          order_id: `demo_${Date.now()}_${orderSequence}`,
          success_url: `${shopUrl}/success`,
          fail_url: `${shopUrl}/fail`,
        });
        response.writeHead(200, { 'content-type': 'application/json' });
        return response.end(JSON.stringify({ id: session.body['id'] }));
      }
      if (url.pathname === '/success') {
        const confirmed = await keel(options, '/v1/brandpay/payments/confirm', {
          payment_key: url.searchParams.get('paymentKey'),
          order_id: url.searchParams.get('orderId'),
          amount: Number(url.searchParams.get('amount')),
        });
        return html(
          confirmed.status === 200
            ? `<h1 id="result">Payment complete</h1><p>Order ${url.searchParams.get('orderId')}: ${String(confirmed.body['status'])}</p>`
            : `<h1 id="result">Payment failed</h1><p>${JSON.stringify(confirmed.body)}</p>`,
        );
      }
      if (url.pathname === '/fail') return html(`<h1 id="result">Payment failed</h1><p>${url.searchParams.get('code') ?? ''}</p>`);
      response.writeHead(404).end();
    })().catch((error: unknown) => {
      response.writeHead(500).end(String(error));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  shopUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url: shopUrl,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
