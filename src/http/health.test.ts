// Proves the operational endpoints: liveness, readiness against the real database, Prometheus metrics that
// count payment outcomes and report the event backlog and the read model's lag, and an OpenAPI document
// generated from the route schemas.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { startTestKeel, testCard, uniqueKey, type TestKeel } from '../testing/harness.js';

let keel: TestKeel;
before(async () => {
  keel = await startTestKeel();
});
after(async () => {
  await keel.close();
});

test('healthz and readyz answer, readyz after checking the database', async () => {
  assert.equal((await keel.request('GET', '/healthz', { secretKey: null })).status, 200);
  const ready = await keel.request('GET', '/readyz', { secretKey: null });
  assert.equal(ready.status, 200);
  assert.deepEqual(ready.body.checks, { database: 'ok' });
});

test('metrics count approvals and declines apart, with latency histograms', async () => {
  await keel.request('POST', '/v1/payments', { body: { amount: 1000, currency: 'KRW', order_id: uniqueKey('o'), payment_method: testCard(), confirm: true } });
  await keel.request('POST', '/v1/payments', { body: { amount: 1000, currency: 'KRW', order_id: uniqueKey('o'), payment_method: testCard('4000000000000002'), confirm: true } });
  const metrics = await keel.request('GET', '/metrics', { secretKey: null });
  assert.equal(metrics.status, 200);
  assert.match(String(metrics.headers['content-type']), /text\/plain/);
  assert.match(metrics.body, /keel_payment_outcomes_total\{outcome="ok",gateway="toss",country="KR"\} 1/);
  assert.match(metrics.body, /keel_payment_outcomes_total\{outcome="declined",gateway="toss",country="KR"\} 1/);
  assert.match(metrics.body, /keel_http_request_duration_seconds_bucket\{.*route="\/v1\/payments".*status_class="2xx"/);
  assert.match(metrics.body, /keel_partner_call_duration_seconds_count\{gateway="toss",country="KR",operation="authorize",outcome="ok"\}/);
});

test('metrics report the event backlog and the read model\'s lag, shared through the database', async () => {
  const db = keel.keel.database.db;
  const waiting = (await db.selectFrom('outbox').select('id').where('published_at', 'is', null).execute()).length;
  assert.ok(waiting >= 4, 'the payments above wrote their events');
  const before = await keel.request('GET', '/metrics', { secretKey: null });
  assert.match(before.body, new RegExp(`keel_event_backlog\\{queue="outbox_unpublished"\\} ${waiting}\\n`));
  assert.match(before.body, /keel_event_backlog\{queue="webhooks_due"\} 0\n/);
  const lagBefore = Number(/^keel_projection_lag_seconds (\S+)$/m.exec(before.body)?.[1]);
  await new Promise((resolve) => setTimeout(resolve, 1_100));
  const stale = Number(/^keel_projection_lag_seconds (\S+)$/m.exec((await keel.request('GET', '/metrics', { secretKey: null })).body)?.[1]);
  assert.ok(stale >= 1 && stale > lagBefore, `the model trails the waiting events, and more so as time passes (${lagBefore} then ${stale})`);
  while ((await keel.keel.jobs.relay()) > 0);
  const after = await keel.request('GET', '/metrics', { secretKey: null });
  assert.match(after.body, /keel_event_backlog\{queue="outbox_unpublished"\} 0\n/);
  assert.ok(Number(/^keel_projection_lag_seconds (\S+)$/m.exec(after.body)?.[1]) < 1, 'caught up');
});

test('/openapi.json describes the payment routes from their schemas', async () => {
  const response = await keel.request('GET', '/openapi.json', { secretKey: null });
  assert.equal(response.status, 200);
  assert.equal(response.body.openapi, '3.1.0');
  const create = response.body.paths['/v1/payments'].post;
  assert.deepEqual(create.requestBody.content['application/json'].schema.required, ['amount', 'currency', 'order_id']);
  assert.ok(response.body.paths['/v1/refunds'].post);
  assert.ok(response.body.paths['/v1/payments/{id}/capture'].post);
  assert.equal(response.body.paths['/admin/merchants'], undefined, 'operator routes stay out of the public document');
});
