// Proves POST /admin/merchants with the shop's own partner keys: each listed partner gets its key, stored
// encrypted and never echoed; a key for a partner that is not listed is refused and writes nothing; the brand's
// colour and logo are kept; the operator token is required.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { startTestKeel, type TestKeel } from '../testing/harness.js';
import { publicToUuid } from '../storage/ids.js';

let keel: TestKeel;
before(async () => {
  keel = await startTestKeel();
});
after(async () => {
  await keel.close();
});

const admin = (body: unknown, token = keel.keel.services.adminToken) =>
  keel.request('POST', '/admin/merchants', { body, secretKey: null, idempotencyKey: null, headers: { authorization: `Bearer ${token}` } });

test('partner keys by name are stored encrypted, in priority order, and never echoed', async () => {
  const created = await admin({ name: 'Keyed', partners: [{ gateway: 'stripe' }, { gateway: 'toss' }], toss_secret_key: 'test_sk_admin_toss', stripe_secret_key: 'sk_test_admin_stripe', brand_color: '#abcdef', logo_url: 'https://cdn.example/l.png' });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  assert.equal(JSON.stringify(created.body).includes('admin_toss') || JSON.stringify(created.body).includes('admin_stripe'), false);
  assert.deepEqual(Object.keys(created.body).sort(), ['id', 'publishable_key', 'secret_key']);
  const merchantId = publicToUuid('merchant', created.body.id) ?? '';
  const rows = await keel.keel.database.db.selectFrom('merchant_partners').select(['gateway', 'partner_secret_key_encrypted']).where('merchant_id', '=', merchantId).orderBy('priority').execute();
  const cipher = keel.keel.services.deps.cipher;
  assert.deepEqual(rows.map((row) => [row.gateway, cipher.decrypt(row.partner_secret_key_encrypted ?? "")]), [['stripe', 'sk_test_admin_stripe'], ['toss', 'test_sk_admin_toss']]);
  const brand = await keel.keel.database.db.selectFrom('merchants').select(['brand_color', 'brand_logo_url']).where('id', '=', merchantId).executeTakeFirstOrThrow();
  assert.deepEqual(brand, { brand_color: '#abcdef', brand_logo_url: 'https://cdn.example/l.png' });
});

test('a key for a partner the merchant does not have is 400 and writes nothing; the operator token is required', async () => {
  const before = await keel.countAllRows();
  const stray = await admin({ name: 'Stray', gateway: 'toss', stripe_secret_key: 'sk_test_stray' });
  assert.equal(stray.status, 400, JSON.stringify(stray.body));
  assert.equal(stray.body.error.code, 'parameter_invalid');
  assert.equal(stray.body.error.param, 'stripe_secret_key');
  const wrongToken = await admin({ name: 'Nope' }, 'adm_wrong');
  assert.equal(wrongToken.status, 401);
  assert.deepEqual(await keel.countAllRows(), before);
});
