import { randomUUID } from 'node:crypto';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import fastifySwagger from '@fastify/swagger';
import { TypeBoxValidatorCompiler, type TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import Fastify, { LogController, type FastifyError, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import type { KeelConfig } from '../config.js';
import type { PartnerUrls } from '../gateways/registry.js';
import { KeelError, isKeelError } from '../errors.js';
import { correlationIdFrom, runWithContext } from '../observability/context.js';
import type { Authenticated } from '../merchants/merchants.js';
import type { PaymentsDeps } from '../payments/operations/context.js';
import type { MerchantContext } from '../merchants/types.js';
import { errorEnvelope } from './envelope.js';
import type { ResourceRegistry } from '../resilience/resources.js';
import type { ApiRateLimiter } from './rate-limit.js';
import type { ShopperLimits } from '../brandpay/shopper-limits.js';
import type { AdaptiveConcurrencyLimit } from '../resilience/adaptive-limit.js';
import { admittedTicket, type CheckoutQueue } from '../queue/checkout-queue.js';
import { registerShedding } from './shedding.js';
import { assertSafeInput } from './input-guard.js';
import type { Database } from '../storage/database.js';
import { isTransientDatabaseError } from '../storage/database.js';
import { checkAdminToken } from './auth.js';
import { registerHealthRoutes } from './routes/health.js';
import { registerResilienceRoutes } from './routes/resilience.js';

/**
 * The HTTP kernel: builds Keel's Fastify app without listening, so tests (`app.inject`), the CLI and the
 * benchmark share it. It owns what every route shares (request context, authentication through the given
 * authenticator, rate limits, shedding, the error envelope, OpenAPI); each feature module registers its own
 * routes, which the composition root (`runtime.ts`) hands in. Routes are thin: they validate, authenticate, run
 * an operation under its idempotency key and return API objects.
 */
export interface KeelServices {
  readonly config: KeelConfig;
  readonly database: Database;
  readonly deps: PaymentsDeps;
  readonly resources: ResourceRegistry;
  readonly logger: Logger;
  readonly adminToken: string;
  readonly rateLimiter: ApiRateLimiter;
  /** Brand Pay velocity limits: PIN attempts and new payment methods (shared through Redis when it is configured). */
  readonly shopperLimits: ShopperLimits;
  /** Each partner's base URL (settlement reports). */
  readonly partnerUrls: PartnerUrls;
  /** The API's adaptive concurrency limit, once the app is built (the benchmark and tests read it). */
  readonly concurrencyLimit: { current: AdaptiveConcurrencyLimit | undefined };
  /** The checkout queue of the hosted page and of `POST /v1/queue_tickets` (queue/). */
  readonly checkoutQueue: CheckoutQueue;
  /** Checks every engine this process depends on; `/readyz` reports each. */
  readonly readiness: () => Promise<Record<string, 'ok' | string>>;
  /** Finds the merchant an API key belongs to (merchants own keys); refuses with the catalogue's errors. */
  readonly authenticator: { authenticate(header: string | undefined, allowPublishable: boolean): Promise<Authenticated>; forgetMerchant(merchantId: string): void };
}

/** A feature module's routes, registered on the app the kernel builds. */
export type RouteModule = (app: KeelApp, services: KeelServices) => void;

export type KeelApp = FastifyInstance<Server, IncomingMessage, ServerResponse, Logger, TypeBoxTypeProvider>;

declare module 'fastify' {
  interface FastifyRequest {
    correlationId: string;
    keelDeadlineAt: number;
    keelTiming: { partnerMs: number };
    /** The merchant the API key belongs to; set for routes with `config.auth`. */
    merchant: MerchantContext;
  }
  interface FastifyContextConfig {
    /** Which credential opens the route: secret keys only, publishable keys too, or the operator token. */
    auth?: 'secret' | 'publishable' | 'operator';
    /** New work refused at the limit is decided once the body is parsed (an admitted `queue_ticket` lets it in). */
    admitAfterBody?: boolean;
  }
}

interface RawWithCorrelation extends IncomingMessage {
  keelCorrelationId?: string;
}

const routesByApp = new WeakMap<KeelApp, readonly string[]>();

/** Every route the app registered, as `METHOD /path/{param}` (the API reference is checked against it). */
export function registeredRoutes(app: KeelApp): readonly string[] {
  return routesByApp.get(app) ?? [];
}

/**
 * One log line per request, written when it ends — its method, url, status, duration and time at the partners —
 * instead of Fastify's two (one as it starts, one as it ends).
 */
class RequestLog extends LogController {
  override incomingRequest(): void {
    // Nothing as a request starts: its one line is written when it ends.
  }

  override requestCompleted(error: Error | null | undefined, request: FastifyRequest, reply: FastifyReply): void {
    const line = {
      method: request.method,
      url: request.url,
      status: reply.statusCode,
      duration_ms: Math.round(reply.elapsedTime * 10) / 10,
      partner_ms: Math.round((request as FastifyRequest & { keelTiming?: { partnerMs: number } | null }).keelTiming?.partnerMs ?? 0),
      remote_address: request.ip,
    };
    if (error) reply.log.error({ ...line, err: error }, 'request errored');
    else reply.log.info(line, 'request');
  }
}

export async function buildApp(services: KeelServices, routeModules: readonly RouteModule[]): Promise<KeelApp> {
  const app = Fastify({
    loggerInstance: services.logger,
    bodyLimit: services.config.bodyBytesMax,
    // Off unless KEEL_TRUST_PROXY names the proxies: otherwise any client could choose its own IP.
    trustProxy: trustProxyOption(services.config.trustProxy),
    genReqId: (raw: RawWithCorrelation) => {
      raw.keelCorrelationId = correlationIdFrom(raw.headers['x-correlation-id']);
      return `req_${randomUUID().replaceAll('-', '')}`;
    },
    childLoggerFactory: (logger, bindings, options, raw) =>
      logger.child({ request_id: bindings.reqId, correlation_id: (raw as RawWithCorrelation).keelCorrelationId }, options),
    return503OnClosing: true,
    logController: new RequestLog(),
  }).withTypeProvider<TypeBoxTypeProvider>();
  app.setValidatorCompiler(TypeBoxValidatorCompiler);
  const routes: string[] = [];
  routesByApp.set(app, routes);
  app.addHook('onRoute', (route) => {
    for (const method of [route.method].flat()) if (method !== 'HEAD') routes.push(`${method} ${route.url.replace(/:([A-Za-z_]+)/g, '{$1}')}`);
  });
  app.decorateRequest('correlationId', '');
  app.decorateRequest('keelDeadlineAt', 0);
  app.decorateRequest('keelTiming', null as unknown as { partnerMs: number });
  app.decorateRequest('merchant', null as unknown as MerchantContext);

  await app.register(fastifySwagger, {
    openapi: {
      openapi: '3.1.0',
      info: { title: 'Keel API', version: '1.0.0', description: 'Self-hosted payments: payments, refunds, Brand Pay.' },
      components: {
        securitySchemes: { secretKey: { type: 'http', scheme: 'bearer' }, basicKey: { type: 'http', scheme: 'basic' } },
      },
      security: [{ secretKey: [] }, { basicKey: [] }],
    },
  });

  // Hooks with nothing to wait for take Fastify's callback form: no promise, no microtask, per request.
  app.addHook('onRequest', (request, reply, done) => {
    request.correlationId = (request.raw as RawWithCorrelation).keelCorrelationId ?? correlationIdFrom(undefined);
    request.keelDeadlineAt = Date.now() + services.config.requestDeadlineMs;
    request.keelTiming = { partnerMs: 0 };
    void reply.header('x-correlation-id', request.correlationId);
    void reply.header('request-id', request.id);
    done();
  });
  const shedding = await registerShedding(app, services.config.shedding, services.deps.metrics);
  services.concurrencyLimit.current = shedding.limiter;
  const { authenticator } = services;
  // Authentication and the rate limit run before the body is even parsed: a request that will be refused
  // costs no parsing, no validation and no transaction.
  app.addHook('onRequest', async (request, reply) => {
    const auth = request.routeOptions.config.auth;
    if (auth === undefined) return undefined;
    if (auth === 'operator') {
      // A refusal throws, as the API-key check does, and the error handler answers with it.
      checkAdminToken(request.headers.authorization, services.adminToken);
      return undefined;
    }
    const authenticated = await inContext(request, () => authenticator.authenticate(request.headers.authorization, auth === 'publishable'));
    request.merchant = authenticated.merchant;
    const policy = authenticated.merchant.rateLimit ?? services.config.rateLimit;
    const limit = await services.rateLimiter.check(authenticated.keyId, policy);
    void reply.header('ratelimit-limit', String(limit.limit));
    void reply.header('ratelimit-remaining', String(limit.remaining));
    void reply.header('ratelimit-reset', String(limit.resetSeconds));
    if (!limit.allowed) {
      return sendError(request, reply, new KeelError('rate_limited', `Too many requests for this API key; retry after ${limit.resetSeconds} s.`, { retryAfterSeconds: limit.resetSeconds }));
    }
    // Admission to the concurrency limit, fairly across merchants (shedding.ts).
    return shedding.admitTenant(request, reply, authenticated.merchant.id);
  });
  // Every value a route receives is checked before its schema and before any write (see input-guard.ts).
  app.addHook('preValidation', async (request, reply) => {
    assertSafeInput(request.body, '');
    assertSafeInput(request.query, 'querystring.');
    assertSafeInput(request.params, 'params.');
    if (!request.keelAdmissionDeferred) return undefined;
    // New work at the limit: a payment that carries an admitted queue ticket finishes a checkout the queue let in.
    request.keelAdmissionDeferred = false;
    const ticket = (request.body as { queue_ticket?: unknown } | undefined)?.queue_ticket;
    const admitted = ticket !== undefined && (await admittedTicket(services.checkoutQueue, ticket, request.merchant.id));
    return shedding.admitTenant(request, reply, request.merchant.id, admitted ? 'finish' : 'new');
  });
  app.addHook('onResponse', (request, reply, done) => {
    const labels = { method: request.method, route: request.routeOptions.url ?? 'unmatched', status_class: `${Math.floor(reply.statusCode / 100)}xx` };
    const { metrics } = services.deps;
    metrics.httpRequestDurationSeconds.observe(labels, reply.elapsedTime / 1000);
    metrics.httpRequestOwnDurationSeconds.observe(labels, Math.max(0, reply.elapsedTime - (request.keelTiming?.partnerMs ?? 0)) / 1000);
    done();
  });

  app.setErrorHandler((error: FastifyError, request, reply) => sendError(request, reply, toKeelError(error, request)));
  app.setNotFoundHandler((request, reply) => sendError(request, reply, new KeelError('route_not_found', `No route ${request.method} ${request.url.split('?')[0]}.`)));

  registerHealthRoutes(app, services);
  registerResilienceRoutes(app, services);
  for (const register of routeModules) register(app, services);
  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());
  return app;
}

/** Fastify's `trustProxy`: off, the nearest `n` hops, or proxy-addr's list of addresses and ranges. */
function trustProxyOption(setting: KeelConfig['trustProxy']): boolean | string[] | ((address: string, hop: number) => boolean) {
  if (setting === false) return false;
  if (typeof setting === 'number') return (_address: string, hop: number) => hop < setting;
  return [...setting];
}

/** Runs a handler with the request's correlation context, so logs, partner calls and SQL carry it. */
export function inContext<T>(request: FastifyRequest, work: () => Promise<T>): Promise<T> {
  const deadlineAt = request.keelDeadlineAt;
  return runWithContext({ correlationId: request.correlationId, requestId: request.id, deadlineAt, timing: request.keelTiming }, work);
}

export function sendError(request: FastifyRequest, reply: FastifyReply, error: KeelError): FastifyReply {
  if (error.retryAfterSeconds !== undefined) void reply.header('retry-after', String(error.retryAfterSeconds));
  return reply.status(error.status).send(errorBody(request, error));
}

export function errorBody(request: FastifyRequest, error: KeelError): Record<string, unknown> {
  return runWithContext({ correlationId: request.correlationId, requestId: request.id }, () => errorEnvelope(error));
}

/** Maps framework and infrastructure errors onto the catalogue; never echoes a body fragment back or to logs. */
function toKeelError(error: FastifyError, request: FastifyRequest): KeelError {
  if (isKeelError(error)) return error;
  if (error.validation !== undefined) return validationError(error);
  switch (error.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return new KeelError('body_too_large', 'The body is larger than the 64 KiB limit.');
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return new KeelError('media_type_unsupported', 'Send the body as application/json.');
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
      return new KeelError('body_malformed', 'The body is not valid JSON.');
    default:
      break;
  }
  if (error instanceof SyntaxError || error.statusCode === 400) return new KeelError('body_malformed', 'The body is not valid JSON.');
  if (isTransientDatabaseError(error)) {
    request.log.warn({ err_code: (error as { code?: string }).code }, 'database unavailable');
    return new KeelError('service_unavailable', 'Keel\'s database is unavailable; retry with the same idempotency key.', { retryAfterSeconds: 1 });
  }
  request.log.error({ err: error }, 'unhandled error');
  return new KeelError('internal_error', 'Keel failed unexpectedly; retry with the same idempotency key.');
}

type SchemaError = NonNullable<FastifyError['validation']>[number];

function validationError(error: FastifyError): KeelError {
  const errors = relevantErrors(error.validation ?? []);
  const context = error.validationContext ?? 'body';
  const prefix = context === 'body' ? '' : `${context}.`;
  const pathOf = (instancePath: string) => instancePath.split('/').filter((part) => part !== '');
  // TypeBox reports an unknown field as a `false` schema under additionalProperties, at the field's own path.
  const unknownField = errors.find((candidate) => candidate.keyword === 'boolean' && candidate.schemaPath.endsWith('/additionalProperties'));
  if (unknownField !== undefined) {
    const param = `${prefix}${pathOf(unknownField.instancePath).join('.')}`;
    return new KeelError('parameter_unknown', `Unknown parameter: ${param}.`, { param });
  }
  const first = errors[0];
  const params = (first?.params ?? {}) as Record<string, unknown>;
  const path = pathOf(first?.instancePath ?? '').join('.');
  const join = (name: unknown) => [path, typeof name === 'string' ? name : ''].filter((part) => part !== '').join('.');
  if (first?.keyword === 'additionalProperties') {
    const name = params['additionalProperty'] ?? (Array.isArray(params['additionalProperties']) ? params['additionalProperties'][0] : undefined);
    return new KeelError('parameter_unknown', `Unknown parameter: ${prefix}${join(name)}.`, { param: `${prefix}${join(name)}` });
  }
  if (first?.keyword === 'required') {
    const name = params['missingProperty'] ?? (Array.isArray(params['requiredProperties']) ? params['requiredProperties'][0] : undefined);
    return new KeelError('parameter_missing', `Missing required parameter: ${prefix}${join(name)}.`, { param: `${prefix}${join(name)}` });
  }
  if (first !== undefined && first.schemaPath.includes('/propertyNames')) {
    // A key's own rule (metadata keys are 1-40 characters): the object holding the key is the parameter.
    const ownerPath = first.keyword === 'propertyNames' ? first.instancePath : first.instancePath.slice(0, first.instancePath.lastIndexOf('/'));
    const owner = `${prefix}${pathOf(ownerPath).join('.')}` || context;
    return new KeelError('parameter_invalid', `Invalid parameter ${owner}: a key ${first.message ?? 'is invalid'}.`, { param: owner });
  }
  const param = `${prefix}${path}` || context;
  return new KeelError('parameter_invalid', `Invalid parameter ${param}: ${first?.message ?? 'invalid value'}.`, { param });
}

/**
 * Of a union's branches (a card or a bank account; a stored method's id or a new card), only those the value
 * chose speak: a branch whose `type` discriminator differs, or whose JSON type is not the value's, is dropped
 * with its errors, so a card missing its `cvc` is told about the `cvc`, not that `card` is unknown to bank
 * accounts. When every branch is ruled out, the discriminator's own error remains.
 */
function relevantErrors(errors: readonly SchemaError[]): readonly SchemaError[] {
  const ruledOut = new Set<string>();
  const discriminators: SchemaError[] = [];
  for (const candidate of errors) {
    const branch = /^(.*\/anyOf\/\d+)(\/properties\/type)?$/.exec(candidate.schemaPath);
    if (branch === null) continue;
    if ((candidate.keyword === 'const' && branch[2] !== undefined) || (candidate.keyword === 'type' && branch[2] === undefined)) {
      ruledOut.add(branch[1] as string);
      discriminators.push(candidate);
    }
  }
  const inBranch = (candidate: SchemaError, branch: string) => candidate.schemaPath === branch || candidate.schemaPath.startsWith(`${branch}/`);
  const kept = errors.filter((candidate) => candidate.keyword !== 'anyOf' && ![...ruledOut].some((branch) => inBranch(candidate, branch)));
  return kept.length > 0 ? kept : discriminators;
}
