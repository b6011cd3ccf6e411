import { startTestKeel, testCard, uniqueKey } from './testing/harness.js';
const keel = await startTestKeel();
for (let i = 0; i < 8; i++) {
  const t = performance.now();
  const r = await keel.request('POST', '/v1/payments', { body: { amount: 1000, currency: 'KRW', order_id: uniqueKey('o'), payment_method: testCard(), confirm: true } });
  console.log(r.status, (performance.now() - t).toFixed(1));
}
const lines = keel.logs.slice(-12).map((l) => { const j = JSON.parse(l); return `${j.message} ${j.duration_ms ?? ''} ${j.responseTime ?? ''}`; });
console.log(lines.join('\n'));
await keel.close();
