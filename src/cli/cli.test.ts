// Proves the `keel` command on the embedded engine, as a shop engineer uses it: `start` seeds a demo merchant
// and serves payments; while it runs, `merchant create` goes through its API and a second `start` refuses
// (PGlite admits one process per data directory); after it stops, `merchant create` opens the database itself
// and the data survives; `projections rebuild` works both ways; `gateway-sim` serves the benchmark gateway alone.
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { freePort, runKeel, spawnKeel, type KeelRun } from '../testing/cli.js';
import { wideEntriesIn } from '../storage/data-dir.js';
import { dropSchema, openDatabase } from '../storage/database.js';
import { FieldCipher } from '../storage/encryption.js';
import { publicToUuid } from '../storage/ids.js';
import { testDatabaseUrl } from '../testing/harness.js';

const dataDir = mkdtempSync(join(tmpdir(), 'keel-cli-'));
let apiPort = 0;
let simPort = 0;
let server: ChildProcess | undefined;
let serverOutput = '';


function environment(): NodeJS.ProcessEnv {
  // Shedding is off: the other test files running beside this one delay every event loop on the machine, and
  // this file proves the command, not the shedding (src/http/shedding.test.ts does).
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    KEEL_DATA_DIR: dataDir,
    KEEL_PORT: String(apiPort),
    KEEL_GATEWAY_SIM_PORT: String(simPort),
    KEEL_LOG_LEVEL: 'warn',
    KEEL_SHEDDING: 'off',
  };
  delete env['KEEL_DATABASE_URL'];
  delete env['KEEL_ADMIN_TOKEN'];
  return env;
}

function run(args: readonly string[]): Promise<KeelRun> {
  return runKeel(args, environment());
}

function startServer(): Promise<void> {
  serverOutput = '';
  return new Promise((resolve, reject) => {
    server = spawnKeel(['start'], environment());
    const timer = setTimeout(() => reject(new Error(`keel start did not come up:\n${serverOutput}`)), 60_000);
    server.stdout?.on('data', (chunk: Buffer) => {
      serverOutput += chunk.toString();
      if (serverOutput.includes('Try it:')) {
        clearTimeout(timer);
        resolve();
      }
    });
    server.stderr?.on('data', (chunk: Buffer) => (serverOutput += chunk.toString()));
  });
}

function stopServer(): Promise<number | null> {
  return new Promise((resolve) => {
    if (server === undefined || server.exitCode !== null) return resolve(server?.exitCode ?? null);
    server.once('exit', (code) => resolve(code));
    server.kill('SIGTERM');
  });
}

before(async () => {
  apiPort = await freePort();
  simPort = await freePort();
  await startServer();
});
after(async () => {
  await stopServer();
  rmSync(dataDir, { recursive: true, force: true });
});

test('start prints the demo merchant, whose key pays', async () => {
  // A first start says what it is doing while it creates the embedded database.
  assert.match(serverOutput, /Keel: creating the embedded database in .*pgdata \(first start only/);
  assert.match(serverOutput, /Keel: applied \d+ migrations…/);
  const secretKey = /secret key:\s+(sk_test_\S+)/.exec(serverOutput)?.[1];
  assert.ok(secretKey !== undefined, serverOutput);
  assert.match(serverOutput, /publishable key:\s+pk_test_/);
  assert.match(serverOutput, new RegExp(`http://127.0.0.1:${apiPort}`));
  const response = await fetch(`http://127.0.0.1:${apiPort}/v1/payments`, {
    method: 'POST',
    headers: { authorization: `Bearer ${secretKey}`, 'idempotency-key': 'cli-test-1', 'content-type': 'application/json' },
    body: JSON.stringify({ amount: 15000, currency: 'KRW', order_id: 'cli-order-1', confirm: true, payment_method: { type: 'card', card: { number: '4242424242424242', exp_month: 12, exp_year: 2034, cvc: '123' } } }),
  });
  assert.equal(response.status, 200);
  assert.equal(((await response.json()) as { status: string }).status, 'succeeded');
});

test('the data directory and every file in it are readable by their owner only, and the generated admin token is printed once', () => {
  assert.equal(statSync(dataDir).mode & 0o777, 0o700);
  assert.deepEqual(wideEntriesIn(dataDir), []);
  const token = readFileSync(join(dataDir, 'admin-token'), 'utf8').trim();
  assert.match(token, /^adm_/);
  assert.equal(serverOutput.split(token).length - 1, 1, 'the generated token is printed exactly once');
});

test('an operator\'s own KEEL_ADMIN_TOKEN is never printed; a data directory others can read is warned about', async () => {
  const ownDir = mkdtempSync(join(tmpdir(), 'keel-cli-own-'));
  try {
    const token = `adm_operator_${Date.now()}`;
    const port = await freePort();
    const child = spawnKeel(['start'], { ...environment(), KEEL_DATA_DIR: join(ownDir, 'data'), KEEL_ADMIN_TOKEN: token, KEEL_PORT: String(port), KEEL_GATEWAY_SIM_PORT: String(await freePort()) });
    let output = '';
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`keel start did not come up:\n${output}`)), 60_000);
      const read = (chunk: Buffer) => {
        output += chunk.toString();
        if (output.includes('Try it:')) {
          clearTimeout(timer);
          resolve();
        }
      };
      child.stdout.on('data', read);
      child.stderr.on('data', read);
    });
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGTERM');
    await exited;
    assert.equal(output.includes(token), false, 'the operator\'s token is not echoed');
    assert.doesNotMatch(output, /admin token:/);
    // Someone widened the directory: the next command warns and names the fix.
    chmodSync(join(ownDir, 'data'), 0o755);
    const migrate = await runKeel(['migrate'], { ...environment(), KEEL_DATA_DIR: join(ownDir, 'data') });
    assert.equal(migrate.code, 0, migrate.stderr);
    assert.match(migrate.stderr, /others may read it.*chmod -R go= /);
  } finally {
    rmSync(ownDir, { recursive: true, force: true });
  }
});

test('with KEEL_DATABASE_URL and no KEEL_ENCRYPTION_KEY, serve refuses to start and says why', async () => {
  const refused = await runKeel(['serve', '--role', 'api'], { ...environment(), KEEL_DATABASE_URL: 'postgres://root@127.0.0.1:5432/test', KEEL_ENCRYPTION_KEY: '' });
  assert.equal(refused.code, 1);
  assert.match(refused.stderr, /^keel: KEEL_ENCRYPTION_KEY is required with KEEL_DATABASE_URL/m);
});

test('roles other than all never start a benchmark gateway: without a gateway URL they refuse and say why', async () => {
  const refused = await runKeel(['serve', '--role', 'worker'], { ...environment(), KEEL_DATABASE_URL: 'postgres://root@127.0.0.1:5432/test', KEEL_ENCRYPTION_KEY: 'ab'.repeat(32), KEEL_GATEWAY_URL: '' });
  assert.equal(refused.code, 1);
  assert.match(refused.stderr, /^keel: --role worker needs the partners' URL for test merchants: set KEEL_GATEWAY_URL/m);
});

const databaseUrl = testDatabaseUrl();
const tossKey = `test_sk_cli_${Date.now().toString(36)}`;
const stripeKey = `sk_test_cli_${Date.now().toString(36)}`;
let keyedMerchant = '';
test('a port already taken is said in one line naming the variable that moves it', { skip: databaseUrl === undefined ? 'no KEEL_TEST_DATABASE_URL' : false }, async () => {
  const schema = `keel_cli_${Date.now().toString(36)}`;
  const distributed = { ...environment(), KEEL_DATABASE_URL: databaseUrl ?? '', KEEL_DATABASE_SCHEMA: schema, KEEL_ENCRYPTION_KEY: 'ab'.repeat(32) };
  try {
    // The running Keel holds both the API port and the benchmark gateway's (which only --role all runs).
    const gatewayTaken = await runKeel(['serve', '--role', 'all'], distributed);
    assert.equal(gatewayTaken.code, 1, gatewayTaken.stderr);
    assert.match(gatewayTaken.stderr, new RegExp(`^keel: port ${simPort} is already in use on 127\\.0\\.0\\.1; choose another with KEEL_GATEWAY_SIM_PORT`, 'm'));
    const apiTaken = await runKeel(['serve', '--role', 'api'], { ...distributed, KEEL_GATEWAY_URL: `http://127.0.0.1:${simPort}` });
    assert.equal(apiTaken.code, 1, apiTaken.stderr);
    assert.match(apiTaken.stderr, new RegExp(`^keel: port ${apiPort} is already in use on 127\\.0\\.0\\.1; choose another with KEEL_PORT$`, 'm'));
    assert.doesNotMatch(apiTaken.stderr, /at .*\.ts:\d+/, 'no stack trace');
  } finally {
    await dropSchema(databaseUrl ?? '', schema);
  }
});

test('while it runs: merchant create goes through it, a second start refuses, migrate has nothing to do', async () => {
  const created = await run(['merchant', 'create', '--name', 'CLI Shop', '--brand', 'CLI Pay', '--country', 'US', '--json']);
  assert.equal(created.code, 0, created.stderr);
  const merchant = JSON.parse(created.stdout) as { id: string; secret_key: string; publishable_key: string };
  assert.match(merchant.id, /^mer_/);
  const list = await fetch(`http://127.0.0.1:${apiPort}/v1/payments`, { headers: { authorization: `Bearer ${merchant.secret_key}` } });
  assert.equal(list.status, 200);
  const second = await run(['start']);
  assert.equal(second.code, 1);
  assert.match(second.stderr, /already running/);
  const migrate = await run(['migrate']);
  assert.equal(migrate.code, 0);
  assert.match(migrate.stdout, /nothing to do/);
  const badCountry = await run(['merchant', 'create', '--name', 'X', '--country', 'ZZ', '--json']);
  assert.notEqual(badCountry.code, 0);
  // The shop's own partner keys and brand, through the running Keel: stored (encrypted), never echoed.
  const keyed = await run(['merchant', 'create', '--name', 'Keyed Shop', '--gateway', 'toss,stripe', '--toss-secret-key', tossKey, '--stripe-secret-key', stripeKey, '--brand-color', '#123456', '--logo-url', 'https://cdn.example/logo.png', '--json']);
  assert.equal(keyed.code, 0, keyed.stderr);
  assert.equal(keyed.stdout.includes(tossKey) || keyed.stdout.includes(stripeKey), false, 'partner keys are never shown');
  keyedMerchant = (JSON.parse(keyed.stdout) as { id: string }).id;
  const strayKey = await run(['merchant', 'create', '--name', 'Stray', '--stripe-secret-key', stripeKey, '--json']);
  assert.notEqual(strayKey.code, 0);
  assert.match(strayKey.stderr, /--stripe-secret-key cannot be used: stripe is not one of the merchant's partners/);
  // Reconciliation of today's Toss report through the running Keel: the demo payment matches.
  const reconciled = await run(['reconcile', '--gateway', 'toss', '--date', new Date().toISOString().slice(0, 10), '--json']);
  assert.equal(reconciled.code, 0, reconciled.stderr);
  const reconciliation = JSON.parse(reconciled.stdout) as { object: string; status: string; matched: number; anomalies_opened: number };
  assert.deepEqual([reconciliation.object, reconciliation.status, reconciliation.anomalies_opened], ['reconciliation_run', 'succeeded', 0]);
  assert.ok(reconciliation.matched >= 1, reconciled.stdout);
  const badGateway = await run(['reconcile', '--gateway', 'paypal', '--date', '2026-01-01']);
  assert.notEqual(badGateway.code, 0);
  assert.match(badGateway.stderr, /gateway must be toss or stripe/);
  // An incident run from the terminal, through the running Keel: opened, noted, closed, its post-mortem out.
  const opened = await run(['incident', 'open', '--severity', 'sev2', '--title', 'Refunds slow', '--json']);
  assert.equal(opened.code, 0, opened.stderr);
  const incident = JSON.parse(opened.stdout) as { id: string; status: string };
  assert.deepEqual([incident.id.startsWith('inc_'), incident.status], [true, 'investigating']);
  assert.equal((await run(['incident', 'role', incident.id, 'imoc', 'dana'])).code, 0);
  assert.equal((await run(['incident', 'note', incident.id, 'Stripe', 'status', 'page', 'is', 'green', '--important'])).code, 0);
  const shown = await run(['incident', 'show', incident.id]);
  assert.match(shown.stdout, /IMOC dana/);
  assert.match(shown.stdout, /message ! Stripe status page is green/);
  assert.match((await run(['incident', 'list', '--status', 'open'])).stdout, new RegExp(`${incident.id} sev2 investigating`));
  assert.notEqual((await run(['incident', 'status', incident.id, 'done'])).code, 0);
  assert.match((await run(['incident', 'close', incident.id])).stdout, /is resolved/);
  const refused = await run(['incident', 'note', incident.id, 'late']);
  assert.notEqual(refused.code, 0);
  assert.match(refused.stderr, /is resolved; it no longer changes/);
  assert.match((await run(['incident', 'outage', incident.id])).stdout, /"important_messages"/);
  assert.match((await run(['incident', 'postmortem', incident.id])).stdout, /^# Post-mortem: Refunds slow/);
  // A live merchant: live keys, created without a partner key, which set-keys adds later (never echoed).
  const liveCreated = await run(['merchant', 'create', '--name', 'Live Shop', '--live', '--gateway', 'stripe', '--json']);
  assert.equal(liveCreated.code, 0, liveCreated.stderr);
  const liveMerchant = JSON.parse(liveCreated.stdout) as { id: string; secret_key: string; publishable_key: string };
  assert.match(liveMerchant.secret_key, /^sk_live_/);
  assert.match(liveMerchant.publishable_key, /^pk_live_/);
  const testKeyOnLive = await run(['merchant', 'set-keys', liveMerchant.id, '--stripe-secret-key', 'sk_test_not_for_live']);
  assert.notEqual(testKeyOnLive.code, 0);
  assert.match(testKeyOnLive.stderr, /test key and the merchant is live/);
  const setKeys = await run(['merchant', 'set-keys', liveMerchant.id, '--stripe-secret-key', 'sk_live_cli_shop']);
  assert.equal(setKeys.code, 0, setKeys.stderr);
  assert.match(setKeys.stdout, /stripe has a key/);
  assert.equal(setKeys.stdout.includes('sk_live_cli_shop'), false);
  // The fee the shop negotiated, which reconciliation checks settled fees against.
  const setFees = await run(['merchant', 'set-fees', liveMerchant.id, '--stripe-fee', '2.7% + 30']);
  assert.equal(setFees.code, 0, setFees.stderr);
  assert.match(setFees.stdout, /stripe 2\.7%\+30/);
  const badFee = await run(['merchant', 'set-fees', liveMerchant.id, '--toss-fee', 'cheap']);
  assert.notEqual(badFee.code, 0);
  assert.match(badFee.stderr, /a fee reads like "2\.5%"/);
  // The demo payment's two events (created, succeeded) are the read model's whole history.
  const rebuilt = await run(['projections', 'rebuild']);
  assert.equal(rebuilt.code, 0, rebuilt.stderr);
  assert.match(rebuilt.stdout, /^2 events replayed/);
});

test('after it stops, the CLI opens the embedded database itself and the data is intact', async () => {
  // Idle, it exits as soon as it has closed, well before the 15 s it would give work in flight.
  const stopping = performance.now();
  assert.equal(await stopServer(), 0);
  assert.ok(performance.now() - stopping < 10_000, `an idle Keel took ${Math.round(performance.now() - stopping)} ms to stop`);
  assert.match(serverOutput, /Keel stopped\./);
  // The keyed merchant's partner keys are in the database sealed, and open with the data directory's key.
  const database = await openDatabase({ url: undefined, dataDir: join(dataDir, 'pgdata'), schema: undefined });
  try {
    const cipher = FieldCipher.fromSecret(readFileSync(join(dataDir, 'encryption-key'), 'utf8').trim());
    const merchantUuid = publicToUuid('merchant', keyedMerchant) ?? '';
    const partners = await database.db.selectFrom('merchant_partners').select(['gateway', 'partner_secret_key_encrypted']).where('merchant_id', '=', merchantUuid).orderBy('priority').execute();
    assert.deepEqual(partners.map((partner) => [partner.gateway, cipher.decrypt(partner.partner_secret_key_encrypted ?? "")]), [['toss', tossKey], ['stripe', stripeKey]]);
    assert.ok(partners.every((partner) => partner.partner_secret_key_encrypted?.startsWith('v2.')));
    const brand = await database.db.selectFrom('merchants').select(['brand_color', 'brand_logo_url']).where('id', '=', merchantUuid).executeTakeFirstOrThrow();
    assert.deepEqual(brand, { brand_color: '#123456', brand_logo_url: 'https://cdn.example/logo.png' });
  } finally {
    await database.close();
  }
  const migrate = await run(['migrate']);
  assert.equal(migrate.code, 0, migrate.stderr);
  assert.match(migrate.stdout, /up to date/);
  const created = await run(['merchant', 'create', '--name', 'Offline Shop', '--json']);
  assert.equal(created.code, 0, created.stderr);
  const verified = await run(['ledger', 'verify']);
  assert.equal(verified.code, 0, verified.stderr);
  assert.match(verified.stdout, /1 transactions checked: the ledger verifies/);
  const rebuilt = await run(['projections', 'rebuild']);
  assert.equal(rebuilt.code, 0, rebuilt.stderr);
  assert.match(rebuilt.stdout, /^2 events replayed/);
  await startServer();
  const merchant = JSON.parse(created.stdout) as { secret_key: string };
  const list = await fetch(`http://127.0.0.1:${apiPort}/v1/payments`, { headers: { authorization: `Bearer ${merchant.secret_key}` } });
  assert.equal(list.status, 200);
  const demoKey = /secret key:\s+(sk_test_\S+)/.exec(serverOutput)?.[1];
  const earlier = await fetch(`http://127.0.0.1:${apiPort}/v1/payments?order_id=cli-order-1`, { headers: { authorization: `Bearer ${demoKey}` } });
  assert.equal(((await earlier.json()) as { data: unknown[] }).data.length, 1, 'the payment made before the restart is still there');
});

test('gateway-sim serves the benchmark gateway alone', async () => {
  const port = await freePort();
  const child = spawnKeel(['gateway-sim'], { ...environment(), KEEL_GATEWAY_SIM_PORT: String(port) });
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('gateway-sim did not start')), 30_000);
      child.stdout.on('data', (chunk: Buffer) => {
        if (chunk.toString().includes('listening')) {
          clearTimeout(timer);
          resolve();
        }
      });
    });
    const response = await fetch(`http://127.0.0.1:${port}/__sim/charges`);
    assert.equal(response.status, 200);
    assert.deepEqual(await response.json(), { data: [] });
  } finally {
    child.kill('SIGTERM');
  }
});
