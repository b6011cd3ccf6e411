import type { Logger } from 'pino';
import type { Metrics } from '../observability/metrics.js';
import type { Connector, GatewayName, PartnerOutcome } from './connector.js';
import { PartnerHttpClient, type PartnerHttpOptions } from './http.js';
import { createStripeConnector } from './stripe/index.js';
import { createTossConnector } from './toss/index.js';

/**
 * The partners Keel can route to, each with its own HTTP agent and timeouts. Every call through the registry
 * is timed and logged by outcome (an approval, a decline, unreachable, unknown), never with its parameters.
 */
export interface GatewayRegistry {
  connector(name: GatewayName): Connector;
  close(): Promise<void>;
}

export interface GatewayRegistryOptions {
  readonly baseUrl: string;
  readonly http: Readonly<Record<GatewayName, PartnerHttpOptions>>;
  readonly logger: Logger;
  readonly metrics: Metrics;
}

export function createGatewayRegistry(options: GatewayRegistryOptions): GatewayRegistry {
  const clients = {
    toss: new PartnerHttpClient(options.baseUrl, options.http.toss),
    stripe: new PartnerHttpClient(options.baseUrl, options.http.stripe),
  };
  const connectors: Record<GatewayName, Connector> = {
    toss: instrument(createTossConnector(clients.toss), options),
    stripe: instrument(createStripeConnector(clients.stripe), options),
  };
  return {
    connector: (name) => connectors[name],
    close: async () => {
      await Promise.all([clients.toss.close(), clients.stripe.close()]);
    },
  };
}

function instrument(connector: Connector, options: GatewayRegistryOptions): Connector {
  const wrap =
    <A extends unknown[], T>(operation: string, call: (...args: A) => Promise<PartnerOutcome<T>>) =>
    async (...args: A): Promise<PartnerOutcome<T>> => {
      const started = performance.now();
      const outcome = await call(...args);
      const seconds = (performance.now() - started) / 1000;
      options.metrics.partnerCallDurationSeconds.observe({ gateway: connector.name, operation, outcome: outcome.kind }, seconds);
      const reason = outcome.kind === 'ok' ? undefined : outcome.kind === 'declined' ? outcome.code : outcome.reason;
      options.logger.info({ gateway: connector.name, operation, outcome: outcome.kind, reason, duration_ms: Math.round(seconds * 1000) }, 'partner call');
      return outcome;
    };
  return {
    name: connector.name,
    authorize: wrap('authorize', connector.authorize.bind(connector)),
    capture: wrap('capture', connector.capture.bind(connector)),
    cancel: wrap('cancel', connector.cancel.bind(connector)),
    refund: wrap('refund', connector.refund.bind(connector)),
    inquire: wrap('inquire', connector.inquire.bind(connector)),
    tokenize: wrap('tokenize', connector.tokenize.bind(connector)),
  };
}
