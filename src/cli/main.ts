import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Command, InvalidArgumentError } from 'commander';
import { loadConfig, type KeelConfig } from '../config.js';
import { createMerchant, formatContractFee, isGatewayName, namedPartnerKeys, parseContractFee, partnerKeyProblem, unlistedPartner, updateMerchantPartners, type CreatedMerchant, type MerchantPartners, type NewMerchant, type PartnerChanges } from '../merchants/merchants.js';
import type { ContractFeeTerms } from '../merchants/types.js';
import type { GatewayName } from '../gateways/connector.js';
import { progressLines } from './progress.js';
import { incidentCommand } from './incident.js';
import { loadtest } from '../loadtest/loadtest.js';
import { countryCodes } from '../money.js';
import { cipherFor, createKeel, shutdownJobsWaitMs, type Keel, type Role } from '../runtime.js';
import { startSimulator } from '../simulator/server.js';
import { migrateToLatest, openDatabase, type Database } from '../storage/database.js';
import { prepareDataDir, wideDataDirAdvice } from '../storage/data-dir.js';
import { readAdminToken, runningKeel, writeLock } from './embedded-lock.js';
import { verifyLedger } from '../ledger/ledger.js';
import { rebuildProjections } from '../reports/projection.js';
import { createLogger } from '../observability/logger.js';
import { runReconciliation, runToApi } from '../reconciliation/reconcile.js';
import { publicToUuid } from '../storage/ids.js';

/** The `keel` command: start, serve, migrate, merchant create, gateway-sim. */

const program = new Command('keel').description('Keel: self-hosted payments with brand pay, built for failure.');

program
  .command('start')
  .description('run everything embedded: API, workers, benchmark gateway, PGlite in KEEL_DATA_DIR; seeds a demo merchant')
  .action(async () => {
    await serve('all', true);
  });

program
  .command('serve')
  .description('run one role of a deployment')
  .option('--role <role>', 'api | worker | all', parseRole, 'all')
  .action(async (options: { role: Role }) => {
    await serve(options.role, false);
  });

program
  .command('migrate')
  .description('apply database migrations (idempotent)')
  .action(async () => {
    const config = loadConfig();
    const running = config.databaseUrl === undefined ? runningKeel(config.dataDir) : undefined;
    if (running !== undefined) {
      console.log(`Keel (pid ${running.pid}) is running on ${config.dataDir} and applied every migration when it started; nothing to do.`);
      return;
    }
    const applied = await withDatabase(config, migrateToLatest);
    console.log(applied.length === 0 ? 'Database is up to date.' : `Applied: ${applied.join(', ')}`);
  });

const merchant = program.command('merchant').description('merchants');
merchant
  .command('create')
  .description('create a merchant and print its keys (shown once)')
  .requiredOption('--name <name>', 'merchant name')
  .option('--brand <brand>', 'brand pay name, e.g. "Shop Pay"')
  .option('--country <country>', 'ISO 3166-1 alpha-2 country', parseCountry, 'KR')
  .option('--gateway <gateways>', 'partners in priority order: toss, stripe, or toss,stripe', parseGateways, ['toss'])
  .option('--toss-secret-key <key>', 'the shop\'s own Toss Payments secret key (stored encrypted, never shown again)')
  .option('--stripe-secret-key <key>', 'the shop\'s own Stripe secret key (stored encrypted, never shown again)')
  .option('--brand-color <color>', 'the hosted page\'s colour, "#RRGGBB"', parseColor)
  .option('--logo-url <url>', 'the hosted page\'s logo (https)', parseLogoUrl)
  .option('--toss-fee <fee>', 'the shop\'s negotiated Toss Payments fee, e.g. "2.3%" (default: standard pricing)', parseFee)
  .option('--stripe-fee <fee>', 'the shop\'s negotiated Stripe fee, e.g. "2.7%+30" (default: standard pricing)', parseFee)
  .option('--live', 'a live merchant: sk_live_/pk_live_ keys, livemode true, real partner URLs only (docs/going-live.md)')
  .option('--json', 'print JSON only')
  .action(async (options: MerchantCreateOptions) => {
    const keys: Record<GatewayName, string | undefined> = { toss: options.tossSecretKey, stripe: options.stripeSecretKey };
    const live = options.live === true;
    const refused = partnerKeyProblem(options.gateway, keys, live);
    if (refused !== undefined) throw new InvalidArgumentError(`--${refused.gateway}-secret-key cannot be used: ${refused.problem}${options.gateway.includes(refused.gateway) ? '' : ' (--gateway)'}`);
    const fees: Record<GatewayName, ContractFeeTerms | undefined> = { toss: options.tossFee, stripe: options.stripeFee };
    const unlisted = unlistedPartner(options.gateway, fees);
    if (unlisted !== undefined) throw new InvalidArgumentError(`--${unlisted}-fee: ${unlisted} is not one of the merchant's partners (--gateway)`);
    const created = await createMerchantFromCli({
      live,
      name: options.name,
      brandName: options.brand,
      brandColor: options.brandColor,
      brandLogoUrl: options.logoUrl,
      country: options.country,
      partners: options.gateway.map((gateway) => ({ gateway, partnerSecretKey: keys[gateway], contractFee: fees[gateway] })),
    });
    if (options.json === true) console.log(JSON.stringify(created));
    else console.log(`Merchant ${created.id}\n  secret key:      ${created.secret_key}\n  publishable key: ${created.publishable_key}`);
  });

merchant
  .command('set-keys')
  .description('set the shop\'s own partner keys on a merchant that lists those partners (stored encrypted, never shown again)')
  .argument('<merchant>', 'the merchant id (mer_…)')
  .option('--toss-secret-key <key>', 'the shop\'s Toss Payments secret key')
  .option('--stripe-secret-key <key>', 'the shop\'s Stripe secret key')
  .action(async (merchantId: string, options: { tossSecretKey?: string; stripeSecretKey?: string }) => {
    const keys = namedPartnerKeys(options.tossSecretKey, options.stripeSecretKey);
    if (Object.keys(keys).length === 0) throw new InvalidArgumentError('give --toss-secret-key, --stripe-secret-key or both');
    const { partners } = await updatePartnersFromCli(merchantId, { keys });
    console.log(`Merchant ${merchantId}: ${partners.map((partner) => `${partner.gateway} ${partner.configured ? 'has a key' : 'has no key'}`).join(', ')}`);
  });

merchant
  .command('set-fees')
  .description('set the fees the shop negotiated with its partners, which reconciliation checks settled fees against')
  .argument('<merchant>', 'the merchant id (mer_…)')
  .option('--toss-fee <fee>', 'the Toss Payments fee, e.g. "2.3%" (VAT is added as Toss adds it)', parseFee)
  .option('--stripe-fee <fee>', 'the Stripe fee, e.g. "2.7%+30" (the fixed part in minor units)', parseFee)
  .action(async (merchantId: string, options: { tossFee?: ContractFeeTerms; stripeFee?: ContractFeeTerms }) => {
    const fees = { ...(options.tossFee === undefined ? {} : { toss: options.tossFee }), ...(options.stripeFee === undefined ? {} : { stripe: options.stripeFee }) };
    if (Object.keys(fees).length === 0) throw new InvalidArgumentError('give --toss-fee, --stripe-fee or both');
    const { partners } = await updatePartnersFromCli(merchantId, { fees });
    console.log(`Merchant ${merchantId}: ${partners.map((partner) => `${partner.gateway} ${partner.contract_fee ?? 'standard pricing'}`).join(', ')}`);
  });

/** Through a running embedded Keel (`POST /admin/merchants/{id}`), else on the database directly. */
async function updatePartnersFromCli(merchantId: string, changes: PartnerChanges): Promise<MerchantPartners> {
  const config = loadConfig();
  const fee = (gateway: GatewayName) => {
    const terms = changes.fees?.[gateway];
    return terms === undefined ? undefined : formatContractFee(terms);
  };
  const body = { toss_secret_key: changes.keys?.toss, stripe_secret_key: changes.keys?.stripe, toss_fee: fee('toss'), stripe_fee: fee('stripe') };
  const answer = await askRunningKeel(config, `/admin/merchants/${encodeURIComponent(merchantId)}`, body);
  if (answer !== undefined) return answer as MerchantPartners;
  return withDatabase(config, async (database) => {
    await migrateToLatest(database);
    return updateMerchantPartners(database.db, cipherFor(config), merchantId, changes);
  });
}

program
  .command('reconcile')
  .description("compare a partner's report of a UTC day with Keel's payments; print the run (exit 1 if it failed)")
  .requiredOption('--gateway <gateway>', 'toss or stripe', (value: string) => {
    if (!isGatewayName(value)) throw new InvalidArgumentError('gateway must be toss or stripe');
    return value;
  })
  .requiredOption('--date <date>', 'the UTC day, YYYY-MM-DD', (value: string) => {
    if (!/^[0-9]{4}-[0-9]{2}-[0-9]{2}$/.test(value) || Number.isNaN(Date.parse(`${value}T00:00:00Z`))) throw new InvalidArgumentError('date must be YYYY-MM-DD');
    return value;
  })
  .option('--merchant <merchant>', 'one merchant (mer_…); default every merchant with that partner')
  .option('--json', 'print the run as JSON')
  .action(async (options: { gateway: GatewayName; date: string; merchant?: string; json?: boolean }) => {
    const config = loadConfig();
    const body = { gateway: options.gateway, date: options.date, ...(options.merchant === undefined ? {} : { merchant: options.merchant }) };
    // A running embedded Keel holds the database; otherwise an API-role Keel of this process runs it (it needs
    // the partners' URLs, as every role but `all` does).
    const progress = progressLines(`reconciling ${options.gateway} ${options.date}`, () => rowsReadSoFar(config, options.gateway, options.date), (line) => console.error(line));
    let run: Record<string, unknown>;
    try {
      run = ((await askRunningKeel(config, '/admin/reconciliation/runs', body)) ?? (await reconcileHere(config, body))) as Record<string, unknown>;
    } finally {
      progress.stop();
    }
    if (options.json === true) console.log(JSON.stringify(run));
    else console.log(`reconciliation ${String(run['id'])} of ${options.gateway} for ${options.date}: ${String(run['status'])}, ${String(run['rows_read'])} rows read, ${String(run['matched'])} matched, ${String(run['anomalies_opened'])} anomalies opened`);
    if (run['status'] !== 'succeeded') process.exitCode = 1;
  });

program.addCommand(incidentCommand(loadConfig, adminCall));

program
  .command('loadtest')
  .description('rehearse a flash sale: open-loop shoppers against Keel, invariants checked, report.html and report.json written (exit 1 if an invariant broke)')
  .option('--scenario <scenario>', 'flash-sale, steady, or a scenario JSON file', 'flash-sale')
  .option('--target <url>', 'a running Keel to drive (default: start one, with the benchmark gateway at partner-like latency)')
  .option('--secret-key <key>', "the target merchant's secret key (default KEEL_LOADTEST_SECRET_KEY)")
  .option('--gateway-url <url>', "the target's benchmark gateway, to check one charge per order")
  .option('--rate <n>', 'the peak arrivals per second (flash sale) or the rate (steady)', (value: string) => positiveNumber(value, '--rate'))
  .option('--duration <s>', 'seconds of arrivals', (value: string) => positiveNumber(value, '--duration'))
  .option('--out <dir>', 'where report.html and report.json go', 'loadtest-report')
  .option('--json', "print report.json's content on standard output at the end")
  .action(async (options: { scenario: string; target?: string; secretKey?: string; gatewayUrl?: string; rate?: number; duration?: number; out: string; json?: boolean }) => {
    const live = process.stderr.isTTY;
    try {
      const { report, failed } = await loadtest(
        loadConfig(),
        { scenario: options.scenario, target: options.target, secretKey: options.secretKey ?? process.env['KEEL_LOADTEST_SECRET_KEY'], gatewayUrl: options.gatewayUrl, rate: options.rate, durationS: options.duration, outDir: options.out },
        { progress: (line, final) => process.stderr.write(live && !final ? `\r${line.padEnd(110)}` : `${live ? '\n' : ''}${line}\n`) },
      );
      if (options.json === true) console.log(JSON.stringify(report));
      else console.log(`${report.scenario}: ${report.arrivals} shoppers, goodput ${report.goodput_per_s}/s of ${report.offered_per_s}/s offered, p99 ${report.latency_ms.p99} ms; invariants ${JSON.stringify(report.invariants)}; ${join(options.out, 'report.html')}`);
      process.exitCode = failed ? 1 : 0;
    } catch (error) {
      console.error(`loadtest failed: ${error instanceof Error ? error.message : String(error)}`);
      process.exitCode = 2;
    }
    // The load test's clients and the Keel it started are closed; timers of libraries may linger.
    process.exit();
  });

const ledger = program.command('ledger').description('the double-entry journal');
ledger
  .command('verify')
  .description('recompute balances from the journal and from payments and refunds; exit 1 on any difference')
  .action(async () => {
    const config = loadConfig();
    if (config.databaseUrl === undefined && runningKeel(config.dataDir) !== undefined) {
      console.error(`Keel is running on ${config.dataDir}; stop it to verify the embedded database (PGlite admits one process).`);
      process.exitCode = 2;
      return;
    }
    const report = await withDatabase(config, (database) => verifyLedger(database.db));
    for (const id of report.unbalanced) console.error(`unbalanced transaction ${id}`);
    for (const difference of report.differences) {
      console.error(`merchant ${difference.merchant} ${difference.currency}: journal ${difference.journal}, payments ${difference.payments}`);
    }
    const clean = report.unbalanced.length === 0 && report.differences.length === 0;
    console.log(`${report.transactions} transactions checked: ${clean ? 'the ledger verifies' : 'DIFFERENCES FOUND'}`);
    if (!clean) process.exitCode = 1;
  });

const projections = program.command('projections').description('the read models built from events (reports)');
projections
  .command('rebuild')
  .description('recompute the read models from every event in the outbox (safe while workers run)')
  .action(async () => {
    const config = loadConfig();
    const answer = (await askRunningKeel(config, '/admin/projections/rebuild', {})) as { events_replayed: number } | undefined;
    if (answer !== undefined) {
      console.log(`${answer.events_replayed} events replayed into the read models`);
      return;
    }
    const report = await withDatabase(config, async (database) => {
      await migrateToLatest(database);
      return rebuildProjections(database.db, createLogger({ level: config.logLevel }));
    });
    console.log(`${report.events} events replayed into the read models`);
  });

program
  .command('gateway-sim')
  .description('run the benchmark gateway alone (port KEEL_GATEWAY_SIM_PORT, default 4100)')
  .option('--seed <seed>', 'latency model seed', (value) => Number(value), 42)
  .action(async (options: { seed: number }) => {
    const config = loadConfig();
    const simulator = await startSimulator({ port: config.gatewaySimPort, seed: options.seed });
    console.log(`Keel benchmark gateway listening on ${simulator.url} (Toss and Stripe wire formats; test hooks under /__sim)`);
    await untilSignal();
    await simulator.close();
  });

function parseRole(value: string): Role {
  if (value === 'api' || value === 'worker' || value === 'all') return value;
  throw new InvalidArgumentError('role must be api, worker or all');
}

function parseCountry(value: string): string {
  const upper = value.toUpperCase();
  if (!countryCodes.has(upper)) throw new InvalidArgumentError('country must be an ISO 3166-1 alpha-2 code');
  return upper;
}

function parseGateways(value: string): GatewayName[] {
  const names = value.split(',').map((name) => name.trim());
  if (names.length === 0 || !names.every(isGatewayName) || new Set(names).size !== names.length) {
    throw new InvalidArgumentError('gateway must be toss, stripe, or both in priority order (toss,stripe)');
  }
  return names;
}

interface MerchantCreateOptions {
  readonly name: string;
  readonly brand?: string;
  readonly country: string;
  readonly gateway: GatewayName[];
  readonly tossSecretKey?: string;
  readonly stripeSecretKey?: string;
  readonly tossFee?: ContractFeeTerms;
  readonly stripeFee?: ContractFeeTerms;
  readonly brandColor?: string;
  readonly logoUrl?: string;
  readonly live?: boolean;
  readonly json?: boolean;
}

function parseColor(value: string): string {
  if (!/^#[0-9a-fA-F]{6}$/.test(value)) throw new InvalidArgumentError('brand colour must be "#RRGGBB"');
  return value;
}

function parseFee(value: string): ContractFeeTerms {
  const terms = parseContractFee(value);
  if (terms === undefined) throw new InvalidArgumentError('a fee reads like "2.5%" or "2.9%+30" (a percentage, then fixed minor units)');
  return terms;
}

function parseLogoUrl(value: string): string {
  if (!/^https?:\/\/\S+$/.test(value) || value.length > 2000) throw new InvalidArgumentError('logo URL must be an http(s) URL of at most 2000 characters');
  return value;
}

function embeddedDataDir(config: KeelConfig): string | undefined {
  if (config.databaseUrl !== undefined) return undefined;
  warnIfWide(config.dataDir, prepareDataDir(config.dataDir).wideEntries);
  return join(config.dataDir, 'pgdata');
}

function warnIfWide(dataDir: string, wideEntries: readonly string[]): void {
  if (wideEntries.length === 0) return;
  console.error(`warning: ${wideDataDirAdvice(dataDir)} (${wideEntries.slice(0, 3).join(', ')}${wideEntries.length > 3 ? ', …' : ''})`);
}

async function createMerchantFromCli(input: NewMerchant): Promise<CreatedMerchant> {
  const config = loadConfig();
  const answer = await askRunningKeel(config, '/admin/merchants', {
    live: input.live,
    name: input.name,
    brand_name: input.brandName,
    brand_color: input.brandColor,
    logo_url: input.brandLogoUrl,
    country: input.country,
    partners: input.partners?.map((partner) => ({ gateway: partner.gateway, partner_secret_key: partner.partnerSecretKey })),
    ...Object.fromEntries((input.partners ?? []).flatMap((partner) => (partner.contractFee === undefined ? [] : [[`${partner.gateway}_fee`, formatContractFee(partner.contractFee)]]))),
  });
  if (answer !== undefined) return answer as CreatedMerchant;
  return withDatabase(config, async (database) => {
    await migrateToLatest(database);
    return createMerchant(database.db, cipherFor(config), input);
  });
}

async function reconcileHere(config: KeelConfig, body: { gateway: GatewayName; date: string; merchant?: string }): Promise<Record<string, unknown>> {
  const keel = await createKeel({ config, role: 'api' });
  try {
    const merchantId = body.merchant === undefined ? undefined : publicToUuid('merchant', body.merchant);
    if (body.merchant !== undefined && merchantId === undefined) throw new InvalidArgumentError('merchant must be a merchant id (mer_…)');
    const { deps } = keel.services;
    const run = await runReconciliation({ db: deps.db, cipher: deps.cipher, logger: keel.logger, gateways: deps.gateways, partnerUrls: keel.services.partnerUrls, payments: deps }, { gateway: body.gateway, date: body.date, merchantId });
    return runToApi(run);
  } finally {
    await keel.close();
  }
}

/** Opens the configured database (PostgreSQL, or the embedded one in the data directory) for one command. */
async function withDatabase<T>(config: KeelConfig, work: (database: Database) => Promise<T>): Promise<T> {
  const database = await openDatabase({ url: config.databaseUrl, dataDir: embeddedDataDir(config), schema: config.databaseSchema });
  try {
    return await work(database);
  } finally {
    await database.close();
  }
}

/** The running embedded Keel on this data directory and its admin token; undefined when none runs. */
function runningKeelAccess(config: KeelConfig): { readonly url: string; readonly token: string } | undefined {
  const running = config.databaseUrl === undefined ? runningKeel(config.dataDir) : undefined;
  if (running === undefined) return undefined;
  const token = config.adminToken ?? readAdminToken(config.dataDir);
  if (token === undefined) throw new Error(`Keel (pid ${running.pid}) is running but its admin token is not in ${config.dataDir}`);
  return { url: running.url, token };
}

/** The running run's `rows_read`, asked of a running embedded Keel; undefined when there is none to ask. */
async function rowsReadSoFar(config: KeelConfig, gateway: GatewayName, date: string): Promise<number | undefined> {
  const running = runningKeelAccess(config);
  if (running === undefined) return undefined;
  const answer = await requestRunningKeel(running, 'GET', '/admin/reconciliation/runs');
  if (answer.status !== 200) return undefined;
  const { data } = answer.body as { data: { status: string; gateway: string; date: string; rows_read: number }[] };
  return data.find((listed) => listed.status === 'running' && listed.gateway === gateway && listed.date === date)?.rows_read;
}

/**
 * An embedded Keel that is running holds the PGlite database (one process only): the CLI then asks it through
 * its operator endpoint. Undefined when no embedded Keel runs on this data directory.
 */
/**
 * One operator request: to the running embedded Keel over HTTP, or to an API-role Keel started in this process
 * on the configured database (answered through `inject`, with its own admin token).
 */
async function adminCall(config: KeelConfig, method: 'GET' | 'POST', path: string, body?: unknown): Promise<{ status: number; body: unknown }> {
  const running = runningKeelAccess(config);
  if (running !== undefined) return requestRunningKeel(running, method, path, body);
  const keel = await createKeel({ config, role: 'api' });
  try {
    const response = await keel.app.inject({ method, url: path, headers: { authorization: `Bearer ${keel.services.adminToken}` }, ...(body === undefined ? {} : { payload: body as Record<string, unknown> }) });
    return { status: response.statusCode, body: isJson(response.headers['content-type']?.toString()) ? response.json() : response.body };
  } finally {
    await keel.close();
  }
}

async function askRunningKeel(config: KeelConfig, path: string, body: unknown): Promise<unknown> {
  const running = runningKeelAccess(config);
  if (running === undefined) return undefined;
  const answer = await requestRunningKeel(running, 'POST', path, body);
  if (answer.status !== 200 && answer.status !== 201) throw new Error(`the running Keel refused: ${answer.status} ${typeof answer.body === 'string' ? answer.body : JSON.stringify(answer.body)}`);
  return answer.body;
}

const isJson = (type: string | undefined | null) => type?.includes('application/json') === true;

/** One request to the running embedded Keel with its admin token: its status, and its body (JSON parsed). */
async function requestRunningKeel(running: { readonly url: string; readonly token: string }, method: 'GET' | 'POST', path: string, body?: unknown): Promise<{ status: number; body: unknown }> {
  const response = await fetch(`${running.url}${path}`, {
    method,
    headers: { authorization: `Bearer ${running.token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  return { status: response.status, body: isJson(response.headers.get('content-type')) ? await response.json() : await response.text() };
}

async function serve(role: Role, seedDemo: boolean): Promise<void> {
  const config = loadConfig();
  const embedded = config.databaseUrl === undefined;
  if (embedded) {
    const running = runningKeel(config.dataDir);
    if (running !== undefined) {
      console.error(`Keel is already running on ${config.dataDir} (pid ${running.pid}, ${running.url}); PGlite admits one process per data directory.`);
      process.exitCode = 1;
      return;
    }
  }
  const keel = await createKeel({ config, role, runJobTimers: true, progress: (step) => console.log(`Keel: ${step}…`) }).catch((error: unknown) => {
    throw portTaken(error, config) ?? error;
  });
  let url: string;
  try {
    url = await keel.listen();
  } catch (error) {
    await keel.close();
    throw portTaken(error, config) ?? error;
  }
  const releaseLock = embedded ? writeLock(config.dataDir, { pid: process.pid, url }) : () => undefined;
  if (seedDemo) await printWelcome(keel, config, url);
  else console.log(`Keel ${role} ready at ${url}`);
  await untilSignal();
  console.log(`Keel is shutting down: finishing what is in flight (at most ${shutdownJobsWaitMs / 1000} s)`);
  await keel.close();
  releaseLock();
  console.log('Keel stopped.');
}

/** A port already in use, said with the variable that moves it. */
function portTaken(error: unknown, config: KeelConfig): Error | undefined {
  const { code, port } = error as { code?: string; port?: number };
  if (code !== 'EADDRINUSE') return undefined;
  const variable = port === config.gatewaySimPort ? 'KEEL_GATEWAY_SIM_PORT (the benchmark gateway), or point KEEL_GATEWAY_URL at a running one' : 'KEEL_PORT';
  return new Error(`port ${port ?? config.port} is already in use on ${config.host}; choose another with ${variable}`);
}

async function printWelcome(keel: Keel, config: KeelConfig, url: string): Promise<void> {
  const demo = await demoMerchant(keel, config);
  // Only a token Keel generated is printed, once; an operator's own KEEL_ADMIN_TOKEN is never echoed.
  const showToken = config.adminToken === undefined && !existsSync(join(config.dataDir, 'admin-token.shown'));
  if (showToken) writeFileSync(join(config.dataDir, 'admin-token.shown'), '', { mode: 0o600 });
  const lines = [
    '',
    'Keel is running (embedded: PGlite, in-process events, benchmark gateway).',
    `  API:               ${url}`,
    `  OpenAPI:           ${url}/openapi.json`,
    `  Metrics:           ${url}/metrics`,
    `  Benchmark gateway: ${keel.gatewayUrl}`,
    `  Data directory:    ${config.dataDir}`,
    '',
    `Demo merchant ${demo.id}`,
    `  secret key:        ${demo.secret_key}`,
    `  publishable key:   ${demo.publishable_key}`,
    showToken ? `  admin token:       ${keel.services.adminToken}  (shown once; kept in ${config.dataDir}/admin-token)` : '',
    '',
    'Try it:',
    `  curl -s ${url}/v1/payments -H "Authorization: Bearer ${demo.secret_key}" -H "Idempotency-Key: $(od -An -tx1 -N16 /dev/urandom | tr -d ' \\n')" \\`,
    `    -H "Content-Type: application/json" -d '{"amount":15000,"currency":"KRW","order_id":"ord_'$(date +%s)'","confirm":true,` +
      `"payment_method":{"type":"card","card":{"number":"4242424242424242","exp_month":12,"exp_year":2034,"cvc":"123"}}}'`,
    '',
  ];
  console.log(lines.filter((line, index) => line !== '' || lines[index - 1] !== '').join('\n'));
}

/** The demo merchant's keys live in the data directory so every embedded start can print them. */
async function demoMerchant(keel: Keel, config: KeelConfig): Promise<CreatedMerchant> {
  const path = join(config.dataDir, 'demo-merchant.json');
  if (existsSync(path)) return JSON.parse(readFileSync(path, 'utf8')) as CreatedMerchant;
  const created = await createMerchant(keel.database.db, keel.services.deps.cipher, { name: 'Demo Shop', brandName: 'Demo Pay', country: 'KR' });
  writeFileSync(path, JSON.stringify(created), { mode: 0o600 });
  return created;
}

function untilSignal(): Promise<void> {
  return new Promise((resolve) => {
    process.once('SIGINT', () => resolve());
    process.once('SIGTERM', () => resolve());
  });
}

await program.parseAsync(process.argv).catch((error: unknown) => {
  // A refusal to start (a missing key, a taken port) is said in one line; the stack only at debug level.
  console.error(`keel: ${error instanceof Error ? error.message : String(error)}`);
  if (process.env['KEEL_LOG_LEVEL'] === 'debug' && error instanceof Error) console.error(error.stack);
  process.exitCode = 1;
});

function positiveNumber(value: string, option: string): number {
  const parsed = Number(value);
  if (!Number.isFinite(parsed) || parsed <= 0) throw new InvalidArgumentError(`${option} must be a positive number`);
  return parsed;
}
