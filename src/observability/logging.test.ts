// Proves Keel's log hygiene and tracing: a full card number, CVC and secret key pushed through every endpoint
// (valid requests, malformed JSON, unknown fields) never reach the log stream; the correlation id is adopted,
// echoed, on every log line of the request, sent to the partner, and carried as an SQL comment.
import assert from 'node:assert/strict';
import { sql } from 'kysely';
import { after, before, test } from 'node:test';
import { startTestKeel, uniqueKey, type TestKeel } from '../testing/harness.js';
import { runWithContext } from './context.js';

let keel: TestKeel;
before(async () => {
  keel = await startTestKeel();
});
after(async () => {
  await keel.close();
});

const pan = '4242424242424242';
const cvc = '7319';
const card = { type: 'card', card: { number: pan, exp_month: 11, exp_year: 2033, cvc } };

test('card numbers, CVCs and secret keys never appear in the logs', async () => {
  const orderId = uniqueKey('ord');
  const created = await keel.request('POST', '/v1/payments', { body: { amount: 5000, currency: 'KRW', order_id: orderId, payment_method: card, confirm: true, capture_method: 'manual' } });
  assert.equal(created.status, 200);
  const id = created.body.id as string;
  const pending = await keel.request('POST', '/v1/payments', { body: { amount: 5000, currency: 'KRW', order_id: uniqueKey('ord') } });
  await keel.request('POST', `/v1/payments/${pending.body.id}/confirm`, { body: { payment_method: card } });
  await keel.request('POST', `/v1/payments/${id}/capture`, { body: { amount: 4000 } });
  await keel.request('POST', '/v1/refunds', { body: { payment: id, amount: 1000 } });
  await keel.request('GET', `/v1/payments/${id}`);
  await keel.request('GET', '/v1/payments?limit=5');
  const other = await keel.request('POST', '/v1/payments', { body: { amount: 5000, currency: 'KRW', order_id: uniqueKey('ord'), payment_method: card } });
  await keel.request('POST', `/v1/payments/${other.body.id}/cancel`, { body: {} });
  // Bodies that fail: the parser's and the validator's messages must not carry the body into the logs.
  await keel.request('POST', '/v1/payments', { rawBody: `{"payment_method":{"card":{"number":"${pan}","cvc":"${cvc}"`, idempotencyKey: uniqueKey() });
  await keel.request('POST', '/v1/payments', { body: { amount: 5000, currency: 'KRW', order_id: 'x', payment_method: card, note: pan } });
  await keel.request('POST', '/v1/payments', { body: { amount: 'many', currency: 'KRW', order_id: 'x', payment_method: card } });
  await keel.request('GET', '/v1/payments', { secretKey: `${keel.merchant.secret_key}x` });
  await keel.request('GET', '/v1/payments', { headers: { authorization: `Basic ${Buffer.from(`${keel.merchant.secret_key}:`).toString('base64')}` } });
  keel.keel.logger.flush();
  const text = keel.logs.join('');
  const requestLines = keel.logs.filter((line) => (JSON.parse(line) as { message?: string }).message === 'request');
  assert.equal(requestLines.length, 14, 'each of the 14 requests above wrote its one line');
  assert.ok(text.includes('partner call'), 'partner calls are logged');
  assert.equal(text.includes(pan), false, 'no card number in the logs');
  assert.equal(text.includes(pan.slice(0, 12)), false, 'no card number prefix in the logs');
  assert.equal(text.includes(`"${cvc}"`), false, 'no CVC value in the logs');
  assert.equal(/"cvc"/.test(text), false, 'no cvc field in the logs');
  assert.equal(text.includes(keel.merchant.secret_key), false, 'no secret key in the logs');
  assert.equal(text.includes(keel.merchant.secret_key.slice(8, 30)), false, 'no part of the secret key in the logs');
});

test('the correlation id is adopted, echoed, on every log line, and sent to the partner', async () => {
  const correlationId = `shop-checkout-${Date.now()}`;
  const orderId = uniqueKey('ord');
  const response = await keel.request('POST', '/v1/payments', {
    body: { amount: 5000, currency: 'KRW', order_id: orderId, payment_method: card, confirm: true },
    headers: { 'x-correlation-id': correlationId },
  });
  assert.equal(response.status, 200);
  assert.equal(response.headers['x-correlation-id'], correlationId);
  keel.keel.logger.flush();
  const lines = keel.logs.map((line) => JSON.parse(line) as Record<string, unknown>);
  const requestId = response.headers['request-id'];
  const ofRequest = lines.filter((line) => line['request_id'] === requestId);
  for (const line of ofRequest) assert.equal(line['correlation_id'], correlationId);
  assert.ok(ofRequest.some((line) => line['message'] === 'partner call'), 'the partner call is logged');
  const [ended, ...more] = ofRequest.filter((line) => line['message'] === 'request');
  assert.equal(more.length, 0, 'one line for the request, when it ends');
  assert.deepEqual([ended?.['method'], ended?.['url'], ended?.['status']], ['POST', '/v1/payments', 200]);
  assert.ok(Number(ended?.['duration_ms']) >= Number(ended?.['partner_ms']) && Number(ended?.['partner_ms']) > 0, 'its duration and the time at the partner');
  const [charge] = (await keel.simCharges(orderId)) as unknown as { correlation_id: string }[];
  assert.equal(charge?.correlation_id, correlationId);
});

test('a correlation id that could break out of a log field or an SQL comment is replaced', async () => {
  const response = await keel.request('GET', '/v1/payments', { headers: { 'x-correlation-id': "x*/ DROP TABLE payments; --" } });
  assert.match(String(response.headers['x-correlation-id']), /^corr_/);
});

test('queries carry the correlation id as an SQL comment', async () => {
  const result = await runWithContext({ correlationId: 'corr-sql-comment-1', requestId: 'req_test' }, () =>
    sql<{ query: string }>`SELECT current_query() AS query`.execute(keel.keel.database.db),
  );
  assert.match(result.rows[0]?.query ?? '', /\/\*correlation_id='corr-sql-comment-1'\*\//);
});
