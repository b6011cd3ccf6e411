// Proves the Brand Pay checkout through its HTTP surfaces: the merchant creates a session, the hosted page's
// calls register a card and a PIN and approve with it, the success redirect carries Toss-style parameters, the
// merchant's confirm refuses a changed amount and captures the right one once; sessions are single use and
// expire; wrong PINs on the page lock the customer; the page and the SDK are served with no external assets.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { startSimulator } from '../simulator/server.js';
import { startTestKeel, uniqueKey, type TestKeel } from '../testing/harness.js';

let keel: TestKeel;
before(async () => {
  keel = await startTestKeel();
});
after(async () => {
  await keel.close();
});

const card = { type: 'card', card: { number: '4242424242424242', exp_month: 10, exp_year: 2033, cvc: '321' } };

async function newSession(amount = 45000) {
  const customer = (await keel.request('POST', '/v1/brandpay/customers', { body: { customer_key: uniqueKey('shopper') } })).body;
  const orderId = uniqueKey('ord');
  const session = await keel.request('POST', '/v1/brandpay/checkout_sessions', {
    body: { customer: customer.id, amount, currency: 'KRW', order_id: orderId, success_url: 'https://shop.example/success', fail_url: 'https://shop.example/fail' },
  });
  assert.equal(session.status, 200, JSON.stringify(session.body));
  return { customer, orderId, session: session.body };
}

const page = (sessionId: string, path: string, body?: unknown) =>
  keel.request(body === undefined ? 'GET' : 'POST', `/pay/${sessionId}${path}`, { body, secretKey: null, idempotencyKey: null });

describe('checkout', () => {
  test('register a card and a PIN on the page, approve, redirect, confirm on the server', async () => {
    const { orderId, session } = await newSession();
    assert.match(session.id, /^cs_/);
    assert.match(session.url, new RegExp(`/pay/${session.id}$`));
    const expiresIn = Date.parse(session.expires_at) - Date.now();
    assert.ok(expiresIn > 29 * 60_000 && expiresIn <= 30 * 60_000);
    const state = await page(session.id, '/session');
    assert.equal(state.status, 200);
    assert.deepEqual({ amount: state.body.amount, has_pin: state.body.has_pin, methods: state.body.methods.length }, { amount: 45000, has_pin: false, methods: 0 });
    const method = await page(session.id, '/payment_methods', card);
    assert.equal(method.status, 201, JSON.stringify(method.body));
    assert.equal((await page(session.id, '/pin', { pin: '135790' })).status, 200);
    const approved = await page(session.id, '/approve', { payment_method: method.body.id, pin: '135790' });
    assert.equal(approved.status, 200, JSON.stringify(approved.body));
    const redirect = new URL(approved.body.redirect_url);
    assert.equal(`${redirect.origin}${redirect.pathname}`, 'https://shop.example/success');
    const paymentKey = redirect.searchParams.get('paymentKey') ?? '';
    assert.match(paymentKey, /^pay_/);
    assert.equal(redirect.searchParams.get('orderId'), orderId);
    assert.equal(redirect.searchParams.get('amount'), '45000');
    assert.equal((await keel.request('GET', `/v1/payments/${paymentKey}`)).body.status, 'requires_capture');

    const tampered = await keel.request('POST', '/v1/brandpay/payments/confirm', { body: { payment_key: paymentKey, order_id: orderId, amount: 100 } });
    assert.equal(tampered.status, 400);
    assert.equal(tampered.body.error.code, 'amount_mismatch');
    const confirmed = await keel.request('POST', '/v1/brandpay/payments/confirm', { body: { payment_key: paymentKey, order_id: orderId, amount: 45000 } });
    assert.equal(confirmed.status, 200, JSON.stringify(confirmed.body));
    assert.equal(confirmed.body.status, 'succeeded');
    const again = await keel.request('POST', '/v1/brandpay/payments/confirm', { body: { payment_key: paymentKey, order_id: orderId, amount: 45000 } });
    assert.equal(again.body.status, 'succeeded');
    const charges = await keel.simCharges(orderId);
    assert.equal(charges.length, 1);
    assert.equal(charges[0]?.captured_amount, 45000);

    const reused = await page(session.id, '/approve', { payment_method: method.body.id, pin: '135790' });
    assert.equal(reused.status, 409);
    assert.equal(reused.body.error.code, 'checkout_session_used');
  });

  test('the order\'s name is the session\'s order_name at Toss (which requires one), else the order id', async () => {
    const customer = (await keel.request('POST', '/v1/brandpay/customers', { body: { customer_key: uniqueKey('shopper') } })).body;
    for (const orderName of ['키엘 티셔츠 외 2건', undefined]) {
      const orderId = uniqueKey('ord');
      const session = (
        await keel.request('POST', '/v1/brandpay/checkout_sessions', {
          body: { customer: customer.id, amount: 9000, currency: 'KRW', order_id: orderId, ...(orderName === undefined ? {} : { order_name: orderName }), success_url: 'https://shop.example/success', fail_url: 'https://shop.example/fail' },
        })
      ).body;
      assert.equal(session.order_name, orderName ?? null);
      const method = (await page(session.id, '/payment_methods', card)).body;
      if (orderName !== undefined) await page(session.id, '/pin', { pin: '135790' });
      const approved = await page(session.id, '/approve', { payment_method: method.id, pin: '135790' });
      const paymentKey = new URL(approved.body.redirect_url).searchParams.get('paymentKey');
      const confirmed = await keel.request('POST', '/v1/brandpay/payments/confirm', { body: { payment_key: paymentKey, order_id: orderId, amount: 9000 } });
      assert.equal(confirmed.status, 200, JSON.stringify(confirmed.body));
      assert.equal((await keel.simCharges(orderId))[0]?.order_name, orderName ?? orderId);
    }
  });

  test('a second purchase is one PIN entry with the stored card', async () => {
    const first = await newSession(12000);
    const method = (await page(first.session.id, '/payment_methods', card)).body;
    await page(first.session.id, '/pin', { pin: '246813' });
    await page(first.session.id, '/approve', { payment_method: method.id, pin: '246813' });
    const orderId = uniqueKey('ord');
    const second = await keel.request('POST', '/v1/brandpay/checkout_sessions', {
      body: { customer: first.customer.id, amount: 8000, currency: 'KRW', order_id: orderId, success_url: 'https://shop.example/ok', fail_url: 'https://shop.example/fail' },
    });
    const state = await page(second.body.id, '/session');
    assert.equal(state.body.has_pin, true);
    assert.equal(state.body.methods[0].id, method.id);
    const approved = await page(second.body.id, '/approve', { payment_method: method.id, pin: '246813' });
    assert.equal(approved.status, 200);
    assert.match(approved.body.redirect_url, /^https:\/\/shop\.example\/ok\?paymentKey=pay_/);
  });

  test('with Toss, a card the issuer declines is refused at the merchant\'s confirm, and nothing is charged', async () => {
    // Toss verifies the card when it issues the billing key and charges at confirm (capture), so the decline
    // comes at the merchant's confirm, as a 402 with the payment failed.
    const { session, orderId } = await newSession();
    const method = (await page(session.id, '/payment_methods', { type: 'card', card: { ...card.card, number: '4000000000000002' } })).body;
    await page(session.id, '/pin', { pin: '135790' });
    const approved = await page(session.id, '/approve', { payment_method: method.id, pin: '135790' });
    const redirect = new URL(approved.body.redirect_url);
    assert.equal(redirect.pathname, '/success');
    const confirmed = await keel.request('POST', '/v1/brandpay/payments/confirm', {
      body: { payment_key: redirect.searchParams.get('paymentKey'), order_id: orderId, amount: 45000 },
    });
    assert.equal(confirmed.status, 402);
    assert.equal(confirmed.body.error.code, 'card_declined');
    assert.equal(confirmed.body.error.payment.status, 'failed');
    assert.equal((await keel.simCharges(orderId)).filter((charge) => charge.status !== 'declined').length, 0);
  });

  test('5 wrong PINs on the page lock the customer, and the page says so', async () => {
    const { session } = await newSession();
    const method = (await page(session.id, '/payment_methods', card)).body;
    await page(session.id, '/pin', { pin: '135790' });
    const codes: string[] = [];
    for (let index = 0; index < 5; index += 1) codes.push((await page(session.id, '/approve', { payment_method: method.id, pin: '000001' })).body.error.code);
    assert.deepEqual(codes, ['pin_incorrect', 'pin_incorrect', 'pin_incorrect', 'pin_incorrect', 'customer_locked']);
    const state = await page(session.id, '/session');
    assert.equal(state.status, 403);
    assert.equal(state.body.error.code, 'customer_locked');
  });

  test('an expired session is refused', async () => {
    const { session } = await newSession();
    await keel.keel.database.db.updateTable('checkout_sessions').set({ expires_at: new Date(Date.now() - 1000) }).execute();
    const state = await page(session.id, '/session');
    assert.equal(state.status, 410);
    assert.equal(state.body.error.code, 'checkout_session_expired');
  });

  test('another merchant cannot read a session; the SDK reads it with the publishable key', async () => {
    const { session } = await newSession();
    const other = await keel.createMerchant({ name: 'Other' });
    assert.equal((await keel.request('GET', `/v1/brandpay/checkout_sessions/${session.id}`, { secretKey: other.publishable_key })).status, 404);
    const mine = await keel.request('GET', `/v1/brandpay/checkout_sessions/${session.id}`, { secretKey: keel.merchant.publishable_key });
    assert.equal(mine.status, 200);
    assert.equal(mine.body.url, session.url);
    assert.equal(mine.headers['access-control-allow-origin'], '*');
  });

  test('the page and the SDK are served without external assets', async () => {
    const { session } = await newSession();
    const html = await keel.request('GET', `/pay/${session.id}?lang=ko`, { secretKey: null });
    assert.equal(html.status, 200);
    assert.match(String(html.headers['content-type']), /text\/html/);
    assert.match(html.body, /<html lang="ko">/);
    assert.match(html.body, /결제 비밀번호/);
    assert.match(html.body, /Test Shop Pay/);
    // Only Keel's own static files: every script and stylesheet is a same-origin path, nothing external.
    const sources = [...html.body.matchAll(/<(?:script[^>]+src|link[^>]+href)="([^"]+)"/g)].map((match) => match[1]);
    assert.deepEqual(sources.sort(), ['/assets/pay-page.css', '/assets/pay-page.js']);
    assert.doesNotMatch(html.body, /@import|fonts\.googleapis|https?:\/\/[^"]*\.(js|css)/);
    const english = await keel.request('GET', `/pay/${session.id}`, { secretKey: null, headers: { 'accept-language': 'en-US' } });
    assert.match(english.body, /6-digit payment PIN/);
    const sdk = await keel.request('GET', '/v1/brandpay.js', { secretKey: null });
    assert.match(String(sdk.headers['content-type']), /javascript/);
    assert.match(sdk.body, /global\.KeelPay = KeelPay/);
  });

  test('the page cannot be framed, runs no inline script or style, and its script and stylesheet are served', async () => {
    const { session } = await newSession();
    const page = await keel.request('GET', `/pay/${session.id}`, { secretKey: null });
    const csp = String(page.headers['content-security-policy']);
    assert.match(csp, /frame-ancestors 'none'/);
    assert.equal(page.headers['x-frame-options'], 'DENY');
    assert.equal(page.headers['x-content-type-options'], 'nosniff');
    assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/);
    assert.match(csp, /script-src 'self'(;|$)/);
    assert.match(csp, /style-src 'self'(;|$)/);
    // The one inline <script> is a JSON data block the browser never runs; no inline style, no handler attributes.
    const inline = [...page.body.matchAll(/<script(?![^>]*\bsrc=)([^>]*)>/g)].map((match) => match[1]);
    assert.deepEqual(inline, [' type="application/json" id="keel-page"']);
    assert.doesNotMatch(page.body, /<style|\sstyle=|\son[a-z]+=/i);
    const script = await keel.request('GET', '/assets/pay-page.js', { secretKey: null });
    assert.equal(script.status, 200);
    assert.match(String(script.headers['content-type']), /application\/javascript/);
    assert.match(script.body, /keel-page/);
    assert.doesNotMatch(script.body, /: PageData|interface /, 'served compiled, without types');
    const css = await keel.request('GET', '/assets/pay-page.css', { secretKey: null });
    assert.match(String(css.headers['content-type']), /text\/css/);
    assert.match(css.body, /--brand/);
  });

  test('a hostile brand name and logo URL are escaped, and the page data cannot close its block', async () => {
    const hostile = await keel.createMerchant({ name: 'Hostile', brandName: '</script><img src=x onerror=alert(1)>"\'&', brandLogoUrl: 'https://cdn.example/logo.png"><script>alert(2)</script>' });
    const customer = (await keel.request('POST', '/v1/brandpay/customers', { body: { customer_key: uniqueKey('shopper') }, secretKey: hostile.secret_key })).body;
    const created = await keel.request('POST', '/v1/brandpay/checkout_sessions', {
      secretKey: hostile.secret_key,
      body: { customer: customer.id, amount: 1000, currency: 'KRW', order_id: uniqueKey('ord'), success_url: 'https://shop.example/ok', fail_url: 'https://shop.example/fail' },
    });
    const page = await keel.request('GET', `/pay/${created.body.id}`, { secretKey: null });
    assert.equal(page.status, 200);
    assert.doesNotMatch(page.body, /<img src=x|<script>alert|<\/script><img/);
    assert.match(page.body, /&lt;\/script&gt;&lt;img src=x onerror=alert\(1\)&gt;&quot;&#39;&amp;/);
    assert.match(page.body, /src="https:\/\/cdn\.example\/logo\.png&quot;&gt;&lt;script&gt;alert\(2\)&lt;\/script&gt;"/);
    const block = /<script type="application\/json" id="keel-page">([^<]*)<\/script>/.exec(page.body)?.[1];
    assert.ok(block !== undefined, 'the data block is whole: nothing in it closed it early');
    assert.equal(JSON.parse(block).sessionId, created.body.id);
  });
});

describe('the approval runs under a key of its own', () => {
  async function readyToApprove(keelUnderTest: TestKeel, secretKey?: string) {
    const as = secretKey === undefined ? {} : { secretKey };
    const customer = (await keelUnderTest.request('POST', '/v1/brandpay/customers', { body: { customer_key: uniqueKey('shopper') }, ...as })).body;
    const orderId = uniqueKey('ord');
    const session = (
      await keelUnderTest.request('POST', '/v1/brandpay/checkout_sessions', {
        body: { customer: customer.id, amount: 45000, currency: 'KRW', order_id: orderId, success_url: 'https://shop.example/success', fail_url: 'https://shop.example/fail' },
        ...as,
      })
    ).body;
    const onPage = (path: string, body?: unknown) =>
      keelUnderTest.request(body === undefined ? 'GET' : 'POST', `/pay/${session.id}${path}`, { body, secretKey: null, idempotencyKey: null });
    const method = (await onPage('/payment_methods', card)).body;
    assert.equal((await onPage('/pin', { pin: '135790' })).status, 200);
    return { orderId, session, onPage, approve: () => onPage('/approve', { payment_method: method.id, pin: '135790' }) };
  }

  test('after a crash mid-approval, the completer finishes the payment with the stored card, and the page learns its result', async () => {
    const { onPage, approve, orderId } = await readyToApprove(keel);
    keel.keel.faults.arm('after_attempt_created');
    assert.equal((await approve()).status, 500);
    // The dead request's key is abandoned: let the completer's wait pass.
    await keel.keel.database.db.updateTable('idempotency_keys').set({ locked_at: new Date(Date.now() - 3_600_000) }).where('key', 'like', 'checkout_session:%').where('recovery_point', '<>', 'finished').execute();
    assert.ok((await keel.keel.jobs.completer()).completed >= 1);
    const waiting = await onPage('/approval');
    assert.equal(waiting.body.status, 'done', JSON.stringify(waiting.body));
    const redirect = new URL(waiting.body.redirect_url);
    assert.equal(redirect.pathname, '/success');
    assert.equal(redirect.searchParams.get('orderId'), orderId);
    const again = await approve();
    assert.equal(again.body.redirect_url, waiting.body.redirect_url, 'a later tap is answered with the same result');
    const payments = (await keel.request('GET', `/v1/payments?order_id=${orderId}`)).body.data;
    assert.deepEqual(payments.map((payment: { status: string }) => payment.status), ['requires_capture']);
  });

  test('after a partner that could not be reached, a retry resumes the same payment instead of failing with order_id_taken', async () => {
    // Stripe holds the authorization at approval (Toss only keeps the billing key until capture). A gateway of
    // its own takes one request at a time: while one is held, Keel's is refused with 429, which proves nothing
    // was done.
    const busy = await startSimulator({ port: 0, concurrencyMax: 1 });
    const own = await startTestKeel({ gateway: 'stripe', config: { gatewayUrl: busy.url } }).catch(async (error: unknown) => {
      await busy.close();
      throw error;
    });
    try {
      const { approve, orderId } = await readyToApprove(own);
      await fetch(`${busy.url}/__sim/faults`, { method: 'POST', body: JSON.stringify({ country: 'US', mode: 'latency', latency_ms: 3_000, duration_s: 30 }) });
      const held = fetch(`${busy.url}/v1/payments/orders/held`, { headers: { authorization: `Basic ${Buffer.from('test_sk_held:').toString('base64')}`, 'keel-country': 'US' } });
      const refused = await approve();
      assert.equal(refused.status, 503, JSON.stringify(refused.body));
      assert.equal(refused.body.error.code, 'gateway_unavailable');
      await held;
      const resumed = await approve();
      assert.equal(resumed.status, 200, JSON.stringify(resumed.body));
      assert.match(resumed.body.redirect_url, /^https:\/\/shop\.example\/success\?paymentKey=pay_/);
      const payments = (await own.request('GET', `/v1/payments?order_id=${orderId}`)).body.data;
      assert.equal(payments.length, 1, 'one payment for the session');
    } finally {
      await own.close();
      await busy.close();
    }
  });

  test('a second tap while the partner answers the first shows the payment under way, then its one result', async () => {
    const own = await startTestKeel({ gateway: 'stripe' });
    try {
      const { approve, onPage, orderId } = await readyToApprove(own);
      await fetch(`${own.keel.gatewayUrl}/__sim/latency`, { method: 'POST', body: JSON.stringify({ p50_ms: 300, p99_ms: 300 }) });
      const [first, second] = await Promise.all([approve(), approve()]);
      assert.deepEqual([first.status, second.status].sort(), [200, 202], `${JSON.stringify(first.body)} ${JSON.stringify(second.body)}`);
      const done = first.status === 200 ? first : second;
      const waiting = first.status === 202 ? first : second;
      assert.equal(waiting.body.status, 'processing');
      const after = await onPage('/approval');
      assert.equal(after.body.redirect_url, done.body.redirect_url);
      assert.equal((await own.simCharges(orderId)).length, 1, 'one authorization at the partner');
    } finally {
      await own.close();
    }
  });

  test('a partner that has not answered: the page is told the payment is processing, and learns its result once the partner has answered', async () => {
    const own = await startTestKeel({ gateway: 'stripe' });
    try {
      const { onPage, session, orderId } = await readyToApprove(own);
      // The ambiguous card: the partner charges, then answers only after Keel's read timeout.
      const slow = (await onPage('/payment_methods', { type: 'card', card: { number: '4000000000000259', exp_month: 10, exp_year: 2033, cvc: '321' } })).body;
      const approved = await onPage('/approve', { payment_method: slow.id, pin: '135790' });
      assert.equal(approved.status, 202, JSON.stringify(approved.body));
      assert.equal(approved.body.status, 'processing');
      assert.equal((await onPage('/approval')).body.status, 'processing', 'a reload is told the same, never that the checkout was used');
      // The janitor asks the partner again under the attempt's own key: the partner answers with its charge.
      await own.passTime(60_000);
      await own.keel.jobs.janitor();
      const settled = await onPage('/approval');
      assert.equal(settled.body.status, 'done', JSON.stringify(settled.body));
      const redirect = new URL(settled.body.redirect_url);
      assert.equal(`${redirect.origin}${redirect.pathname}`, 'https://shop.example/success');
      assert.equal(redirect.searchParams.get('orderId'), orderId);
      assert.equal((await own.simCharges(orderId)).length, 1, 'charged once');
      assert.equal((await own.request('GET', `/v1/brandpay/checkout_sessions/${session.id}`, { secretKey: null, headers: { authorization: `Bearer ${own.merchant.publishable_key}` } })).body.status, 'approved');
    } finally {
      await own.close();
    }
  });

  test('an authorization the shop never confirms is canceled at the partner after the confirm timeout; a later confirm is refused', async () => {
    const own = await startTestKeel({ gateway: 'stripe' });
    try {
      const stale = await readyToApprove(own);
      const fresh = await readyToApprove(own);
      const staleKey = new URL((await stale.approve()).body.redirect_url).searchParams.get('paymentKey') ?? '';
      const freshKey = new URL((await fresh.approve()).body.redirect_url).searchParams.get('paymentKey') ?? '';
      // The stale one was approved longer ago than the timeout (60 minutes by default).
      await own.keel.database.db.updateTable('checkout_sessions').set({ updated_at: new Date(Date.now() - 61 * 60_000) }).where('order_id', '=', stale.orderId).execute();
      assert.deepEqual(await own.keel.jobs.unconfirmed(), { canceled: 1 });
      assert.deepEqual(await own.keel.jobs.unconfirmed(), { canceled: 0 }, 'done once');
      assert.equal((await own.request('GET', `/v1/payments/${staleKey}`)).body.status, 'canceled');
      assert.equal((await own.simCharges(stale.orderId))[0]?.status, 'canceled', 'the hold is released at the partner');
      const late = await own.request('POST', '/v1/brandpay/payments/confirm', { body: { payment_key: staleKey, order_id: stale.orderId, amount: 45000 } });
      assert.equal(late.status, 409, JSON.stringify(late.body));
      assert.equal(late.body.error.code, 'payment_unexpected_state');
      const onTime = await own.request('POST', '/v1/brandpay/payments/confirm', { body: { payment_key: freshKey, order_id: fresh.orderId, amount: 45000 } });
      assert.equal(onTime.body.status, 'succeeded');
    } finally {
      await own.close();
    }
  });
});
