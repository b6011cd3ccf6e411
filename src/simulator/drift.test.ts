// Proves the benchmark gateway's reconciliation hooks: `POST /__sim/drift` changes the partner's own record of an
// order (amount, uncaptured, captured, duplicate, missing, refund, fee), and its inquiries, charge list and
// settlement reports say so; `POST /__sim/charges` makes a charge no Keel payment made, in the named account's
// reports. Bad drift requests are refused.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { startSimulator, type Simulator } from './server.js';

let sim: Simulator;
before(async () => {
  sim = await startSimulator({ port: 0 });
});
after(async () => {
  await sim.close();
});

const secret = 'test_sk_drift';
const auth = `Basic ${Buffer.from(`${secret}:`).toString('base64')}`;
const today = new Date().toISOString().slice(0, 10);

async function call(method: string, path: string, body?: unknown, headers: Record<string, string> = { authorization: auth }) {
  const response = await fetch(`${sim.url}${path}`, { method, headers: { 'content-type': 'application/json', ...headers }, ...(body === undefined ? {} : { body: JSON.stringify(body) }) });
  return { status: response.status, body: (await response.json()) as any }; // eslint-disable-line @typescript-eslint/no-explicit-any -- partner JSON
}

async function tossCharge(orderId: string, amount: number): Promise<string> {
  const key = (await call('POST', '/v1/billing/authorizations/card', { customerKey: 'cust_drift', cardNumber: '4242424242424242', cardExpirationYear: '30', cardExpirationMonth: '12' })).body.billingKey as string;
  const charged = await call('POST', `/v1/billing/${key}`, { customerKey: 'cust_drift', amount, orderId, orderName: 'drift' });
  assert.equal(charged.status, 200, JSON.stringify(charged.body));
  return charged.body.paymentKey as string;
}

const drift = (body: unknown) => call('POST', '/__sim/drift', body, {});
const settlementOf = async (orderId: string) => ((await call('GET', `/v1/settlements?startDate=${today}&endDate=${today}`)).body as { orderId: string; amount: number; fees: { fee: number }[]; vat: number }[]).filter((row) => row.orderId === orderId);

test('amount, uncaptured, refund and fee drift show in inquiries and settlement reports', async () => {
  await tossCharge('drift-amount', 10000);
  assert.equal((await drift({ order_id: 'drift-amount', kind: 'amount', amount: 9000 })).status, 200);
  assert.equal((await call('GET', '/v1/payments/orders/drift-amount')).body.totalAmount, 9000);
  assert.deepEqual((await settlementOf('drift-amount')).map((row) => row.amount), [9000]);

  await tossCharge('drift-uncaptured', 5000);
  await drift({ order_id: 'drift-uncaptured', kind: 'uncaptured' });
  assert.deepEqual(await settlementOf('drift-uncaptured'), [], 'nothing captured, nothing settled');

  await tossCharge('drift-refund', 8000);
  await drift({ order_id: 'drift-refund', kind: 'refund', amount: 3000 });
  assert.deepEqual((await settlementOf('drift-refund')).map((row) => row.amount).sort((a, b) => a - b), [-3000, 8000]);
  await drift({ order_id: 'drift-refund', kind: 'refund', amount: 1000 });
  assert.deepEqual((await settlementOf('drift-refund')).map((row) => row.amount).sort((a, b) => a - b), [-1000, 8000], 'a smaller total trims the refunds');

  await tossCharge('drift-fee', 20000);
  await drift({ order_id: 'drift-fee', kind: 'fee', amount: 990 });
  const [sale] = await settlementOf('drift-fee');
  assert.equal((sale?.fees[0]?.fee ?? 0) + (sale?.vat ?? 0), 990, 'the whole fee, VAT included');
});

test('duplicate and missing: a second charge for the order, or no record at all', async () => {
  await tossCharge('drift-duplicate', 7000);
  await drift({ order_id: 'drift-duplicate', kind: 'duplicate', amount: 6000 });
  const charges = (await call('GET', '/__sim/charges?order_id=drift-duplicate', undefined, {})).body.data as { amount: number }[];
  assert.deepEqual(charges.map((charge) => charge.amount), [7000, 6000]);
  await tossCharge('drift-missing', 4000);
  await drift({ order_id: 'drift-missing', kind: 'missing' });
  assert.deepEqual((await call('GET', '/__sim/charges?order_id=drift-missing', undefined, {})).body.data, []);
  assert.equal((await call('GET', '/v1/payments/orders/drift-missing')).status, 404);
});

test('captured applies to a partner that holds authorizations: a Stripe hold becomes a capture', async () => {
  const stripeAuth = { authorization: 'Bearer sk_test_drift', 'content-type': 'application/x-www-form-urlencoded' };
  const form = 'amount=5000&currency=usd&confirm=true&capture_method=manual&payment_method_data[type]=card&payment_method_data[card][number]=4242424242424242&metadata[order_id]=drift-captured';
  const intent = (await (await fetch(`${sim.url}/v1/payment_intents`, { method: 'POST', headers: stripeAuth, body: form })).json()) as { id: string; status: string };
  assert.equal(intent.status, 'requires_capture');
  assert.equal((await drift({ order_id: 'drift-captured', kind: 'captured' })).status, 200);
  const after = (await (await fetch(`${sim.url}/v1/payment_intents/${intent.id}`, { headers: stripeAuth })).json()) as { status: string; amount_received: number };
  assert.deepEqual([after.status, after.amount_received], ['succeeded', 5000]);
  await tossCharge('drift-toss-captured', 1000);
  assert.equal((await drift({ order_id: 'drift-toss-captured', kind: 'captured' })).status, 400, 'Toss holds nothing to capture');
});

test('a charge no Keel payment made appears in that account\'s reports only', async () => {
  const made = await call('POST', '/__sim/charges', { order_id: 'drift-orphan', amount: 12000, currency: 'KRW', country: 'KR', dialect: 'toss', secret_key: secret }, {});
  assert.equal(made.status, 201, JSON.stringify(made.body));
  assert.deepEqual((await settlementOf('drift-orphan')).map((row) => row.amount), [12000]);
  const other = await call('GET', `/v1/settlements?startDate=${today}&endDate=${today}`, undefined, { authorization: `Basic ${Buffer.from('test_sk_other:').toString('base64')}` });
  assert.deepEqual((other.body as { orderId: string }[]).filter((row) => row.orderId === 'drift-orphan'), []);
});

test('bad drift requests are refused', async () => {
  assert.equal((await drift({ order_id: 'nope', kind: 'amount', amount: 1 })).status, 404);
  assert.equal((await drift({ order_id: 'drift-amount', kind: 'explode' })).status, 400);
  assert.equal((await drift({ order_id: 'drift-amount', kind: 'amount' })).status, 400, 'amount is required');
  assert.equal((await drift({ order_id: 'drift-amount', kind: 'fee', amount: -5 })).status, 400);
  assert.equal((await call('POST', '/__sim/charges', { order_id: 'x', amount: 1, currency: 'KRW', dialect: 'paypal', secret_key: secret }, {})).status, 400);
});
