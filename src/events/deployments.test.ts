// Proves that deployments sharing one NATS server never take each other's events: two deployments, each on a
// database of its own with the default schema, each with its worker timers running (relay, consumers,
// webhook deliveries), get every event of their own delivered to their own webhook endpoint exactly once, and
// none of the other's. Then two deployments misconfigured onto one stream and one set of durable consumers
// (the same KEEL_EVENTS_NAMESPACE) still lose nothing: a consumer never acknowledges the other deployment's
// event, so it reaches the deployment it belongs to.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { loadConfig } from '../config.js';
import { createMerchant } from '../merchants/merchants.js';
import { createKeel, type Keel } from '../runtime.js';
import { deleteStream, testCard, testDatabaseUrl, uniqueKey } from '../testing/harness.js';
import { startWebhookReceiver, type WebhookReceiver } from '../testing/webhook-receiver.js';
import { publicToUuid } from '../storage/ids.js';

const natsUrl = process.env['KEEL_TEST_NATS_URL'];
if ((natsUrl === undefined || natsUrl === '') && process.env['KEEL_TEST_REQUIRE_SERVICES'] === '1') throw new Error('KEEL_TEST_NATS_URL is required');
const databaseUrl = testDatabaseUrl();
const skip = natsUrl === undefined || natsUrl === '' || databaseUrl === undefined ? 'needs KEEL_TEST_NATS_URL and KEEL_TEST_DATABASE_URL' : false;

const paymentsEach = 15;

interface Deployment {
  readonly keel: Keel;
  readonly secretKey: string;
  readonly hooks: WebhookReceiver;
  readonly database: string;
}

async function admin(sql: string): Promise<void> {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    await client.query(sql);
  } finally {
    await client.end();
  }
}

async function startDeployment(eventsNamespace?: string): Promise<Deployment> {
  const database = `keel_deploy_${randomBytes(5).toString('hex')}`;
  await admin(`CREATE DATABASE ${database}`);
  const url = new URL(databaseUrl ?? '');
  url.pathname = `/${database}`;
  const keel = await createKeel({
    config: { ...loadConfig({}), databaseUrl: url.toString(), natsUrl, eventsNamespace, logLevel: 'warn', shedding: { ...loadConfig({}).shedding, enabled: false } },
    role: 'all',
    inMemory: true,
    runJobTimers: true,
    simulatorPort: 0,
    logDestination: { write: () => true },
  });
  const merchant = await createMerchant(keel.database.db, keel.services.deps.cipher, { name: `Shop on ${database}` });
  const hooks = await startWebhookReceiver(() => 200);
  const endpoint = await keel.app.inject({
    method: 'POST',
    url: '/v1/webhook_endpoints',
    headers: { authorization: `Bearer ${merchant.secret_key}`, 'idempotency-key': uniqueKey(), 'content-type': 'application/json' },
    payload: JSON.stringify({ url: hooks.url, events: ['*'] }),
  });
  assert.equal(endpoint.statusCode, 200, endpoint.body);
  return { keel, secretKey: merchant.secret_key, hooks, database };
}

async function stopDeployment(deployment: Deployment): Promise<void> {
  await deployment.keel.close();
  await deployment.hooks.close();
  if (deployment.keel.eventStream !== undefined) await deleteStream(natsUrl ?? '', deployment.keel.eventStream);
  await admin(`DROP DATABASE IF EXISTS ${deployment.database} WITH (FORCE)`);
}

async function pay(deployment: Deployment): Promise<void> {
  const response = await deployment.keel.app.inject({
    method: 'POST',
    url: '/v1/payments',
    headers: { authorization: `Bearer ${deployment.secretKey}`, 'idempotency-key': uniqueKey(), 'content-type': 'application/json' },
    payload: JSON.stringify({ amount: 1000, currency: 'KRW', order_id: uniqueKey('ord'), payment_method: testCard(), confirm: true }),
  });
  assert.equal(response.statusCode, 200, response.body);
}

/** The ids of every event of the deployment, from its outbox. */
async function ownEvents(deployment: Deployment): Promise<string[]> {
  const rows = await deployment.keel.database.db.selectFrom('outbox').select('id').execute();
  return rows.map((row) => row.id);
}

async function assertEachDeliveredOnce(deployments: readonly Deployment[]): Promise<void> {
  for (const deployment of deployments) {
    const expected = (await ownEvents(deployment)).length;
    assert.equal(expected, paymentsEach * 2, 'created and succeeded for each payment');
    await deployment.hooks.waitFor(expected, 60_000);
  }
  for (const deployment of deployments) {
    const delivered = deployment.hooks.received.map((received) => (JSON.parse(received.body) as { id: string }).id);
    assert.equal(new Set(delivered).size, delivered.length, 'no event delivered twice');
    assert.equal(delivered.length, paymentsEach * 2, 'every event of this deployment, and no other');
    const own = new Set(await ownEvents(deployment));
    assert.ok(delivered.every((id) => own.has(publicToUuid('event', id) ?? '')), 'only its own events');
  }
}

describe('deployments on one NATS server', { skip }, () => {
  describe('each with its own database and the default schema', () => {
    const deployments: Deployment[] = [];
    before(async () => {
      deployments.push(await startDeployment(), await startDeployment());
    });
    after(async () => {
      for (const deployment of deployments) await stopDeployment(deployment);
    });

    test('streams and consumers are their own; every event reaches its own webhook once', { timeout: 120_000 }, async () => {
      const [first, second] = deployments as [Deployment, Deployment];
      assert.notEqual(first.keel.deployment, second.keel.deployment);
      assert.notEqual(first.keel.eventStream, second.keel.eventStream);
      await Promise.all([first, second].map(async (deployment) => {
        for (let index = 0; index < paymentsEach; index += 1) await pay(deployment);
      }));
      await assertEachDeliveredOnce(deployments);
    });
  });

  describe('misconfigured onto one stream (the same KEEL_EVENTS_NAMESPACE)', () => {
    const deployments: Deployment[] = [];
    const shared = `shared_${randomBytes(4).toString('hex')}`;
    before(async () => {
      deployments.push(await startDeployment(shared), await startDeployment(shared));
    });
    after(async () => {
      for (const deployment of deployments) await stopDeployment(deployment);
    });

    test('a consumer never acknowledges the other deployment\'s event: nothing is lost', { timeout: 180_000 }, async () => {
      const [first, second] = deployments as [Deployment, Deployment];
      assert.equal(first.keel.eventStream, second.keel.eventStream);
      await Promise.all([first, second].map(async (deployment) => {
        for (let index = 0; index < paymentsEach; index += 1) await pay(deployment);
      }));
      await assertEachDeliveredOnce(deployments);
    });
  });
});
