// Proves that killing Keel's database connections mid-load (pg_terminate_backend) gives clean 503s while it
// lasts, never a 500 or a torn payment, and that Keel recovers without a restart: every interrupted request,
// retried with its key as a client would, ends with one charge per order.
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { after, before, test } from 'node:test';
import { startTestKeel, testCard, testDatabaseUrl, uniqueKey, type TestKeel, type TestResponse } from '../testing/harness.js';

const url = testDatabaseUrl();
let keel: TestKeel;

before(async () => {
  if (url !== undefined) keel = await startTestKeel();
});
after(async () => {
  await keel?.close();
});

async function terminateKeelConnections(applicationName: string): Promise<number> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const result = await client.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1 AND pid <> pg_backend_pid()', [applicationName]);
    return result.rowCount ?? 0;
  } finally {
    await client.end();
  }
}

test('killed connections mid-load: only clean 503s, no torn payment, recovery without restart', { skip: url === undefined ? 'pg_terminate_backend needs PostgreSQL' : false }, async (context) => {
  const schema = (keel.keel.database.schema ?? '') as string;
  const requests = Array.from({ length: 60 }, () => ({ key: uniqueKey(), body: { amount: 1000, currency: 'KRW', order_id: uniqueKey('ord'), payment_method: testCard(), confirm: true } }));
  const answers: TestResponse[] = [];
  let killed = 0;
  const killer = (async () => {
    for (let round = 0; round < 6; round += 1) {
      await sleep(40);
      killed += await terminateKeelConnections(schema);
    }
  })();
  for (let index = 0; index < requests.length; index += 10) {
    const batch = requests.slice(index, index + 10);
    answers.push(...(await Promise.all(batch.map((request) => keel.request('POST', '/v1/payments', { body: request.body, idempotencyKey: request.key })))));
  }
  await killer;
  const statuses = answers.map((answer) => answer.status);
  assert.ok(killed > 0, 'connections were terminated during the load');
  context.diagnostic(JSON.stringify({ killed, statuses: statuses.reduce<Record<number, number>>((counts, status) => ({ ...counts, [status]: (counts[status] ?? 0) + 1 }), {}) }));
  assert.ok(statuses.includes(503), 'some requests met a killed connection and answered 503');
  for (const answer of answers) {
    assert.ok([200, 409, 503].includes(answer.status), `unexpected ${answer.status}: ${JSON.stringify(answer.body)}`);
    if (answer.status === 503) assert.equal(answer.body.error.code, 'service_unavailable');
  }

  // A client retries what did not succeed, with the same key, until it does.
  for (const [index, request] of requests.entries()) {
    let answer = answers[index];
    for (let attempt = 0; answer?.status !== 200 && attempt < 20; attempt += 1) {
      await sleep(300);
      answer = await keel.request('POST', '/v1/payments', { body: request.body, idempotencyKey: request.key });
    }
    assert.equal(answer?.status, 200, `order ${request.body.order_id} after retries: ${JSON.stringify(answer?.body)} (first ${statuses[index]})`);
    assert.equal(answer?.body.status, 'succeeded');
    const charges = await keel.simCharges(request.body.order_id);
    assert.equal(charges.length, 1, `order ${request.body.order_id} charged ${charges.length} times`);
  }
  const fresh = await keel.request('POST', '/v1/payments', { body: { amount: 1000, currency: 'KRW', order_id: uniqueKey('ord'), payment_method: testCard(), confirm: true } });
  assert.equal(fresh.status, 200, 'Keel serves again without a restart');
  const torn = await keel.keel.database.db.selectFrom('payments').select(['id', 'status', 'amount', 'amount_received']).where('status', '=', 'succeeded').execute();
  for (const payment of torn) assert.equal(payment.amount_received, payment.amount);
});
