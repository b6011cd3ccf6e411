import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Pool } from 'undici';

/**
 * What the load test's shoppers do beyond a single API call: a Brand Pay checkout through the hosted page's own
 * endpoints (the merchant creates the session, the shopper opens the page with a cookie jar, waits in the
 * queue's waiting room when there is one — coming back as its refresh would — approves with a PIN, and the
 * merchant confirms), and an API payment that first takes a queue ticket and waits for its admission. Each
 * records its wait in the queue (the server's `joined_at` and `admitted_at`, and the first estimate it was told).
 */
export interface Answer {
  readonly status: number;
  readonly body: Record<string, unknown> & { id?: string; error?: { code?: string } };
  readonly setCookie: string | undefined;
  readonly text: string;
}

export interface Client {
  call(method: 'GET' | 'POST', path: string, options?: { body?: unknown; secret?: boolean; key?: string; cookie?: string; ip?: string }): Promise<Answer>;
}

export function clientOf(pool: Pool, secretKey: string): Client {
  return {
    async call(method, path, options = {}) {
      const headers: Record<string, string> = {};
      if (options.secret !== false) headers['authorization'] = `Bearer ${secretKey}`;
      if (method === 'POST') {
        headers['content-type'] = 'application/json';
        if (options.key !== undefined) headers['idempotency-key'] = options.key;
      }
      if (options.cookie !== undefined) headers['cookie'] = options.cookie;
      if (options.ip !== undefined) headers['x-forwarded-for'] = options.ip;
      const response = await pool.request({ method, path, headers, ...(method === 'POST' ? { body: JSON.stringify(options.body ?? {}) } : {}) });
      const text = await response.body.text();
      let body: Answer['body'] = {};
      try {
        body = JSON.parse(text) as Answer['body'];
      } catch {
        // HTML (the hosted page) or an error page: its status and text say enough.
      }
      const cookie = response.headers['set-cookie'];
      return { status: response.statusCode, body, setCookie: Array.isArray(cookie) ? cookie[0] : cookie, text };
    },
  };
}

/** One shopper's stay in the queue, from the server's clock. */
export interface QueueWait {
  readonly joinedAt: number;
  readonly admittedAt: number;
  /** The estimated wait the shopper was first told, in seconds. */
  readonly estimateS: number;
  /** Whether they waited at all (not admitted on joining). */
  readonly waited: boolean;
}

export interface ShopperResult {
  readonly status: number;
  readonly code: string | undefined;
  readonly wait: QueueWait | undefined;
  /** When the shopper was let in (performance.now()); the payment's latency counts from here. */
  readonly admittedAtMs: number | undefined;
  /** A wait that ended without an admission or an honest answer (timed out, or an error while waiting). */
  readonly lost: boolean;
}

/** A shopper gives up waiting after this long: counted as lost. */
export const queueGiveUpMs = 600_000;

/** How long a waiting shopper stays away before asking again: the waiting room's own refresh. */
function comeBackAfterS(estimateS: number, floorS: number): number {
  return Math.min(10, Math.max(floorS, estimateS / 2));
}

interface Position {
  status?: string;
  position?: number | null;
  estimated_wait_s?: number | null;
  joined_at?: string | null;
  admitted_at?: string | null;
}

async function waitForAdmission(first: Position, ask: () => Promise<Answer>, floorS: number): Promise<{ wait: QueueWait | undefined; lost: boolean }> {
  const estimateS = Number(first.estimated_wait_s ?? 0);
  const began = performance.now();
  let current = first;
  while (current.status === 'waiting') {
    if (performance.now() - began > queueGiveUpMs) return { wait: undefined, lost: true };
    await sleep(comeBackAfterS(Number(current.estimated_wait_s ?? 1), floorS) * 1000);
    const answer = await ask();
    // Refused for load, the shopper asks again (as the waiting room's refresh would); anything else loses them.
    if (answer.status === 503 || answer.status === 429) continue;
    if (answer.status !== 200) return { wait: undefined, lost: true };
    current = answer.body as Position;
  }
  if (current.status !== 'admitted' || current.joined_at == null || current.admitted_at == null) return { wait: undefined, lost: current.status !== 'admitted' };
  return {
    wait: { joinedAt: Date.parse(current.joined_at), admittedAt: Date.parse(current.admitted_at), estimateS, waited: first.status === 'waiting' },
    lost: false,
  };
}

/** A card payment through the API; with the queue on, after a queue ticket's admission. */
export async function apiPayment(client: Client, body: Record<string, unknown>, queue: boolean): Promise<ShopperResult & { paymentId: string | undefined; key: string; sent: Record<string, unknown> }> {
  const key = randomUUID();
  let wait: QueueWait | undefined;
  let admittedAtMs: number | undefined;
  let ticketId: string | undefined;
  if (queue) {
    const ticket = await client.call('POST', '/v1/queue_tickets', { body: {} });
    if (ticket.status !== 200) return { status: ticket.status, code: ticket.body.error?.code, wait: undefined, admittedAtMs: undefined, lost: false, paymentId: undefined, key, sent: body };
    ticketId = ticket.body.id;
    const waited = await waitForAdmission(ticket.body as Position, () => client.call('GET', `/v1/queue_tickets/${ticketId ?? ''}`), 0.5);
    if (waited.lost) return { status: 0, code: 'lost_in_queue', wait: undefined, admittedAtMs: undefined, lost: true, paymentId: undefined, key, sent: body };
    wait = waited.wait;
    admittedAtMs = performance.now();
  }
  const sent = ticketId === undefined ? body : { ...body, queue_ticket: ticketId };
  const answer = await client.call('POST', '/v1/payments', { body: sent, key });
  return { status: answer.status, code: answer.body.error?.code, wait, admittedAtMs, lost: false, paymentId: answer.body.id, key, sent };
}

export interface BrandPayShopper {
  readonly customer: string;
  readonly method: string;
  readonly pin: string;
}

export const loadtestPin = '246813';

/** Registers a shopper once: a customer with a stored card and a PIN, as the hosted page would leave them. */
export async function registerShopper(client: Client, index: number): Promise<BrandPayShopper> {
  const customer = await client.call('POST', '/v1/brandpay/customers', { body: { customer_key: `loadtest-${randomUUID()}` }, key: randomUUID() });
  if (customer.status !== 200 && customer.status !== 201) throw new Error(`registering load-test shopper ${index}: ${customer.status} ${customer.text}`);
  const id = customer.body.id ?? '';
  const method = await client.call('POST', `/v1/brandpay/customers/${id}/payment_methods`, { body: { type: 'card', card: { number: '4242424242424242', exp_month: 12, exp_year: 2034, cvc: '123' } }, key: randomUUID() });
  const pin = await client.call('POST', `/v1/brandpay/customers/${id}/pin`, { body: { pin: loadtestPin }, key: randomUUID() });
  if ((method.status !== 200 && method.status !== 201) || pin.status !== 200) throw new Error(`registering load-test shopper ${index}: ${method.status} ${method.text} / ${pin.status} ${pin.text}`);
  return { customer: id, method: method.body.id ?? '', pin: loadtestPin };
}

/**
 * A Brand Pay checkout: the merchant's session, the page (waiting when the queue holds the shopper), the PIN
 * approval (following a 202 until it has its redirect), and the merchant's confirm of what the redirect names.
 */
export async function brandPayCheckout(client: Client, shopper: BrandPayShopper, order: { orderId: string; amount: number }, ip: string): Promise<ShopperResult> {
  const session = await client.call('POST', '/v1/brandpay/checkout_sessions', {
    body: { customer: shopper.customer, amount: order.amount, currency: 'KRW', order_id: order.orderId, success_url: 'https://shop.example/success', fail_url: 'https://shop.example/fail' },
    key: randomUUID(),
  });
  const failed = (answer: Answer): ShopperResult => ({ status: answer.status, code: answer.body.error?.code, wait: undefined, admittedAtMs: undefined, lost: false });
  if (session.status !== 200) return failed(session);
  const cs = session.body.id ?? '';
  const page = await client.call('GET', `/pay/${cs}`, { secret: false, ip });
  if (page.status !== 200) return failed(page);
  const cookie = page.setCookie?.split(';')[0];
  const asPage = { secret: false, ip, ...(cookie === undefined ? {} : { cookie }) };
  let wait: QueueWait | undefined;
  let admittedAtMs: number | undefined;
  if (page.text.includes('id="queue-position"')) {
    const first = await client.call('GET', `/pay/${cs}/queue`, asPage);
    const waited = await waitForAdmission(first.body as Position, () => client.call('GET', `/pay/${cs}/queue`, asPage), 1);
    if (waited.lost) return { status: 0, code: 'lost_in_queue', wait: undefined, admittedAtMs: undefined, lost: true };
    wait = waited.wait;
    admittedAtMs = performance.now();
    // Admitted: the waiting room's refresh opens the pay page, which uses the admission.
    const opened = await client.call('GET', `/pay/${cs}`, asPage);
    if (opened.status !== 200) return failed(opened);
  } else if (cookie !== undefined) {
    const position = await client.call('GET', `/pay/${cs}/queue`, asPage);
    const body = position.body as Position;
    if (body.joined_at != null && body.admitted_at != null) wait = { joinedAt: Date.parse(body.joined_at), admittedAt: Date.parse(body.admitted_at), estimateS: 0, waited: false };
  }
  let approval = await client.call('POST', `/pay/${cs}/approve`, { ...asPage, body: { payment_method: shopper.method, pin: shopper.pin } });
  for (let tries = 0; approval.status === 202 && tries < 240; tries += 1) {
    await sleep(250);
    approval = await client.call('GET', `/pay/${cs}/approval`, asPage);
  }
  if (approval.status !== 200 || typeof approval.body['redirect_url'] !== 'string') return { ...failed(approval), wait, admittedAtMs };
  const redirect = new URL(approval.body['redirect_url']);
  if (redirect.pathname === '/fail') return { status: 402, code: redirect.searchParams.get('code') ?? 'declined', wait, admittedAtMs, lost: false };
  const confirmed = await client.call('POST', '/v1/brandpay/payments/confirm', {
    body: { payment_key: redirect.searchParams.get('paymentKey'), order_id: order.orderId, amount: order.amount },
    key: randomUUID(),
  });
  return { status: confirmed.status, code: confirmed.body.error?.code, wait, admittedAtMs, lost: false };
}
