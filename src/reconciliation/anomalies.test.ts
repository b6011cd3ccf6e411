// Proves anomalies as a shop and an operator meet them: an attempt the janitor gave up on becomes one
// StuckProcessing anomaly (opened once, however often the janitor passes) with Keel's side and the partner's,
// an `anomaly.opened` event and the open-anomalies metric; the merchant lists and reads only its own; the
// operator lists every merchant's and resolves one with a note (`anomaly.resolved`), and resolving it again
// changes nothing.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { startTestKeel, testCard, uniqueKey, type TestKeel } from '../testing/harness.js';
import { publicToUuid } from '../storage/ids.js';

let keel: TestKeel;
before(async () => {
  keel = await startTestKeel();
});
after(async () => {
  await keel.close();
});

const admin = (method: 'GET' | 'POST', path: string, body?: unknown) =>
  keel.request(method, path, { ...(body === undefined ? {} : { body }), secretKey: null, idempotencyKey: null, headers: { authorization: `Bearer ${keel.keel.services.adminToken}` } });

async function openAnomalies(): Promise<number> {
  const text = (await keel.request('GET', '/metrics', { secretKey: null })).body as string;
  return Number(/^keel_anomalies_open\{type="StuckProcessing",gateway="toss"\} (\d+)$/m.exec(text)?.[1] ?? 0);
}

test('an attempt the janitor gave up on is one StuckProcessing anomaly, resolved by an operator with a note', async () => {
  // The ambiguous card: the partner charges, then answers after Keel's read timeout; the payment is processing.
  const orderId = uniqueKey('ord');
  const paid = await keel.request('POST', '/v1/payments', { body: { amount: 7000, currency: 'KRW', order_id: orderId, payment_method: testCard('4000000000000259'), confirm: true } });
  assert.equal(paid.status, 202, JSON.stringify(paid.body));
  // The janitor has asked as often as it will: its next pass records the anomaly instead of asking again.
  const paymentId = publicToUuid('payment', paid.body.id) ?? '';
  await keel.keel.database.db.updateTable('payment_attempts').set({ inquiry_count: 20, next_inquiry_at: new Date(Date.now() - 1_000) }).where('payment_id', '=', paymentId).execute();
  assert.equal((await keel.keel.jobs.janitor()).anomalies, 1);
  await keel.keel.database.db.updateTable('payment_attempts').set({ next_inquiry_at: new Date(Date.now() - 1_000) }).where('payment_id', '=', paymentId).execute();
  await keel.keel.jobs.janitor();

  const listed = await keel.request('GET', '/v1/anomalies?status=open&type=StuckProcessing');
  assert.equal(listed.status, 200, JSON.stringify(listed.body));
  assert.equal(listed.body.data.length, 1, 'opened once');
  const [anomaly] = listed.body.data;
  assert.match(anomaly.id, /^anom_/);
  assert.deepEqual(
    { type: anomaly.type, status: anomaly.status, gateway: anomaly.gateway, payment: anomaly.payment, order_id: anomaly.order_id, expected: anomaly.expected, actual: anomaly.actual, resolution: anomaly.resolution },
    { type: 'StuckProcessing', status: 'open', gateway: 'toss', payment: paid.body.id, order_id: orderId, expected: { amount: 7000, currency: 'KRW', status: 'processing', operation: 'authorize' }, actual: { status: 'unknown', inquiries: 20 }, resolution: null },
  );
  assert.equal(await openAnomalies(), 1);
  assert.equal(anomaly.severity, 'normal');
  assert.match(anomaly.next_action, /^The partner would not say whether the payment happened/);
  assert.deepEqual((await keel.request('GET', `/v1/anomalies/${anomaly.id}`)).body, anomaly);

  const other = await keel.createMerchant({ name: 'Elsewhere' });
  assert.equal((await keel.request('GET', `/v1/anomalies/${anomaly.id}`, { secretKey: other.secret_key })).status, 404);
  assert.deepEqual((await keel.request('GET', '/v1/anomalies', { secretKey: other.secret_key })).body.data, []);
  assert.equal((await admin('GET', '/admin/anomalies?status=open')).body.data.length, 1);

  const resolved = await admin('POST', `/admin/anomalies/${anomaly.id}/resolve`, { note: 'checked at the partner: charged once, captured by hand' });
  assert.equal(resolved.status, 200, JSON.stringify(resolved.body));
  assert.equal(resolved.body.status, 'resolved');
  assert.equal(resolved.body.next_action, null, 'nothing left to do');
  assert.deepEqual(resolved.body.resolution, { kind: 'manual', action: 'resolved by an operator', note: 'checked at the partner: charged once, captured by hand' });
  const again = await admin('POST', `/admin/anomalies/${anomaly.id}/resolve`, { note: 'a second note' });
  assert.deepEqual(again.body, resolved.body, 'resolving a resolved anomaly changes nothing');
  assert.equal(await openAnomalies(), 0);
  assert.equal((await admin('POST', '/admin/anomalies/anom_nope/resolve', { note: 'x' })).status, 404);

  // The merchant's webhooks hear of both.
  await keel.keel.jobs.relay();
  const events = await keel.request('GET', '/v1/events?limit=100');
  const types = events.body.data.map((event: { type: string }) => event.type);
  assert.equal(types.filter((type: string) => type === 'anomaly.opened').length, 1);
  assert.equal(types.filter((type: string) => type === 'anomaly.resolved').length, 1);
});
