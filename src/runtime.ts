import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync, existsSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { join } from 'node:path';
import type { DestinationStream } from 'pino';
import type { KeelConfig } from './config.js';
import { gatewayNames, type GatewayName } from './gateways/connector.js';
import type { PartnerHttpOptions } from './gateways/http.js';
import { createGatewayRegistry, retryDefaults, type PartnerUrls } from './gateways/registry.js';
import { registerResourceMetrics, ResourceRegistry } from './resilience/resources.js';
import { createMemoryBus, type EventBus } from './events/bus.js';
import { createJetStreamBus, eventNamespace, streamNameOf } from './events/bus-jetstream.js';
import { relayOnce, runRelay } from './events/relay.js';
import { projectionConsumer, projectionsConsumer, rebuildProjections } from './reports/projection.js';
import { DeliveryScheduler, createDeliveryAgent, webhookConsumer } from './webhooks/webhooks.js';
import { ApiRateLimiter } from './http/rate-limit.js';
import { ShopperLimits } from './brandpay/shopper-limits.js';
import { createStoredMethods } from './brandpay/payment-methods.js';
import { cancelUnconfirmed } from './brandpay/unconfirmed.js';
import { Redis } from 'ioredis';
import { buildApp, type KeelApp, type KeelServices } from './http/app.js';
import { registerBrandPayRoutes } from './brandpay/routes.js';
import { registerCheckoutRoutes } from './brandpay/checkout-routes.js';
import { registerQueueRoutes } from './brandpay/queue-routes.js';
import { CapacityMeter } from './queue/capacity.js';
import { CheckoutQueue } from './queue/checkout-queue.js';
import { MemoryQueueStore, RedisQueueStore } from './queue/store.js';
import { registerLedgerRoutes } from './ledger/routes.js';
import { sendDueNotices } from './incidents/notices.js';
import { remindOverdue } from './incidents/postmortems.js';
import { incidentsDepsOf, registerIncidentRoutes } from './incidents/routes.js';
import { listenForSystemEntries } from './incidents/system.js';
import { Authenticator } from './merchants/auth.js';
import { registerMerchantRoutes } from './merchants/routes.js';
import { registerRefundRoutes } from './payments/refund-routes.js';
import { registerPaymentRoutes } from './payments/routes.js';
import { registerReportRoutes } from './reports/routes.js';
import { registerWebhookRoutes } from './webhooks/routes.js';
import { pruneExpired, type RetentionReport } from './storage/retention.js';
import { createLogger, type Logger } from './observability/logger.js';
import { createMetrics, registerPoolMetrics } from './observability/metrics.js';
import { registerBacklogMetrics } from './reports/backlog.js';
import { registerAnomalyMetrics, stuckAttemptsOf } from './reconciliation/anomalies.js';
import { registerAnomalyRoutes } from './reconciliation/routes.js';
import { reconcileYesterday, type RunRow } from './reconciliation/reconcile.js';
import { runCompleter } from './payments/jobs/completer.js';
import { runJanitor, type JanitorReport } from './payments/jobs/janitor.js';
import { FaultPoints, type PaymentsDeps } from './payments/operations/context.js';
import { startSimulator, type Simulator } from './simulator/server.js';
import { deploymentId, migrateToLatest, openDatabase, type Database } from './storage/database.js';
import { FieldCipher } from './storage/encryption.js';
import { prepareDataDir, wideDataDirAdvice } from './storage/data-dir.js';

/**
 * Wires one Keel process: database, partners (or the in-process benchmark gateway), the API and the
 * background jobs of its role. `npm start`, `keel serve`, the tests and the benchmark all build Keel here.
 */
export type Role = 'api' | 'worker' | 'all';

export interface KeelOptions {
  readonly config: KeelConfig;
  readonly role: Role;
  /** Tests: an in-memory PGlite instead of `dataDir` when no database URL is set. */
  readonly inMemory?: boolean;
  /** Tests: isolate in this PostgreSQL schema. */
  readonly databaseSchema?: string;
  /** Where log lines go (tests capture them). */
  readonly logDestination?: DestinationStream;
  /** Start the background job timers (off in tests, which run the jobs by hand). */
  readonly runJobTimers?: boolean;
  /** Port for the in-process benchmark gateway; 0 picks a free one. */
  readonly simulatorPort?: number;
  readonly simulatorAmbiguousDelayMs?: number;
  /** The in-process gateway's random seed (latency and injected errors); benchmarks vary it. */
  readonly simulatorSeed?: number;
  /** Told each step of starting (the CLI prints them: a first embedded start takes a while). */
  readonly progress?: (step: string) => void;
}

export interface KeelJobs {
  /** One round of the outbox relay; resolves to how many events it published. */
  relay(): Promise<number>;
  /** One round of webhook deliveries; resolves to how many it attempted. */
  webhooks(): Promise<number>;
  janitor(): Promise<JanitorReport>;
  completer(): Promise<{ completed: number }>;
  /** Prunes what retention allows, in bounded batches until none is due (`storage/retention.ts`). */
  retention(): Promise<RetentionReport>;
  /** Cancels Brand Pay authorizations the shop did not confirm in time (`brandpay/unconfirmed.ts`). */
  unconfirmed(): Promise<{ canceled: number }>;
  /** Past `KEEL_RECONCILE_AT`, reconciles the previous UTC day with each partner, once (`reconciliation/`). */
  reconcile(now?: Date): Promise<RunRow[]>;
  /** Sends the chat notices that are due to `KEEL_SLACK_WEBHOOK_URL`; resolves to how many were sent. */
  notices(): Promise<number>;
  /** Queues today's reminders of overdue post-mortems and action items, once per day; resolves to how many. */
  reminders(now?: Date): Promise<number>;
}

export interface Keel {
  readonly app: KeelApp;
  readonly services: KeelServices;
  readonly database: Database;
  readonly simulator: Simulator | undefined;
  readonly gatewayUrl: string;
  readonly jobs: KeelJobs;
  readonly faults: FaultPoints;
  readonly logger: Logger;
  readonly bus: EventBus;
  /** This deployment's id (its database's `deployment` row) and the namespace of its events and shared limits. */
  readonly deployment: string;
  readonly eventNamespace: string;
  /** This deployment's JetStream stream (`KEEL_EVENTS_<NAMESPACE>`); undefined with in-process events. */
  readonly eventStream: string | undefined;
  listen(): Promise<string>;
  close(): Promise<void>;
}

export const jobIntervalsMs = { completer: 10_000, retention: 60_000, webhooks: 1_000, unconfirmed: 60_000, reconcile: 60_000, notices: 5_000, reminders: 3_600_000 } as const;
/** How long a shutting-down process waits for its background jobs in flight. */
export const shutdownJobsWaitMs = 15_000;
export const completerBatchSizeMax = 100;
/** Projection events handled at once per worker: their effects commute, so order does not matter. */
export const projectionConcurrency = 8;
/** How far before the read model's last rebuild a newly created projections consumer starts replaying. */
export const projectionReplayMarginMs = 60_000;

export async function createKeel(options: KeelOptions): Promise<Keel> {
  const { config } = options;
  // A resumed key must never race a partner call still in flight from its first holder.
  assert.ok(
    config.idempotencyLockTimeoutMs > config.partnerHttp.connectTimeoutMs + config.partnerHttp.readTimeoutMs,
    'KEEL_IDEMPOTENCY_LOCK_TIMEOUT_MS must exceed the partner connect plus read timeout',
  );
  const logger = createLogger({ level: config.logLevel, ...(options.logDestination === undefined ? {} : { destination: options.logDestination }) });
  // Tests keep nothing on disk; every other start keeps its database (embedded) and its secrets in dataDir.
  const persistent = options.inMemory !== true;
  if (persistent) {
    const report = prepareDataDir(config.dataDir);
    if (report.wideEntries.length > 0) {
      logger.warn({ data_dir: config.dataDir, entries: report.wideEntries }, wideDataDirAdvice(config.dataDir));
    }
  }
  // Before the database is opened: a deployment without its shared key stops here.
  const cipher = cipherFor(config, persistent);
  const progress = options.progress ?? (() => undefined);
  // Only `all` (and `npm start`) runs the benchmark gateway in-process; the roles of a deployment name theirs.
  if (options.role !== 'all' && config.gatewayUrl === undefined && (config.partnerUrls.toss === undefined || config.partnerUrls.stripe === undefined)) {
    throw new Error(
      `--role ${options.role} needs the partners' URL for test merchants: set KEEL_GATEWAY_URL (or KEEL_PARTNER_TOSS_URL and KEEL_PARTNER_STRIPE_URL); only --role all runs the benchmark gateway in-process (run one alone with \`npx keel gateway-sim\`). See docs/scaling.md.`,
    );
  }
  const embeddedDir = persistent && config.databaseUrl === undefined ? join(config.dataDir, 'pgdata') : undefined;
  progress(
    embeddedDir === undefined
      ? 'connecting to the database'
      : existsSync(embeddedDir)
        ? `opening the embedded database in ${embeddedDir}`
        : `creating the embedded database in ${embeddedDir} (first start only; this takes a little while)`,
  );
  const database = await openDatabase({
    url: config.databaseUrl,
    dataDir: embeddedDir,
    schema: options.databaseSchema ?? config.databaseSchema,
    applicationName: options.databaseSchema ?? `keel_${options.role}`,
  });
  progress('applying migrations');
  const applied = await migrateToLatest(database);
  if (applied.length > 0) progress(`applied ${applied.length} migration${applied.length === 1 ? '' : 's'}`);
  const adminToken = config.adminToken ?? localSecret(config, persistent, 'admin-token', () => `adm_${randomBytes(24).toString('base64url')}`);

  let simulator: Simulator | undefined;
  if (config.gatewayUrl === undefined && options.role === 'all') {
    progress('starting the benchmark gateway');
    simulator = await startSimulator({
      port: options.simulatorPort ?? config.gatewaySimPort,
      ...(options.simulatorAmbiguousDelayMs === undefined ? {} : { ambiguousDelayMs: options.simulatorAmbiguousDelayMs }),
      ...(options.simulatorSeed === undefined ? {} : { seed: options.simulatorSeed }),
    });
  }
  // Without a gateway URL or an in-process gateway, both partners have URLs of their own (checked above).
  const gatewayUrl = config.gatewayUrl ?? simulator?.url ?? '';
  const partnerUrls: PartnerUrls = {
    test: { toss: config.partnerUrls.toss ?? gatewayUrl, stripe: config.partnerUrls.stripe ?? gatewayUrl },
    live: config.liveUrls,
  };
  if (simulator !== undefined) {
    try {
      assertLiveUrlsReal(config, simulator.url);
    } catch (error) {
      await simulator.close();
      await database.close();
      throw error;
    }
  }
  const metrics = createMetrics({ collectProcessMetrics: options.runJobTimers === true });
  registerBacklogMetrics(metrics.registry, database.db, logger);
  registerAnomalyMetrics(metrics.registry, database.db, logger);
  const http = Object.fromEntries(gatewayNames.map((name) => [name, partnerHttpFor(config, name)])) as Record<GatewayName, PartnerHttpOptions>;
  registerPoolMetrics(metrics.registry, () => database.pool());
  const resources = new ResourceRegistry(
    { breaker: config.breaker, breakerByPartner: config.breakerByPartner, bulkheadMax: config.bulkheadMax, bulkheadQueueMax: 0, onBreakerChange: (change) => metrics.signals.signal('breaker', change) },
    logger,
  );
  registerResourceMetrics(metrics.registry, resources);
  const gateways = createGatewayRegistry({
    baseUrls: partnerUrls,
    http,
    resources,
    halfOpenReadTimeoutMs: config.breaker.halfOpenReadTimeoutMs,
    retry: retryDefaults,
    logger,
    metrics,
  });
  const faults = new FaultPoints();
  const deps: PaymentsDeps = {
    db: database.db,
    statements: database.statements,
    gateways,
    cipher,
    logger,
    metrics,
    faults,
    consistencyWindowMs: config.partnerConsistencyWindowMs,
    storedMethods: createStoredMethods(database.db, cipher),
    stuckAttempts: stuckAttemptsOf(metrics.signals),
  };
  const redis = config.redisUrl === undefined ? undefined : connectRedis(config.redisUrl, logger);
  // Names this deployment's event stream, consumers and shared limits on engines other deployments may share:
  // from its database's identity unless KEEL_EVENTS_NAMESPACE says otherwise.
  const deployment = await deploymentId(database.db);
  const namespace = config.eventsNamespace ?? eventNamespace(deployment);
  const bus =
    config.natsUrl === undefined ? createMemoryBus() : await createJetStreamBus(config.natsUrl, logger, { namespace, deployment, maxAgeDays: config.retentionDays });
  const checkoutQueue = new CheckoutQueue({
    config: config.checkoutQueue,
    store: redis === undefined ? new MemoryQueueStore() : new RedisQueueStore(redis, namespace),
    meter: new CapacityMeter({
      metrics,
      limiter: () => services.concurrencyLimit.current,
      resources: () => resources.snapshot(),
    }),
    instance: `${options.role}_${randomBytes(6).toString('hex')}`,
    registry: metrics.registry,
    signals: metrics.signals,
    cipher,
    logger,
  });
  const services: KeelServices = {
    checkoutQueue,
    config,
    database,
    deps,
    resources,
    logger,
    adminToken,
    rateLimiter: new ApiRateLimiter(redis),
    shopperLimits: new ShopperLimits(redis, namespace),
    partnerUrls,
    concurrencyLimit: { current: undefined },
    authenticator: new Authenticator(database.db, cipher),
    readiness: async () => {
      const checks: Record<string, string> = { database: await database.ping().then(() => 'ok', (error: unknown) => String(error)) };
      if (redis !== undefined) checks['redis'] = await redis.ping().then(() => 'ok', (error: unknown) => String(error));
      if (config.natsUrl !== undefined) checks['nats'] = await bus.ping().then(() => 'ok', (error: unknown) => String(error));
      return checks;
    },
  };
  // Every role answers /healthz, /readyz, /metrics (and /v1/resilience); the worker serves nothing else.
  const app = await buildApp(services, options.role === 'worker' ? [] : [
    registerPaymentRoutes,
    registerRefundRoutes,
    registerMerchantRoutes,
    registerBrandPayRoutes,
    registerCheckoutRoutes,
    registerQueueRoutes,
    registerWebhookRoutes,
    registerLedgerRoutes,
    registerReportRoutes,
    registerAnomalyRoutes,
    registerIncidentRoutes,
  ]);
  const relayHolder = `relay_${randomBytes(8).toString('hex')}`;
  const deliveryAgent = createDeliveryAgent({ live: false });
  const liveDeliveryAgent = createDeliveryAgent({ live: true });
  const deliveries = new DeliveryScheduler({ db: database.db, cipher, logger, agent: deliveryAgent, liveAgent: liveDeliveryAgent });
  const jobs: KeelJobs = {
    relay: () => relayOnce(database.db, bus, relayHolder),
    webhooks: () => deliveries.runOnce(),
    janitor: () => runJanitor(deps),
    completer: () => runCompleter(deps, { abandonedAfterMs: config.completerAbandonedAfterMs, batchSizeMax: completerBatchSizeMax }),
    retention: () => pruneExpired(database.db, config),
    unconfirmed: () => cancelUnconfirmed(deps, config.brandpayConfirmTimeoutMinutes * 60_000),
    reconcile: (now) => reconcileYesterday({ db: database.db, cipher, logger, gateways, partnerUrls, payments: deps }, config.reconcileAt, now),
    notices: () => (config.slackWebhookUrl === undefined ? Promise.resolve(0) : sendDueNotices(database.db, config.slackWebhookUrl, logger)),
    reminders: (now) => (config.slackWebhookUrl === undefined ? Promise.resolve(0) : remindOverdue(database.db, now)),
  };
  const stopSystemEntries = listenForSystemEntries(metrics.signals, incidentsDepsOf(services), logger);
  // Every API instance advances the queues it shares and publishes its capacity; tests tick by hand.
  if (options.runJobTimers === true && options.role !== 'worker') checkoutQueue.start();
  const timers: NodeJS.Timeout[] = [];
  const relayStop = new AbortController();
  const inFlightJobs = new Set<Promise<unknown>>();
  // Workers consume events; the API role only writes them.
  if (options.role !== 'api') {
    progress('starting the event consumers');
    // A read model met for the first time (a new deployment, or an upgrade that adds it) is built from the outbox.
    const built = await rebuildProjections(database.db, logger, { onlyIfNeverBuilt: true });
    await bus.subscribe('webhooks', webhookConsumer(database.db));
    // A projections consumer created now replays the stream from a little before the model's last rebuild, so
    // an event another worker published meanwhile is not missed (what the rebuild counted, the inbox skips).
    await bus.subscribe(projectionConsumer, projectionsConsumer(database, logger), {
      concurrency: projectionConcurrency,
      startAt: new Date(built.rebuiltAt.getTime() - projectionReplayMarginMs),
    });
  }
  if (options.runJobTimers === true && options.role !== 'api') {
    const every = (name: string, intervalMs: number, job: () => Promise<unknown>) => {
      let running = false;
      const timer = setInterval(() => {
        if (running) return;
        running = true;
        const run = job()
          .catch((error: unknown) => logger.error({ err: error, job: name }, 'background job failed'))
          .finally(() => {
            running = false;
            inFlightJobs.delete(run);
          });
        inFlightJobs.add(run);
      }, intervalMs);
      timer.unref();
      timers.push(timer);
    };
    every('janitor', config.janitorIntervalMs, jobs.janitor);
    every('completer', jobIntervalsMs.completer, jobs.completer);
    every('retention', jobIntervalsMs.retention, jobs.retention);
    every('unconfirmed', jobIntervalsMs.unconfirmed, jobs.unconfirmed);
    every('reconcile', jobIntervalsMs.reconcile, () => jobs.reconcile());
    every('notices', jobIntervalsMs.notices, jobs.notices);
    every('reminders', jobIntervalsMs.reminders, () => jobs.reminders());
    // Each tick starts endpoints' tasks and returns: no endpoint waits for another's deliveries.
    every('webhooks', jobIntervalsMs.webhooks, () => deliveries.tick());
    const relay = runRelay(database.db, bus, relayHolder, logger, relayStop.signal);
    inFlightJobs.add(relay);
  }

  return {
    app,
    services,
    database,
    simulator,
    gatewayUrl,
    jobs,
    faults,
    logger,
    listen: () => app.listen({ port: config.port, host: config.host }),
    bus,
    deployment,
    eventNamespace: namespace,
    eventStream: config.natsUrl === undefined ? undefined : streamNameOf(namespace),
    close: async () => {
      // Stop taking work, let requests and jobs in flight finish (within a bound), then close the engines.
      relayStop.abort();
      stopSystemEntries();
      checkoutQueue.stop();
      for (const timer of timers) clearInterval(timer);
      await app.close();
      await within(Promise.allSettled([...inFlightJobs]), shutdownJobsWaitMs);
      await gateways.close();
      await bus.close();
      await within(deliveries.drain(), shutdownJobsWaitMs);
      await deliveryAgent.close();
      await liveDeliveryAgent.close();
      await simulator?.close();
      await database.close();
      redis?.disconnect();
      logger.flush();
    },
  };
}

/** Live merchants never talk to the benchmark gateway: a live URL that points at the in-process one is refused. */
function assertLiveUrlsReal(config: KeelConfig, simulatorUrl: string): void {
  const simulator = new URL(simulatorUrl);
  for (const gateway of gatewayNames) {
    const live = new URL(config.liveUrls[gateway]);
    const loopback = (host: string) => host === 'localhost' || host === '127.0.0.1' || host === '[::1]';
    if (live.port === simulator.port && (live.hostname === simulator.hostname || (loopback(live.hostname) && loopback(simulator.hostname)))) {
      throw new Error(`KEEL_LIVE_${gateway.toUpperCase()}_URL points at the built-in benchmark gateway (${simulatorUrl}); live merchants talk only to the partner's real API`);
    }
  }
}

/**
 * Waits for `work`, at most `ms`. The bound's timer is cleared as soon as the work ends, so an idle process
 * exits at once instead of waiting out the bound.
 */
async function within(work: Promise<unknown>, ms: number): Promise<void> {
  const bound = new AbortController();
  await Promise.race([work, sleep(ms, undefined, { signal: bound.signal }).catch(() => undefined)]);
  bound.abort();
}

/**
 * Redis for shared limits. Commands fail at once while it is down (no offline queue), and the rate limiter
 * falls back to its in-memory insurance, so Redis never holds up a payment.
 */
function connectRedis(url: string, logger: Logger): Redis {
  const redis = new Redis(url, { enableOfflineQueue: false, maxRetriesPerRequest: 1, connectTimeout: 1_000, commandTimeout: 500 });
  redis.on('error', (error: Error) => logger.warn({ err_message: error.message }, 'redis unavailable'));
  return redis;
}

/** Per-partner timeouts: `KEEL_PARTNER_TOSS_READ_TIMEOUT_MS` and the like override the shared defaults. */
function partnerHttpFor(config: KeelConfig, name: GatewayName): PartnerHttpOptions {
  const env = process.env;
  const read = (suffix: string, fallback: number) => {
    const value = env[`KEEL_PARTNER_${name.toUpperCase()}_${suffix}`];
    return value === undefined || value === '' ? fallback : Number(value);
  };
  return {
    connectTimeoutMs: read('CONNECT_TIMEOUT_MS', config.partnerHttp.connectTimeoutMs),
    readTimeoutMs: read('READ_TIMEOUT_MS', config.partnerHttp.readTimeoutMs),
    connectionsMax: read('CONNECTIONS_MAX', config.partnerHttp.connectionsMax),
  };
}

/**
 * The field cipher from `KEEL_ENCRYPTION_KEY`, or, embedded, from the key generated into the data directory
 * on first start (which must exist). Refuses a deployment on a shared database without the shared key.
 */
export function cipherFor(config: KeelConfig, persistent = true): FieldCipher {
  assertSharedKey(config, persistent);
  return FieldCipher.fromSecret(config.encryptionKey ?? localSecret(config, persistent, 'encryption-key', FieldCipher.generateSecret));
}

function assertSharedKey(config: KeelConfig, persistent: boolean): void {
  if (!persistent || config.databaseUrl === undefined || config.encryptionKey !== undefined) return;
  // A key generated here would be this machine's alone: another instance could not read what this one sealed.
  throw new Error('KEEL_ENCRYPTION_KEY is required with KEEL_DATABASE_URL: every instance must share one key (64 hex digits; e.g. `openssl rand -hex 32`). See docs/security.md.');
}

/** A secret kept in the data directory on first embedded start (or per process when nothing persists). */
function localSecret(config: KeelConfig, persistent: boolean, name: string, generate: () => string): string {
  if (!persistent) return generate();
  const path = join(config.dataDir, name);
  if (existsSync(path)) return readFileSync(path, 'utf8').trim();
  const value = generate();
  writeFileSync(path, `${value}\n`, { mode: 0o600 });
  return value;
}
