// The checkout queue's waiting room in a real browser (Debian's Chromium through playwright-core): past the
// capacity a shopper opening the hosted page sees their place and wait, gets an HttpOnly cookie the page cannot
// read, and the page's own refresh lets them into checkout once they are admitted, with no script and nothing
// refused by the page's CSP. A tampered cookie is no cookie: its bearer joins at the back. The screenshot goes to
// a temporary folder, or to docs/img/brandpay/ with KEEL_UPDATE_SCREENSHOTS=1.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { type Browser } from 'playwright-core';
import { chromiumAvailable as available, launchChromium, screenshotsDir } from '../src/testing/browser.js';
import { freePort } from '../src/testing/cli.js';
import { startTestKeel, uniqueKey, type TestKeel } from '../src/testing/harness.js';

let keel: TestKeel;
let browser: Browser;
let screenshots = '';
let base: string;
let now = Date.now();

before(async () => {
  if (!available) return;
  const port = await freePort();
  base = `http://127.0.0.1:${port}`;
  keel = await startTestKeel({ config: { port, publicUrl: base, checkoutQueue: { mode: 'on', capacityPerS: 1, admissionTtlS: 300 } } });
  keel.keel.services.checkoutQueue.useClock(() => now);
  await keel.keel.listen();
  browser = await launchChromium();
  screenshots = screenshotsDir('brandpay');
});
after(async () => {
  await browser?.close();
  await keel?.close();
});

async function newSession(): Promise<string> {
  const customer = (await keel.request('POST', '/v1/brandpay/customers', { body: { customer_key: uniqueKey('shopper') } })).body;
  const session = await keel.request('POST', '/v1/brandpay/checkout_sessions', {
    body: { customer: customer.id, amount: 59000, currency: 'KRW', order_id: uniqueKey('ord'), order_name: 'Limited sneakers', success_url: 'https://shop.example/ok', fail_url: 'https://shop.example/fail' },
  });
  return session.body.id as string;
}

test('a shopper past the capacity waits in the waiting room and the page lets them into checkout once admitted', { skip: available ? false : 'no chromium' }, async () => {
  const ahead = await newSession();
  assert.equal((await keel.request('GET', `/pay/${ahead}/queue`, { secretKey: null })).body.status, 'admitted', 'the first shopper takes the one token');
  const context = await browser.newContext({ viewport: { width: 390, height: 740 }, locale: 'en-US' });
  const page = await context.newPage();
  const refused: string[] = [];
  // CSP refusals are console errors; a failed load names its address (the browser's own favicon.ico aside).
  page.on('console', (message) => {
    if (message.type() === 'error' && !message.text().startsWith('Failed to load resource')) refused.push(message.text());
  });
  page.on('response', (response) => {
    if (response.status() >= 400 && !response.url().endsWith('/favicon.ico')) refused.push(`${response.status()} ${response.url()}`);
  });
  const session = await newSession();
  await page.goto(`${base}/pay/${session}`);
  await page.getByRole('heading', { name: 'You are in the queue' }).waitFor();
  assert.equal(await page.locator('#queue-position').textContent(), '1');
  assert.equal(await page.locator('#queue-wait').textContent(), 'about 1 s');
  assert.equal(await page.locator('script').count(), 0, 'the waiting room runs no script');
  await page.screenshot({ path: `${screenshots}11-waiting-room.png`, fullPage: true });
  const [cookie] = await context.cookies();
  assert.equal(cookie?.name, 'keel_queue');
  assert.equal(cookie?.httpOnly, true);
  assert.equal(cookie?.sameSite, 'Lax');
  assert.equal(cookie?.path, `/pay/${session}`);
  assert.equal(await page.evaluate('document.cookie'), '', 'the page cannot read its cookie');

  // A tampered cookie in another browser: no cookie, so a new place behind the shopper already waiting.
  const forger = await browser.newContext();
  await forger.addCookies([{ ...cookie, value: `${cookie?.value.slice(0, -3)}AAA` } as Parameters<typeof forger.addCookies>[0][number]]);
  const forged = await forger.newPage();
  await forged.goto(`${base}/pay/${session}`);
  assert.equal(await forged.locator('#queue-position').textContent(), '2');
  await forger.close();

  // A second passes: the shopper's own page, refreshing itself, opens checkout.
  now += 1_000;
  await keel.keel.services.checkoutQueue.tick();
  await page.locator('#pin').waitFor({ timeout: 15_000 });
  await page.getByRole('heading', { name: 'Test Shop' }).waitFor();
  assert.deepEqual(refused, [], 'nothing refused by the CSP or failed to load');
  await context.close();
});
