// Proves that no secret is kept in clear: after a full tour (a merchant with its own partner keys, card
// payments, a refund, Brand Pay customers with a PIN, a card and a bank account, a hosted checkout, a webhook
// endpoint whose creation is replayed, deliveries, a settlement import), every row of every table is dumped as
// text and searched for each card number, CVC, PIN, bank account number, API key, partner key and webhook
// signing secret the tour used. The replayed webhook endpoint still answers with its secret.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { sql } from 'kysely';
import { keelTables, startTestKeel, uniqueKey, type TestKeel } from '../testing/harness.js';
import { startWebhookReceiver, type WebhookReceiver } from '../testing/webhook-receiver.js';
import type { CreatedMerchant } from '../merchants/merchants.js';

let keel: TestKeel;
let receiver: WebhookReceiver;
before(async () => {
  keel = await startTestKeel();
  receiver = await startWebhookReceiver();
});
after(async () => {
  await receiver.close();
  await keel.close();
});

const tossKey = `test_sk_${'tourTossPartnerKey'}${uniqueKey('').replaceAll('_', '')}`;
const stripeKey = `sk_test_${'tourStripePartnerKey'}${uniqueKey('').replaceAll('_', '')}`;
const cards = { api: '4111111111111111', stored: '5555555555554444', page: '378282246310005' };
const cvcs = { api: '8317', stored: '6254', page: '9172' };
const pin = '581937';
const accountNumber = '90817263544';

async function dump(): Promise<string> {
  const db = keel.keel.database.db;
  const texts: string[] = [];
  for (const name of await keelTables(keel.keel)) {
    const rows = await sql<{ row: string }>`SELECT row_to_json(t)::text AS row FROM ${sql.table(name)} AS t`.execute(db);
    for (const { row } of rows.rows) texts.push(`${name}: ${row}`);
  }
  return texts.join('\n');
}

test('a full tour leaves no card number, CVC, PIN, account number, API key, partner key or webhook secret in clear', async () => {
  const merchant: CreatedMerchant = await keel.createMerchant({ name: 'Tour Shop', partners: [{ gateway: 'toss', partnerSecretKey: tossKey }, { gateway: 'stripe', partnerSecretKey: stripeKey }] });
  const as = { secretKey: merchant.secret_key };
  const card = (number: string, cvc: string) => ({ type: 'card', card: { number, exp_month: 11, exp_year: 2033, cvc } });

  const endpointKey = uniqueKey();
  const endpointBody = { url: receiver.url, events: ['*'] };
  const endpoint = await keel.request('POST', '/v1/webhook_endpoints', { ...as, body: endpointBody, idempotencyKey: endpointKey });
  assert.equal(endpoint.status, 200, JSON.stringify(endpoint.body));
  const webhookSecret: string = endpoint.body.secret;
  assert.match(webhookSecret, /^whsec_/);
  const replayed = await keel.request('POST', '/v1/webhook_endpoints', { ...as, body: endpointBody, idempotencyKey: endpointKey });
  assert.equal(replayed.headers['idempotent-replayed'], 'true');
  assert.equal(replayed.body.secret, webhookSecret, 'the replay answers with the secret, opened from its encrypted copy');

  const paid = await keel.request('POST', '/v1/payments', { ...as, body: { amount: 32000, currency: 'KRW', order_id: uniqueKey('ord'), payment_method: card(cards.api, cvcs.api), confirm: true } });
  assert.equal(paid.body.status, 'succeeded', JSON.stringify(paid.body));
  const refund = await keel.request('POST', '/v1/refunds', { ...as, body: { payment: paid.body.id, amount: 2000 } });
  assert.equal(refund.status, 200, JSON.stringify(refund.body));

  const customer = (await keel.request('POST', '/v1/brandpay/customers', { ...as, body: { customer_key: uniqueKey('shopper') } })).body;
  assert.equal((await keel.request('POST', `/v1/brandpay/customers/${customer.id}/pin`, { ...as, body: { pin } })).status, 200);
  const stored = await keel.request('POST', `/v1/brandpay/customers/${customer.id}/payment_methods`, { ...as, body: card(cards.stored, cvcs.stored) });
  assert.equal(stored.status, 201, JSON.stringify(stored.body));
  const bank = await keel.request('POST', `/v1/brandpay/customers/${customer.id}/payment_methods`, {
    ...as,
    body: { type: 'bank_account', bank_account: { bank_code: '088', account_number: accountNumber, holder_name: 'Kim Tour' } },
  });
  assert.equal(bank.status, 201, JSON.stringify(bank.body));
  const oneClick = await keel.request('POST', '/v1/payments', { ...as, body: { amount: 9000, currency: 'KRW', order_id: uniqueKey('ord'), customer: customer.id, payment_method: stored.body.id, confirm: true } });
  assert.equal(oneClick.body.status, 'succeeded', JSON.stringify(oneClick.body));

  const orderId = uniqueKey('ord');
  const session = (
    await keel.request('POST', '/v1/brandpay/checkout_sessions', {
      ...as,
      body: { customer: customer.id, amount: 45000, currency: 'KRW', order_id: orderId, success_url: 'https://shop.example/ok', fail_url: 'https://shop.example/fail' },
    })
  ).body;
  const page = (path: string, body: unknown) => keel.request('POST', `/pay/${session.id}${path}`, { body, secretKey: null, idempotencyKey: null });
  const pageMethod = await page('/payment_methods', card(cards.page, cvcs.page));
  assert.equal(pageMethod.status, 201, JSON.stringify(pageMethod.body));
  const approved = await page('/approve', { payment_method: pageMethod.body.id, pin });
  assert.equal(approved.status, 200, JSON.stringify(approved.body));
  const paymentKey = new URL(approved.body.redirect_url).searchParams.get('paymentKey');
  const confirmed = await keel.request('POST', '/v1/brandpay/payments/confirm', { ...as, body: { payment_key: paymentKey, order_id: orderId, amount: 45000 } });
  assert.equal(confirmed.status, 200, JSON.stringify(confirmed.body));

  await keel.keel.jobs.relay();
  await keel.keel.jobs.webhooks();
  assert.ok(receiver.received.length > 0, 'deliveries were made');
  const today = new Date().toISOString().slice(0, 10);
  const imported = await keel.request('POST', '/admin/settlements/import', {
    body: { start_date: today, end_date: today },
    secretKey: null,
    idempotencyKey: null,
    headers: { authorization: `Bearer ${keel.keel.services.adminToken}` },
  });
  assert.equal(imported.status, 200, JSON.stringify(imported.body));

  const text = await dump();
  assert.ok(text.includes('whsec_') === false, 'no webhook secret prefix anywhere');
  const secrets: Record<string, string> = {
    'API card number': cards.api,
    'stored card number': cards.stored,
    'page card number': cards.page,
    'bank account number': accountNumber,
    'secret API key': merchant.secret_key,
    'publishable API key': merchant.publishable_key,
    'Toss partner key': tossKey,
    'Stripe partner key': stripeKey,
    'webhook secret': webhookSecret,
    'admin token': keel.keel.services.adminToken,
  };
  for (const [name, value] of Object.entries(secrets)) assert.equal(text.includes(value), false, `${name} found in the database`);
  // Short secrets (CVCs, the PIN) could appear by chance inside an id or a digest; they must not appear as a value.
  for (const [name, value] of Object.entries({ ...Object.fromEntries(Object.entries(cvcs).map(([kind, cvc]) => [`${kind} CVC`, cvc])), PIN: pin })) {
    assert.equal(new RegExp(`[":]${value}"`).test(text), false, `${name} found as a value in the database`);
  }
  assert.equal(/"(cvc|pin|number|account_number|card_number|cardNumber)":/.test(text), false, 'no card, PIN or account field is stored');
  // The logs hold none of them either.
  const logs = keel.logs.join('');
  for (const [name, value] of Object.entries(secrets)) if (name !== 'admin token') assert.equal(logs.includes(value), false, `${name} found in the logs`);
});
