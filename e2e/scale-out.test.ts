// Runs Keel as a distributed deployment on loopback: two `keel serve --role api` and two `--role worker`
// processes on PostgreSQL, NATS JetStream and Redis, with the benchmark gateway standalone (the commands
// docs/scaling.md gives). Every role answers /healthz, /readyz and /metrics on its port. Payments and refunds
// go through both APIs while one worker is stopped mid-run (SIGTERM: it finishes its work in flight and exits).
// Then every event must have reached the merchant's webhook exactly once, `keel ledger verify` must pass, and
// the payments report (the workers' read model) must count every payment and refund once.
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createServer as createHttpServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, test } from 'node:test';
import pg from 'pg';
import { dropSchema } from '../src/storage/database.js';
import { FieldCipher } from '../src/storage/encryption.js';
import { verifyWebhook } from '../src/webhooks/signature.js';
import { freePort, runKeel, spawnKeel, type KeelRun } from '../src/testing/cli.js';

const databaseUrl = process.env['KEEL_TEST_DATABASE_URL'];
const natsUrl = process.env['KEEL_TEST_NATS_URL'];
const redisUrl = process.env['KEEL_TEST_REDIS_URL'];
const available = Boolean(databaseUrl && natsUrl && redisUrl);
if (!available && process.env['KEEL_TEST_REQUIRE_SERVICES'] === '1') throw new Error('the scale-out test needs PostgreSQL, NATS and Redis');

const schema = `keel_scale_${randomBytes(4).toString('hex')}`;
const processes: ChildProcess[] = [];
let gatewayUrl = '';


const environment = (extra: Record<string, string> = {}): NodeJS.ProcessEnv => ({
  ...process.env,
  KEEL_DATABASE_URL: databaseUrl,
  KEEL_DATABASE_SCHEMA: schema,
  KEEL_NATS_URL: natsUrl,
  KEEL_REDIS_URL: redisUrl,
  KEEL_GATEWAY_URL: gatewayUrl,
  KEEL_ENCRYPTION_KEY: encryptionKey,
  KEEL_ADMIN_TOKEN: 'adm_scale_out_test',
  KEEL_LOG_LEVEL: 'warn',
  KEEL_RATE_LIMIT_PER_SECOND: '100000',
  KEEL_RATE_LIMIT_BURST: '100000',
  KEEL_SHEDDING: 'off',
  ...extra,
});
const encryptionKey = FieldCipher.generateSecret();

function start(role: 'api' | 'worker', port: number): Promise<{ child: ChildProcess; url: string }> {
  const child = spawnKeel(['serve', '--role', role], environment({ KEEL_PORT: String(port) }));
  processes.push(child);
  return new Promise((resolve, reject) => {
    let output = '';
    const timer = setTimeout(() => reject(new Error(`${role} did not start: ${output}`)), 60_000);
    child.stdout?.on('data', (chunk: Buffer) => {
      output += chunk.toString();
      const ready = /Keel (api|worker) ready at (\S+)/.exec(output);
      if (ready !== null) {
        clearTimeout(timer);
        resolve({ child, url: ready[2] ?? '' });
      }
    });
    child.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  });
}

function run(args: readonly string[]): Promise<KeelRun> {
  return runKeel(args, environment());
}

function stop(child: ChildProcess): Promise<number | null> {
  return new Promise((resolve) => {
    if (child.exitCode !== null) return resolve(child.exitCode);
    child.once('exit', (code) => resolve(code));
    child.kill('SIGTERM');
  });
}

before(async () => {
  if (!available) return;
  // The benchmark gateway alone, as docs/scaling.md starts it: `keel gateway-sim` on a port of its own.
  const port = await freePort();
  const gateway = spawnKeel(['gateway-sim'], { ...process.env, KEEL_GATEWAY_SIM_PORT: String(port) });
  processes.push(gateway);
  gatewayUrl = await new Promise<string>((resolve, reject) => {
    let output = '';
    const timer = setTimeout(() => reject(new Error(`keel gateway-sim did not start: ${output}`)), 30_000);
    gateway.stdout?.on('data', (chunk: Buffer) => {
      output += chunk.toString();
      const listening = /listening on (http:\/\/\S+)/.exec(output);
      if (listening !== null) {
        clearTimeout(timer);
        resolve(listening[1] ?? '');
      }
    });
  });
});
after(async () => {
  await Promise.all(processes.map(stop));
  if (available && databaseUrl !== undefined) await dropSchema(databaseUrl, schema);
});

test('two APIs and two workers: every event reaches the webhook exactly once, a worker stops mid-run, the ledger verifies', { skip: available ? false : 'needs KEEL_TEST_DATABASE_URL, KEEL_TEST_NATS_URL and KEEL_TEST_REDIS_URL', timeout: 240_000 }, async () => {
  const migrated = await run(['migrate']);
  assert.equal(migrated.code, 0, migrated.stderr);
  const created = await run(['merchant', 'create', '--name', 'Scale Shop', '--json']);
  assert.equal(created.code, 0, created.stderr);
  const merchant = JSON.parse(created.stdout) as { secret_key: string };

  const received = new Map<string, number>();
  let secret = '';
  let badSignatures = 0;
  const hooks = createHttpServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      if (!verifyWebhook(body, request.headers['keel-signature'] as string | undefined, secret)) badSignatures += 1;
      const id = (JSON.parse(body) as { id: string }).id;
      received.set(id, (received.get(id) ?? 0) + 1);
      response.writeHead(200).end();
    });
  });
  await new Promise<void>((resolve) => hooks.listen(0, '127.0.0.1', () => resolve()));
  try {
    const apis = [await start('api', await freePort()), await start('api', await freePort())];
    const workers = [await start('worker', await freePort()), await start('worker', await freePort())];
    // Every role is observable on its own port; a worker serves no API.
    for (const worker of workers) {
      assert.equal((await fetch(`${worker.url}/healthz`)).status, 200);
      const ready = await fetch(`${worker.url}/readyz`);
      assert.deepEqual(((await ready.json()) as { checks: Record<string, string> }).checks, { database: 'ok', redis: 'ok', nats: 'ok' });
      assert.match(await (await fetch(`${worker.url}/metrics`)).text(), /^keel_/m);
      assert.equal((await fetch(`${worker.url}/v1/payments`, { headers: { authorization: `Bearer ${merchant.secret_key}` } })).status, 404);
    }
    const call = async (api: number, method: string, path: string, body?: unknown) => {
      const response = await fetch(`${apis[api % 2]?.url}${path}`, {
        method,
        headers: { authorization: `Bearer ${merchant.secret_key}`, 'content-type': 'application/json', 'idempotency-key': randomBytes(12).toString('hex') },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });
      return { status: response.status, body: (await response.json()) as Record<string, unknown> };
    };
    const endpoint = await call(0, 'POST', '/v1/webhook_endpoints', { url: `http://127.0.0.1:${(hooks.address() as AddressInfo).port}/hooks`, events: ['*'] });
    assert.equal(endpoint.status, 200, JSON.stringify(endpoint.body));
    secret = String(endpoint.body['secret']);

    for (let index = 0; index < 30; index += 1) {
      const payment = await call(index, 'POST', '/v1/payments', {
        amount: 1000 + index,
        currency: 'KRW',
        order_id: `scale_${index}_${randomBytes(3).toString('hex')}`,
        confirm: true,
        payment_method: { type: 'card', card: { number: '4242424242424242', exp_month: 12, exp_year: 2034, cvc: '123' } },
      });
      assert.equal(payment.status, 200, JSON.stringify(payment.body));
      if (index % 3 === 0) assert.equal((await call(index + 1, 'POST', '/v1/refunds', { payment: payment.body['id'], amount: 300 })).status, 200);
      if (index === 12) assert.equal(await stop(workers[0]?.child as ChildProcess), 0, 'the worker stops gracefully');
    }

    const client = new pg.Client({ connectionString: databaseUrl });
    await client.connect();
    let expected = 0;
    try {
      for (let waited = 0; waited < 120; waited += 1) {
        const count = await client.query(`SELECT count(*)::int AS n FROM ${schema}.outbox`);
        expected = (count.rows[0] as { n: number }).n;
        if (received.size >= expected && expected > 0) break;
        await sleep(500);
      }
    } finally {
      await client.end();
    }
    assert.equal(received.size, expected, `every event reached the webhook (${received.size} of ${expected})`);
    assert.deepEqual([...received.values()].filter((count) => count !== 1), [], 'each exactly once');
    assert.equal(badSignatures, 0);
    const verified = await run(['ledger', 'verify']);
    assert.equal(verified.code, 0, verified.stderr);
    assert.match(verified.stdout, /the ledger verifies/);

    // The read model the workers' projections consumer built counts every payment and refund once.
    const wanted = { created: 30, authorized: 30, captured: 30, amount_captured: 30 * 1000 + (29 * 30) / 2, refunds: 10, amount_refunded: 3000 };
    let counted: Record<string, unknown> = {};
    for (let waited = 0; waited < 40; waited += 1) {
      const report = await call(waited, 'GET', '/v1/reports/payments?group_by=gateway');
      assert.equal(report.status, 200, JSON.stringify(report.body));
      const row = (report.body['data'] as Record<string, unknown>[])[0] ?? {};
      counted = Object.fromEntries(Object.keys(wanted).map((key) => [key, row[key]]));
      if (JSON.stringify(counted) === JSON.stringify(wanted)) break;
      await sleep(250);
    }
    assert.deepEqual(counted, wanted);
  } finally {
    await new Promise<void>((resolve) => hooks.close(() => resolve()));
  }
});
