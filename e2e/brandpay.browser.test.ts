// Drives Brand Pay in a real browser (Debian's Chromium through playwright-core), as a shopper would, against
// the example shop (examples/shop.ts), which uses the SDK and confirms on its server: register a card and a PIN
// (entered twice), pay, return to the shop's success page; pay again with one PIN entry; then five wrong PINs, the
// locked message, and the way back to the shop's fail page. The test banner and the order's name are shown, Pay is
// disabled with a progress sign while a slow partner answers, and the Korean page speaks Korean. Screenshots of
// each step, and the steps counted (screens, fields, keystrokes) in steps.json, go to a temporary folder, or to
// docs/img/brandpay/ with KEEL_UPDATE_SCREENSHOTS=1 (so a test run never rewrites the docs by accident).
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { createServer as createHttpServer } from 'node:http';
import { after, before, test } from 'node:test';
import { type Browser, type Page } from 'playwright-core';
import { chromiumAvailable as available, chromiumPath, launchChromium, screenshotsDir } from '../src/testing/browser.js';
import { freePort } from '../src/testing/cli.js';
import { startTestKeel, uniqueKey, type TestKeel } from '../src/testing/harness.js';
import { startExampleShop, type ExampleShop } from '../examples/shop.js';

let keel: TestKeel;
let shop: ExampleShop;
let browser: Browser;
let screenshots = '';


before(async () => {
  if (!available) return;
  const port = await freePort();
  // A read timeout well past the slow partner of the Pay-while-in-flight test, so its charge is answered, not lost.
  keel = await startTestKeel({ config: { port, publicUrl: `http://127.0.0.1:${port}`, partnerHttp: { connectTimeoutMs: 500, readTimeoutMs: 5_000, connectionsMax: 64 }, idempotencyLockTimeoutMs: 10_000 } });
  await keel.keel.listen();
  shop = await startExampleShop({
    keelUrl: `http://127.0.0.1:${port}`,
    secretKey: keel.merchant.secret_key,
    publishableKey: keel.merchant.publishable_key,
    customerKey: uniqueKey('shopper'),
    amount: 29000,
  });
  browser = await launchChromium();
  screenshots = screenshotsDir('brandpay');
});
after(async () => {
  await browser?.close();
  await shop?.close();
  await keel?.close();
});

/** What the shopper did, counted as they did it. */
class Steps {
  screens = new Set<string>();
  fields = 0;
  keystrokes = 0;
  clicks = 0;

  async type(page: Page, label: string, text: string): Promise<void> {
    await page.getByLabel(label, { exact: true }).pressSequentially(text);
    this.fields += 1;
    this.keystrokes += text.length;
  }

  async click(page: Page, selector: string): Promise<void> {
    await page.locator(selector).first().click();
    this.clicks += 1;
  }

  async pin(page: Page, pin: string): Promise<void> {
    for (const digit of pin) await this.click(page, `.key[data-digit="${digit}"]`);
    this.fields += 1;
    this.keystrokes += pin.length;
  }

  seen(page: Page): void {
    this.screens.add(new URL(page.url()).pathname.startsWith('/pay/') ? 'keel-pay' : new URL(page.url()).pathname);
  }

  summary(): Record<string, number> {
    return { screens: this.screens.size, fields: this.fields, keystrokes: this.keystrokes, clicks: this.clicks };
  }
}

async function startCheckout(page: Page, steps: Steps): Promise<void> {
  await page.goto(shop.url);
  steps.seen(page);
  await steps.click(page, '#buy');
  await page.waitForURL(/\/pay\/cs_/);
  steps.seen(page);
}

test('Brand Pay in the browser: first purchase, repeat purchase, lockout', { skip: available ? false : `${chromiumPath} is not installed` }, async () => {
  const page = await browser.newPage({ viewport: { width: 430, height: 900 } });
  // The page works under its strict policy: the browser refuses nothing it loads or runs.
  const refused: string[] = [];
  page.on('console', (message) => {
    if (/Content Security Policy|Refused to/i.test(message.text())) refused.push(message.text());
  });

  // First purchase: register a card, choose a PIN, pay, return to the shop, confirmed on its server.
  const first = new Steps();
  await startCheckout(page, first);
  await page.getByText('No payment method yet').waitFor();
  // A test merchant's page says so; the shop's name for the order is shown.
  await page.getByText('Test mode: no real money moves.').waitFor();
  await page.getByText('Order · Keel T-shirt').waitFor();
  await page.screenshot({ path: `${screenshots}01-first-visit.png`, fullPage: true });
  await first.click(page, '#add-card summary');
  await first.type(page, 'Card number', '4242424242424242');
  await first.type(page, 'Expiry month', '12');
  await first.type(page, 'Expiry year', '2034');
  await first.type(page, 'CVC', '123');
  await page.screenshot({ path: `${screenshots}02-add-card.png`, fullPage: true });
  await first.click(page, '#card-form button[type=submit]');
  await page.getByText('VISA •••• 4242').waitFor();
  await page.getByText('Choose a 6-digit payment PIN').waitFor();
  await first.pin(page, '135790');
  await page.screenshot({ path: `${screenshots}03-set-pin.png`, fullPage: true });
  await first.click(page, '#pay');
  // A first PIN is entered twice; the second must match.
  await page.getByText('Enter the PIN again to confirm it').waitFor();
  await first.pin(page, '135790');
  await page.screenshot({ path: `${screenshots}03b-confirm-pin.png`, fullPage: true });
  await first.click(page, '#pay');
  await page.waitForURL(/\/success\?/);
  first.seen(page);
  await page.getByText('Payment complete').waitFor();
  assert.match(await page.textContent('body') ?? '', /succeeded/);
  await page.screenshot({ path: `${screenshots}04-success.png`, fullPage: true });

  // Repeat purchase: the stored card is chosen; one PIN entry.
  const repeat = new Steps();
  await startCheckout(page, repeat);
  await page.getByText('VISA •••• 4242').waitFor();
  await page.getByText('6-digit payment PIN').first().waitFor();
  await repeat.pin(page, '135790');
  await page.screenshot({ path: `${screenshots}05-repeat-pin.png`, fullPage: true });
  await repeat.click(page, '#pay');
  await page.waitForURL(/\/success\?/);
  repeat.seen(page);
  await page.getByText('Payment complete').waitFor();
  await page.screenshot({ path: `${screenshots}06-repeat-success.png`, fullPage: true });

  // Five wrong PINs: the fifth locks the customer and the page says so.
  const lockout = new Steps();
  await startCheckout(page, lockout);
  await page.getByText('VISA •••• 4242').waitFor();
  for (let attempt = 1; attempt <= 5; attempt += 1) {
    await lockout.pin(page, '482913');
    await lockout.click(page, '#pay');
    if (attempt < 5) await page.getByText(`Wrong PIN. ${5 - attempt} more wrong PINs lock your payments.`).waitFor();
  }
  await page.getByText('Payments are locked after 5 wrong PINs').waitFor();
  await page.screenshot({ path: `${screenshots}07-locked.png`, fullPage: true });
  // The locked screen leads back to the shop, which is told why.
  await page.getByText('Back to the shop').click();
  await page.waitForURL(/\/fail\?code=customer_locked/);
  await page.getByText('Too many wrong PINs').waitFor();
  await page.screenshot({ path: `${screenshots}09-back-to-shop.png`, fullPage: true });

  // The plain card form a shop would show instead: every purchase types the card again.
  const plainCardForm = { screens: 3, fields: 4, keystrokes: '4242424242424242'.length + '12'.length + '2034'.length + '123'.length, clicks: 2 };
  const measured = { first_purchase: first.summary(), repeat_purchase: repeat.summary(), plain_card_form_each_purchase: plainCardForm };
  writeFileSync(`${screenshots}steps.json`, `${JSON.stringify(measured, null, 2)}\n`);
  console.log(`brandpay steps ${JSON.stringify(measured)}`);
  assert.equal(repeat.summary()['keystrokes'], 6, 'a repeat purchase is one PIN entry');
  assert.ok((repeat.summary()['keystrokes'] ?? Infinity) < plainCardForm.keystrokes);

  const payments = await keel.keel.database.db.selectFrom('payments').select('status').execute();
  assert.deepEqual(payments.map((payment) => payment.status).sort(), ['succeeded', 'succeeded']);
  const locked = await keel.keel.database.db.selectFrom('customers').select('status').execute();
  assert.deepEqual(locked.map((customer) => customer.status), ['locked']);
  assert.deepEqual(refused, [], 'no Content-Security-Policy refusals');
});

test('while a slow partner answers, Pay is disabled with a progress sign, and the checkout has its one result', { skip: available ? false : `${chromiumPath} is not installed` }, async () => {
  // Stripe holds the authorization when the shopper approves, so the partner's latency is felt on the page.
  const merchant = await keel.createMerchant({ name: 'Slow Partner Shop', gateway: 'stripe' });
  const slowShop = await startExampleShop({
    keelUrl: keel.keel.services.config.publicUrl,
    secretKey: merchant.secret_key,
    publishableKey: merchant.publishable_key,
    customerKey: uniqueKey('shopper'),
    amount: 19000,
  });
  const page = await browser.newPage({ viewport: { width: 430, height: 900 } });
  try {
    await page.goto(slowShop.url);
    await page.locator('#buy').click();
    await page.waitForURL(/\/pay\/cs_/);
    await page.locator('#add-card summary').click();
    await page.getByLabel('Card number', { exact: true }).pressSequentially('4242424242424242');
    await page.getByLabel('Expiry month', { exact: true }).pressSequentially('12');
    await page.getByLabel('Expiry year', { exact: true }).pressSequentially('2034');
    await page.getByLabel('CVC', { exact: true }).pressSequentially('123');
    await page.locator('#card-form button[type=submit]').click();
    await page.getByText('VISA •••• 4242').waitFor();
    for (const digit of '246801') await page.locator(`.key[data-digit="${digit}"]`).click();
    await page.locator('#pay').click();
    await page.getByText('Enter the PIN again to confirm it').waitFor();
    for (const digit of '246801') await page.locator(`.key[data-digit="${digit}"]`).click();
    await fetch(`${keel.keel.gatewayUrl}/__sim/latency`, { method: 'POST', body: JSON.stringify({ p50_ms: 2_000, p99_ms: 2_000 }) });
    // While the partner answers, Pay is disabled and shows a progress sign: a second tap cannot start anything.
    await page.locator('#pay').click();
    await page.locator('#pay[aria-busy="true"]:disabled').waitFor();
    assert.match((await page.locator('#pay').textContent()) ?? '', /Paying…/);
    await page.screenshot({ path: `${screenshots}08-paying.png`, fullPage: true });
    await page.waitForURL(/\/success\?/);
    await page.getByText('Payment complete').waitFor();
  } finally {
    await fetch(`${keel.keel.gatewayUrl}/__sim/latency`, { method: 'POST', body: JSON.stringify({ p50_ms: 0, p99_ms: 0 }) });
    await page.close();
    await slowShop.close();
  }
  const payments = await keel.keel.database.db.selectFrom('payments').select(['order_id', 'status']).where('amount', '=', '19000').execute();
  assert.deepEqual(payments.map((payment) => payment.status), ['succeeded'], 'one payment for the checkout');
  assert.equal((await keel.simCharges(payments[0]?.order_id)).length, 1, 'one charge at the partner');
});

test('the Korean page speaks Korean to the shopper, from its own catalogue', { skip: available ? false : `${chromiumPath} is not installed` }, async () => {
  const customer = (await keel.request('POST', '/v1/brandpay/customers', { body: { customer_key: uniqueKey('shopper') } })).body;
  await keel.request('POST', `/v1/brandpay/customers/${customer.id as string}/pin`, { body: { pin: '135790' } });
  await keel.request('POST', `/v1/brandpay/customers/${customer.id as string}/payment_methods`, { body: { type: 'card', card: { number: '4242424242424242', exp_month: 12, exp_year: 2034, cvc: '123' } } });
  const session = (
    await keel.request('POST', '/v1/brandpay/checkout_sessions', {
      body: { customer: customer.id, amount: 7000, currency: 'KRW', order_id: uniqueKey('ord'), order_name: '키엘 티셔츠', success_url: `${shop.url}/success`, fail_url: `${shop.url}/fail` },
    })
  ).body;
  const page = await browser.newPage({ viewport: { width: 430, height: 900 } });
  try {
    await page.goto(`${session.url as string}?lang=ko`);
    await page.getByText('주문 · 키엘 티셔츠').waitFor();
    await page.getByText('테스트 결제입니다').waitFor();
    for (const digit of '482913') await page.locator(`.key[data-digit="${digit}"]`).click();
    await page.locator('#pay').click();
    await page.getByText('비밀번호가 틀렸습니다. 4번 더 틀리면 결제가 잠깁니다.').waitFor();
    assert.doesNotMatch((await page.textContent('#message')) ?? '', /[A-Za-z]{4,}/, 'no English on the Korean page');
    await page.screenshot({ path: `${screenshots}10-ko-wrong-pin.png`, fullPage: true });
  } finally {
    await page.close();
  }
});

test('another site cannot frame the pay page (clickjacking), while the same frame shows a page that allows it', { skip: available ? false : `${chromiumPath} is not installed` }, async () => {
  const customer = (await keel.request('POST', '/v1/brandpay/customers', { body: { customer_key: uniqueKey('shopper') } })).body;
  const session = (
    await keel.request('POST', '/v1/brandpay/checkout_sessions', {
      body: { customer: customer.id, amount: 7000, currency: 'KRW', order_id: uniqueKey('ord'), success_url: `${shop.url}/success`, fail_url: `${shop.url}/fail` },
    })
  ).body;
  // The attacker's site: another origin whose page puts Keel's pay page in a frame (and, as a control, the shop's page).
  const attacker = createHttpServer((request, response) => {
    const target = request.url === '/control' ? shop.url : session.url;
    response.writeHead(200, { 'content-type': 'text/html' }).end(`<!doctype html><iframe id="victim" src="${target}" width="400" height="600"></iframe>`);
  });
  await new Promise<void>((resolve) => attacker.listen(0, '127.0.0.1', () => resolve()));
  const address = attacker.address();
  const attackerUrl = `http://127.0.0.1:${typeof address === 'object' && address !== null ? address.port : 0}`;
  const page = await browser.newPage();
  try {
    const framed = async (path: string, selector: string) => {
      await page.goto(`${attackerUrl}${path}`, { waitUntil: 'load' });
      const frame = await (await page.waitForSelector('#victim')).contentFrame();
      return frame === null ? null : frame.$(selector);
    };
    assert.notEqual(await framed('/control', '#buy'), null, 'the control: a page without frame-ancestors renders in the frame');
    assert.equal(await framed('/', '#pay'), null, 'the pay page does not render inside another site\'s frame');
  } finally {
    await page.close();
    await new Promise<void>((resolve) => attacker.close(() => resolve()));
  }
});
