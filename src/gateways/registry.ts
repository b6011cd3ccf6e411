import { setTimeout as sleep } from 'node:timers/promises';
import { ExponentialBackoff, fullJitterGenerator, type IBackoff } from 'cockatiel';
import type { Logger } from 'pino';
import { currentContext } from '../observability/context.js';
import type { Metrics } from '../observability/metrics.js';
import type { ResourceRegistry } from '../resilience/resources.js';
import { isBulkheadRejection } from '../resilience/resources.js';
import { gatewayNames, type Connector, type GatewayName, type PartnerCallContext, type PartnerOutcome } from './connector.js';
import { PartnerHttpClient, type PartnerHttpOptions } from './http.js';
import { createStripeConnector } from './stripe/index.js';
import { createTossConnector } from './toss/index.js';

/**
 * The partners Keel can route to, each with its own HTTP agent and timeouts, once for test merchants and once
 * for live ones: a call goes to the live URL exactly when its context says `livemode`, so a live merchant's
 * call never reaches the benchmark gateway. Every call goes through the resource's circuit breaker and
 * bulkhead (`partner:host:port:country`), is retried only when it provably was not sent (capped exponential
 * backoff with full jitter, inside the request's deadline), and is timed and logged by outcome, never with its
 * parameters.
 */
export interface GatewayRegistry {
  connector(name: GatewayName): Connector;
  /** The resource id a call for this partner, mode and country is protected under. */
  resourceId(name: GatewayName, country: string, livemode?: boolean): string;
  close(): Promise<void>;
}

/** Each partner's base URL, for test merchants and for live ones. */
export interface PartnerUrls {
  readonly test: Readonly<Record<GatewayName, string>>;
  readonly live: Readonly<Record<GatewayName, string>>;
}

export function partnerUrl(urls: PartnerUrls, gateway: GatewayName, livemode: boolean): string {
  return (livemode ? urls.live : urls.test)[gateway];
}

export interface RetryOptions {
  readonly retryCountMax: number;
  readonly initialDelayMs: number;
  readonly maxDelayMs: number;
}

export const retryDefaults: RetryOptions = { retryCountMax: 2, initialDelayMs: 50, maxDelayMs: 1_000 };

export interface GatewayRegistryOptions {
  readonly baseUrls: PartnerUrls;
  readonly http: Readonly<Record<GatewayName, PartnerHttpOptions>>;
  readonly resources: ResourceRegistry;
  readonly halfOpenReadTimeoutMs: number;
  readonly retry: RetryOptions;
  readonly logger: Logger;
  readonly metrics: Metrics;
}

const connectorFactories: Record<GatewayName, (client: PartnerHttpClient) => Connector> = {
  toss: createTossConnector,
  stripe: createStripeConnector,
};

export function createGatewayRegistry(options: GatewayRegistryOptions): GatewayRegistry {
  const clients: Record<'test' | 'live', Record<GatewayName, PartnerHttpClient>> = {
    test: { toss: new PartnerHttpClient(options.baseUrls.test.toss, options.http.toss), stripe: new PartnerHttpClient(options.baseUrls.test.stripe, options.http.stripe) },
    live: { toss: new PartnerHttpClient(options.baseUrls.live.toss, options.http.toss), stripe: new PartnerHttpClient(options.baseUrls.live.stripe, options.http.stripe) },
  };
  const resourceOf = (name: GatewayName, livemode: boolean) => `${name}:${clients[livemode ? 'live' : 'test'][name].hostPort}`;
  const protectedConnector = (name: GatewayName, livemode: boolean) =>
    protect(connectorFactories[name](clients[livemode ? 'live' : 'test'][name]), resourceOf(name, livemode), options);
  const connectors = Object.fromEntries(
    gatewayNames.map((name) => [name, byMode(protectedConnector(name, false), protectedConnector(name, true))]),
  ) as Record<GatewayName, Connector>;
  return {
    connector: (name) => connectors[name],
    resourceId: (name, country, livemode = false) => `${resourceOf(name, livemode)}:${country}`,
    close: async () => {
      await Promise.all(Object.values(clients).flatMap((byName) => Object.values(byName).map((client) => client.close())));
    },
  };
}

/** One connector that sends each call to the test or the live partner, as the call's context says. */
function byMode(test: Connector, live: Connector): Connector {
  const pick = (context: PartnerCallContext) => (context.livemode ? live : test);
  return {
    name: test.name,
    supportsCurrency: test.supportsCurrency.bind(test),
    idempotencyKeyRetentionMs: test.idempotencyKeyRetentionMs,
    authorize: (context, request) => pick(context).authorize(context, request),
    capture: (context, request) => pick(context).capture(context, request),
    cancel: (context, request) => pick(context).cancel(context, request),
    refund: (context, request) => pick(context).refund(context, request),
    inquire: (context, request) => pick(context).inquire(context, request),
    tokenize: (context, request) => pick(context).tokenize(context, request),
    detach: (context, request) => pick(context).detach(context, request),
  };
}

/** Outcomes that say the resource is unhealthy. A decline or a 4xx rejection is a healthy partner's answer. */
function countsAsError(outcome: PartnerOutcome<unknown>): boolean {
  return outcome.kind === 'unknown' || outcome.kind === 'unreachable';
}

function protect(connector: Connector, partnerResource: string, options: GatewayRegistryOptions): Connector {
  const backoff = new ExponentialBackoff({ generator: fullJitterGenerator, initialDelay: options.retry.initialDelayMs, maxDelay: options.retry.maxDelayMs });

  const guarded =
    <R, T>(operation: string, call: (context: PartnerCallContext, request: R) => Promise<PartnerOutcome<T>>) =>
    async (context: PartnerCallContext, request: R): Promise<PartnerOutcome<T>> => {
      const resource = `${partnerResource}:${context.country}`;
      const { breaker, bulkhead } = options.resources.get(resource, connector.name);
      let delay: IBackoff<unknown> | undefined;
      for (let retry = 0; ; retry += 1) {
        const permit = breaker.acquire();
        if (!permit.allowed) return refused(operation, context.country, 'breaker_open', { kind: 'unreachable', reason: 'circuit breaker open', retryAfterMs: permit.retryAfterMs });
        const callContext = permit.halfOpen ? { ...context, readTimeoutMs: options.halfOpenReadTimeoutMs } : context;
        const started = performance.now();
        let outcome: PartnerOutcome<T>;
        try {
          outcome = await bulkhead.execute(() => call(callContext, request));
        } catch (error) {
          if (!isBulkheadRejection(error)) throw error;
          return refused(operation, context.country, 'bulkhead_full', { kind: 'unreachable', reason: 'bulkhead full', retryAfterMs: 1_000 });
        }
        if (countsAsError(outcome)) breaker.recordError();
        else breaker.recordSuccess();
        observe(operation, context.country, outcome, performance.now() - started);
        if (outcome.kind !== 'unreachable' || retry >= options.retry.retryCountMax) return outcome;
        delay = delay === undefined ? backoff.next() : delay.next(undefined);
        const deadlineAt = currentContext()?.deadlineAt;
        if (deadlineAt !== undefined && Date.now() + delay.duration >= deadlineAt) return outcome;
        await sleep(delay.duration);
      }
    };

  /** A call refused before anything was sent is counted apart: it is not a partner call and has no latency. */
  function refused<T>(operation: string, country: string, reason: 'breaker_open' | 'bulkhead_full', outcome: PartnerOutcome<T>): PartnerOutcome<T> {
    options.metrics.partnerCallsRefused.inc({ gateway: connector.name, country, operation, reason });
    options.logger.info({ gateway: connector.name, operation, outcome: outcome.kind, reason }, 'partner call refused before sending');
    return outcome;
  }

  function observe<T>(operation: string, country: string, outcome: PartnerOutcome<T>, durationMs: number): PartnerOutcome<T> {
    const timing = currentContext()?.timing;
    if (timing !== undefined) timing.partnerMs += durationMs;
    options.metrics.partnerCallDurationSeconds.observe({ gateway: connector.name, country, operation, outcome: outcome.kind }, durationMs / 1000);
    const reason = outcome.kind === 'ok' ? undefined : outcome.kind === 'declined' ? outcome.code : outcome.reason;
    options.logger.info({ gateway: connector.name, operation, outcome: outcome.kind, reason, duration_ms: Math.round(durationMs) }, 'partner call');
    return outcome;
  }

  return {
    name: connector.name,
    supportsCurrency: connector.supportsCurrency.bind(connector),
    idempotencyKeyRetentionMs: connector.idempotencyKeyRetentionMs,
    authorize: guarded('authorize', connector.authorize.bind(connector)),
    capture: guarded('capture', connector.capture.bind(connector)),
    cancel: guarded('cancel', connector.cancel.bind(connector)),
    refund: guarded('refund', connector.refund.bind(connector)),
    inquire: guarded('inquire', connector.inquire.bind(connector)),
    tokenize: guarded('tokenize', connector.tokenize.bind(connector)),
    detach: guarded('detach', connector.detach.bind(connector)),
  };
}
