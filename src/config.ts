import { isIP } from 'node:net';
import { gatewayNames, type GatewayName } from './gateways/connector.js';
import { partnerHttpDefaults, type PartnerHttpOptions } from './gateways/http.js';
import type { SheddingOptions } from './http/shedding.js';
import { adaptiveLimitDefaults } from './resilience/adaptive-limit.js';
import { breakerDefaults, type BreakerOptions } from './resilience/breaker.js';

/**
 * Keel's configuration, read once from the environment (see CONTRACT.md, "Configuration"). Every number has
 * a name and a default here; nothing else reads `process.env`.
 */
export interface KeelConfig {
  readonly port: number;
  readonly host: string;
  readonly databaseUrl: string | undefined;
  /** The PostgreSQL schema Keel's tables live in (created if missing); unset: the default search path. */
  readonly databaseSchema: string | undefined;
  readonly dataDir: string;
  readonly gatewayUrl: string | undefined;
  readonly gatewaySimPort: number;
  readonly natsUrl: string | undefined;
  /** Names this deployment's event stream, subjects and consumers; unset: derived from the database's identity. */
  readonly eventsNamespace: string | undefined;
  readonly redisUrl: string | undefined;
  readonly logLevel: string;
  readonly adminToken: string | undefined;
  readonly encryptionKey: string | undefined;
  readonly idempotencyTtlHours: number;
  /** A key locked longer than this is taken to be abandoned: a retry or the completer may resume it. */
  readonly idempotencyLockTimeoutMs: number;
  /** The completer finishes keys abandoned longer than this (later than a client's own retry would come). */
  readonly completerAbandonedAfterMs: number;
  readonly partnerHttp: PartnerHttpOptions;
  /**
   * The longest each partner's inquiries may lag behind its truth. A "no such charge" is trusted only from an
   * inquiry made this long after Keel last sent the request; before that it may be lag.
   */
  readonly partnerConsistencyWindowMs: { readonly toss: number; readonly stripe: number };
  readonly janitorIntervalMs: number;
  readonly bodyBytesMax: number;
  /** Per-partner base URLs for test merchants; absent: `gatewayUrl` (or the in-process gateway). */
  readonly partnerUrls: { readonly toss: string | undefined; readonly stripe: string | undefined };
  /** Per-partner base URLs for live merchants: the partners' production APIs unless set. */
  readonly liveUrls: { readonly toss: string; readonly stripe: string };
  /** Every partner's breaker, unless `breakerByPartner` changes its rate rule. */
  readonly breaker: BreakerOptions;
  /** A partner's own minimum calls and failure rate (`KEEL_PARTNER_TOSS_BREAKER_MIN_CALLS` and the like). */
  readonly breakerByPartner: Readonly<Partial<Record<GatewayName, Partial<BreakerOptions>>>>;
  /** Partner calls in flight per resource; beyond it calls are refused at once. */
  readonly bulkheadMax: number;
  /** A request's total budget: partner retries never wait past it. */
  readonly requestDeadlineMs: number;
  readonly shedding: SheddingOptions;
  /** The base URL shoppers' browsers reach Keel at (hosted page links, the SDK). */
  readonly publicUrl: string;
  /** Default API rate limit per key (a token bucket: `perSecond` refill, `burst` capacity). */
  readonly rateLimit: { readonly perSecond: number; readonly burst: number };
  /**
   * Which proxies in front of Keel may say who the client is (`X-Forwarded-For`): none (false), the nearest
   * `n` hops, or the listed addresses and CIDR ranges. Decides the client IP that shopper limits are keyed on.
   */
  readonly trustProxy: false | number | readonly string[];
  /** `HH:MM` UTC: when workers reconcile the previous UTC day with every partner (`KEEL_RECONCILE_AT`). */
  readonly reconcileAt: string;
  /** How long after a hosted-page approval an authorization the shop has not confirmed is canceled. */
  readonly brandpayConfirmTimeoutMinutes: number;
  /** Days that finished records (keys, published events, inbox entries, settled deliveries) are kept. */
  readonly retentionDays: number;
  /** Slack's signing secret for `POST /chatops/slack`; without it every chat request is refused (401). */
  readonly slackSigningSecret: string | undefined;
  /** A Slack incoming-webhook URL for incident notices and post-mortem reminders; none are sent without it. */
  readonly slackWebhookUrl: string | undefined;
  /** Days after an incident resolves that its post-mortem is due. */
  readonly postmortemDueDays: number;
  /** The checkout queue (`KEEL_CHECKOUT_QUEUE`, `KEEL_CHECKOUT_CAPACITY_PER_S`, `KEEL_QUEUE_ADMISSION_TTL_S`). */
  readonly checkoutQueue: CheckoutQueueConfig;
}

export interface CheckoutQueueConfig {
  /** `auto`: queue past the measured capacity (or `capacityPerS` when lower); `on`: past `capacityPerS`; `off`: never. */
  readonly mode: 'auto' | 'on' | 'off';
  /** Admissions per second per country; required for `on`. */
  readonly capacityPerS: number | undefined;
  /** Seconds an admission stays usable before it lapses. */
  readonly admissionTtlS: number;
}

function parseQueueMode(value: string | undefined): CheckoutQueueConfig['mode'] {
  if (value === undefined || value === '') return 'auto';
  if (value === 'auto' || value === 'on' || value === 'off') return value;
  throw new Error(`KEEL_CHECKOUT_QUEUE must be auto, on or off, got ${value}`);
}

function checkoutQueueConfig(env: NodeJS.ProcessEnv): CheckoutQueueConfig {
  const mode = parseQueueMode(env['KEEL_CHECKOUT_QUEUE']);
  const capacityPerS = parseCapacity(env['KEEL_CHECKOUT_CAPACITY_PER_S']);
  if (mode === 'on' && capacityPerS === undefined) throw new Error('KEEL_CHECKOUT_QUEUE=on needs KEEL_CHECKOUT_CAPACITY_PER_S (admissions per second); auto measures it');
  return { mode, capacityPerS, admissionTtlS: positive(env['KEEL_QUEUE_ADMISSION_TTL_S'], 300, 'KEEL_QUEUE_ADMISSION_TTL_S') };
}

function parseCapacity(value: string | undefined): number | undefined {
  if (value === undefined || value === '') return undefined;
  const parsed = Number(value);
  if (!Number.isFinite(parsed) || parsed <= 0 || parsed > 1_000_000) throw new Error(`KEEL_CHECKOUT_CAPACITY_PER_S must be a positive number of admissions per second, got ${value}`);
  return parsed;
}

const proxyNames = new Set(['loopback', 'linklocal', 'uniquelocal']);

/** `KEEL_TRUST_PROXY`: unset or `off` (default), a hop count, or a comma-separated list of addresses and CIDRs. */
export function parseTrustProxy(value: string | undefined): false | number | readonly string[] {
  if (value === undefined || value === '' || value === 'off' || value === 'false' || value === '0') return false;
  if (/^[0-9]+$/.test(value)) return Number(value);
  const entries = value.split(',').map((entry) => entry.trim()).filter((entry) => entry !== '');
  for (const entry of entries) {
    const [address, bits, extra] = entry.split('/');
    const family = isIP(address ?? '');
    const validBits = bits === undefined || (/^[0-9]+$/.test(bits) && Number(bits) <= (family === 6 ? 128 : 32));
    if (!proxyNames.has(entry) && (family === 0 || !validBits || extra !== undefined)) {
      throw new Error(`KEEL_TRUST_PROXY must be off, a hop count, or addresses and CIDR ranges separated by commas (got ${JSON.stringify(entry)}); trusting every hop ("true") would let any client choose its own IP`);
    }
  }
  return entries;
}

/**
 * Stripe documents that search lags by up to a minute, and up to an hour during outages; Toss documents no
 * bound, and may answer 404 while a charge is in flight, so Keel waits ten minutes before believing it.
 */
/** `KEEL_RETENTION_DAYS` when unset: operational records and the event stream keep 30 days. */
export const retentionDaysDefault = 30;

/** The partners' production API base URLs, which live merchants talk to unless `KEEL_LIVE_*_URL` says otherwise. */
export const liveUrlDefaults = { toss: 'https://api.tosspayments.com', stripe: 'https://api.stripe.com' } as const;

/** `KEEL_BRANDPAY_CONFIRM_TIMEOUT_MINUTES` when unset: an unconfirmed hosted-page authorization lives an hour. */
export const confirmTimeoutMinutesDefault = 60;

export const consistencyWindowDefaultsMs = { toss: 600_000, stripe: 3_600_000 } as const;

function integer(value: string | undefined, fallback: number, name: string): number {
  if (value === undefined || value === '') return fallback;
  const parsed = Number(value);
  if (!Number.isSafeInteger(parsed) || parsed < 0) throw new Error(`${name} must be a non-negative integer, got ${value}`);
  return parsed;
}

function positive(value: string | undefined, fallback: number, name: string): number {
  const parsed = integer(value, fallback, name);
  if (parsed < 1) throw new Error(`${name} must be at least 1, got ${value}`);
  return parsed;
}

function percent(value: string | undefined, fallback: number, name: string): number {
  const parsed = positive(value, fallback, name);
  if (parsed > 100) throw new Error(`${name} is a percentage (1-100), got ${value}`);
  return parsed;
}

function parseClock(value: string, name: string): string {
  const match = /^([01][0-9]|2[0-3]):([0-5][0-9])$/.exec(value);
  if (match === null) throw new Error(`${name} must be HH:MM (UTC, 00:00-23:59), got ${value}`);
  return value;
}

function optional(value: string | undefined): string | undefined {
  return value === undefined || value === '' ? undefined : value;
}

export function loadConfig(env: NodeJS.ProcessEnv = process.env): KeelConfig {
  return {
    port: integer(env['KEEL_PORT'], 4000, 'KEEL_PORT'),
    host: optional(env['KEEL_HOST']) ?? '127.0.0.1',
    databaseUrl: optional(env['KEEL_DATABASE_URL']),
    databaseSchema: optional(env['KEEL_DATABASE_SCHEMA']),
    dataDir: optional(env['KEEL_DATA_DIR']) ?? './.keel',
    gatewayUrl: optional(env['KEEL_GATEWAY_URL']),
    gatewaySimPort: integer(env['KEEL_GATEWAY_SIM_PORT'], 4100, 'KEEL_GATEWAY_SIM_PORT'),
    natsUrl: optional(env['KEEL_NATS_URL']),
    eventsNamespace: optional(env['KEEL_EVENTS_NAMESPACE']),
    redisUrl: optional(env['KEEL_REDIS_URL']),
    logLevel: optional(env['KEEL_LOG_LEVEL']) ?? 'info',
    adminToken: optional(env['KEEL_ADMIN_TOKEN']),
    encryptionKey: optional(env['KEEL_ENCRYPTION_KEY']),
    idempotencyTtlHours: integer(env['KEEL_IDEMPOTENCY_TTL_HOURS'], 24, 'KEEL_IDEMPOTENCY_TTL_HOURS'),
    idempotencyLockTimeoutMs: integer(env['KEEL_IDEMPOTENCY_LOCK_TIMEOUT_MS'], 30_000, 'KEEL_IDEMPOTENCY_LOCK_TIMEOUT_MS'),
    completerAbandonedAfterMs: integer(env['KEEL_COMPLETER_ABANDONED_AFTER_MS'], 300_000, 'KEEL_COMPLETER_ABANDONED_AFTER_MS'),
    partnerHttp: {
      connectTimeoutMs: integer(env['KEEL_PARTNER_CONNECT_TIMEOUT_MS'], partnerHttpDefaults.connectTimeoutMs, 'KEEL_PARTNER_CONNECT_TIMEOUT_MS'),
      readTimeoutMs: integer(env['KEEL_PARTNER_READ_TIMEOUT_MS'], partnerHttpDefaults.readTimeoutMs, 'KEEL_PARTNER_READ_TIMEOUT_MS'),
      connectionsMax: integer(env['KEEL_PARTNER_CONNECTIONS_MAX'], partnerHttpDefaults.connectionsMax, 'KEEL_PARTNER_CONNECTIONS_MAX'),
    },
    partnerConsistencyWindowMs: {
      toss: integer(env['KEEL_PARTNER_TOSS_CONSISTENCY_WINDOW_MS'] ?? env['KEEL_PARTNER_CONSISTENCY_WINDOW_MS'], consistencyWindowDefaultsMs.toss, 'KEEL_PARTNER_TOSS_CONSISTENCY_WINDOW_MS'),
      stripe: integer(env['KEEL_PARTNER_STRIPE_CONSISTENCY_WINDOW_MS'] ?? env['KEEL_PARTNER_CONSISTENCY_WINDOW_MS'], consistencyWindowDefaultsMs.stripe, 'KEEL_PARTNER_STRIPE_CONSISTENCY_WINDOW_MS'),
    },
    janitorIntervalMs: integer(env['KEEL_JANITOR_INTERVAL_MS'], 5_000, 'KEEL_JANITOR_INTERVAL_MS'),
    bodyBytesMax: 65_536,
    partnerUrls: { toss: optional(env['KEEL_PARTNER_TOSS_URL']), stripe: optional(env['KEEL_PARTNER_STRIPE_URL']) },
    liveUrls: { toss: optional(env['KEEL_LIVE_TOSS_URL']) ?? liveUrlDefaults.toss, stripe: optional(env['KEEL_LIVE_STRIPE_URL']) ?? liveUrlDefaults.stripe },
    breaker: {
      minimumCalls: positive(env['KEEL_BREAKER_MIN_CALLS'], breakerDefaults.minimumCalls, 'KEEL_BREAKER_MIN_CALLS'),
      failureRatePercent: percent(env['KEEL_BREAKER_FAILURE_RATE_PERCENT'], breakerDefaults.failureRatePercent, 'KEEL_BREAKER_FAILURE_RATE_PERCENT'),
      windowMs: positive(env['KEEL_BREAKER_WINDOW_MS'], breakerDefaults.windowMs, 'KEEL_BREAKER_WINDOW_MS'),
      errorTimeoutMs: integer(env['KEEL_BREAKER_OPEN_MS'], breakerDefaults.errorTimeoutMs, 'KEEL_BREAKER_OPEN_MS'),
      successThreshold: positive(env['KEEL_BREAKER_SUCCESS_THRESHOLD'], breakerDefaults.successThreshold, 'KEEL_BREAKER_SUCCESS_THRESHOLD'),
      halfOpenReadTimeoutMs: integer(env['KEEL_BREAKER_HALF_OPEN_READ_TIMEOUT_MS'], breakerDefaults.halfOpenReadTimeoutMs, 'KEEL_BREAKER_HALF_OPEN_READ_TIMEOUT_MS'),
    },
    breakerByPartner: Object.fromEntries(
      gatewayNames.map((name) => {
        const prefix = `KEEL_PARTNER_${name.toUpperCase()}_BREAKER_`;
        const minimumCalls = env[`${prefix}MIN_CALLS`];
        const failureRate = env[`${prefix}FAILURE_RATE_PERCENT`];
        return [
          name,
          {
            ...(optional(minimumCalls) === undefined ? {} : { minimumCalls: positive(minimumCalls, 1, `${prefix}MIN_CALLS`) }),
            ...(optional(failureRate) === undefined ? {} : { failureRatePercent: percent(failureRate, 1, `${prefix}FAILURE_RATE_PERCENT`) }),
          },
        ];
      }),
    ) as Record<GatewayName, Partial<BreakerOptions>>,
    // No more calls in flight than the partner agent has sockets: a call never waits inside undici.
    bulkheadMax: integer(env['KEEL_PARTNER_BULKHEAD_MAX'], partnerHttpDefaults.connectionsMax, 'KEEL_PARTNER_BULKHEAD_MAX'),
    requestDeadlineMs: integer(env['KEEL_REQUEST_DEADLINE_MS'], 15_000, 'KEEL_REQUEST_DEADLINE_MS'),
    publicUrl: (optional(env['KEEL_PUBLIC_URL']) ?? `http://${optional(env['KEEL_HOST']) ?? '127.0.0.1'}:${integer(env['KEEL_PORT'], 4000, 'KEEL_PORT')}`).replace(/\/+$/, ''),
    shedding: {
      enabled: (optional(env['KEEL_SHEDDING']) ?? 'on') !== 'off',
      limit: {
        ...adaptiveLimitDefaults,
        initialLimit: integer(env['KEEL_CONCURRENCY_LIMIT_INITIAL'], adaptiveLimitDefaults.initialLimit, 'KEEL_CONCURRENCY_LIMIT_INITIAL'),
        minLimit: integer(env['KEEL_CONCURRENCY_LIMIT_MIN'], adaptiveLimitDefaults.minLimit, 'KEEL_CONCURRENCY_LIMIT_MIN'),
        maxLimit: integer(env['KEEL_CONCURRENCY_LIMIT_MAX'], adaptiveLimitDefaults.maxLimit, 'KEEL_CONCURRENCY_LIMIT_MAX'),
      },
      maxEventLoopDelayMs: integer(env['KEEL_SHED_EVENT_LOOP_DELAY_MS'], 200, 'KEEL_SHED_EVENT_LOOP_DELAY_MS'),
      maxHeapShare: 0.9,
    },
    rateLimit: {
      perSecond: integer(env['KEEL_RATE_LIMIT_PER_SECOND'], 100, 'KEEL_RATE_LIMIT_PER_SECOND'),
      burst: integer(env['KEEL_RATE_LIMIT_BURST'], 200, 'KEEL_RATE_LIMIT_BURST'),
    },
    trustProxy: parseTrustProxy(optional(env['KEEL_TRUST_PROXY'])),
    reconcileAt: parseClock(optional(env['KEEL_RECONCILE_AT']) ?? '02:00', 'KEEL_RECONCILE_AT'),
    brandpayConfirmTimeoutMinutes: positive(env['KEEL_BRANDPAY_CONFIRM_TIMEOUT_MINUTES'], confirmTimeoutMinutesDefault, 'KEEL_BRANDPAY_CONFIRM_TIMEOUT_MINUTES'),
    retentionDays: Math.max(1, integer(env['KEEL_RETENTION_DAYS'], retentionDaysDefault, 'KEEL_RETENTION_DAYS')),
    slackSigningSecret: optional(env['KEEL_SLACK_SIGNING_SECRET']),
    slackWebhookUrl: optional(env['KEEL_SLACK_WEBHOOK_URL']),
    postmortemDueDays: positive(env['KEEL_POSTMORTEM_DUE_DAYS'], 7, 'KEEL_POSTMORTEM_DUE_DAYS'),
    checkoutQueue: checkoutQueueConfig(env),
  };
}
