import { createHash } from 'node:crypto';
import { setMaxListeners } from 'node:events';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { createRandom, sampleLatencyMs } from './latency.js';
import { applyDrift, recordUnmadeCharge } from './drift.js';
import { payoutDelayDaysMax, SimState, type FaultMode } from './model.js';
import * as stripe from './stripe.js';
import * as toss from './toss.js';
import type { SimAnswer, SimCall } from './toss.js';

/**
 * The benchmark gateway: a partner that speaks Toss Payments' and Stripe's wire formats, with a seeded
 * lognormal latency per country, a concurrency cap (429 beyond it), fault injection per country,
 * partner-side idempotency, status inquiry (lagging behind the truth by `inquiry_lag_ms`, as real search and
 * replicas do) and a settlement report. Effects happen on arrival and answers leave after the latency. Runs standalone (`keel gateway-sim`) or
 * inside Keel's process; either way it is a real HTTP server, so Keel's timeouts and sockets are exercised.
 */

export interface SimulatorOptions {
  readonly host?: string;
  readonly port?: number;
  readonly seed?: number;
  /** Requests in flight beyond this get 429 before any work. */
  readonly concurrencyMax?: number;
  /** How long the `4000000000000259` card's answer is held after charging. */
  readonly ambiguousDelayMs?: number;
  /** Upper bound on how long a `hang` fault holds one request. */
  readonly hangMaxMs?: number;
}

export interface Simulator {
  readonly url: string;
  readonly state: SimState;
  close(): Promise<void>;
}

const bodyBytesMax = 262_144;
type Route = (call: SimCall, match: RegExpExecArray) => SimAnswer;

const routes: readonly { method: string; pattern: RegExp; dialect: 'toss' | 'stripe'; handle: Route }[] = [
  { method: 'POST', pattern: /^\/v1\/billing\/authorizations\/card$/, dialect: 'toss', handle: (call) => toss.tossIssueBillingKey(call) },
  { method: 'POST', pattern: /^\/v1\/billing\/([^/]+)$/, dialect: 'toss', handle: (call, m) => toss.tossChargeBillingKey(call, decode(m[1])) },
  { method: 'DELETE', pattern: /^\/v1\/billing\/([^/]+)$/, dialect: 'toss', handle: (call, m) => toss.tossDeleteBillingKey(call, decode(m[1])) },
  { method: 'POST', pattern: /^\/v1\/payments\/([^/]+)\/cancel$/, dialect: 'toss', handle: (call, m) => toss.tossCancel(call, decode(m[1])) },
  { method: 'GET', pattern: /^\/v1\/payments\/orders\/([^/]+)$/, dialect: 'toss', handle: (call, m) => toss.tossGetPayment(call, { orderId: decode(m[1]) }) },
  { method: 'GET', pattern: /^\/v1\/payments\/([^/]+)$/, dialect: 'toss', handle: (call, m) => toss.tossGetPayment(call, { paymentKey: decode(m[1]) }) },
  { method: 'GET', pattern: /^\/v1\/settlements$/, dialect: 'toss', handle: (call) => toss.tossSettlements(call) },
  { method: 'POST', pattern: /^\/v1\/payment_intents$/, dialect: 'stripe', handle: (call) => stripe.stripeCreateIntent(call) },
  { method: 'GET', pattern: /^\/v1\/payment_intents\/search$/, dialect: 'stripe', handle: (call) => stripe.stripeSearchIntents(call) },
  { method: 'GET', pattern: /^\/v1\/payment_intents\/([^/]+)$/, dialect: 'stripe', handle: (call, m) => stripe.stripeGetIntent(call, decode(m[1])) },
  { method: 'POST', pattern: /^\/v1\/payment_intents\/([^/]+)\/capture$/, dialect: 'stripe', handle: (call, m) => stripe.stripeCapture(call, decode(m[1])) },
  { method: 'POST', pattern: /^\/v1\/payment_intents\/([^/]+)\/cancel$/, dialect: 'stripe', handle: (call, m) => stripe.stripeCancel(call, decode(m[1])) },
  { method: 'POST', pattern: /^\/v1\/refunds$/, dialect: 'stripe', handle: (call) => stripe.stripeRefund(call) },
  { method: 'GET', pattern: /^\/v1\/refunds$/, dialect: 'stripe', handle: (call) => stripe.stripeListRefunds(call) },
  { method: 'GET', pattern: /^\/v1\/balance_transactions$/, dialect: 'stripe', handle: (call) => stripe.stripeBalanceTransactions(call) },
  { method: 'POST', pattern: /^\/v1\/payment_methods$/, dialect: 'stripe', handle: (call) => stripe.stripeCreatePaymentMethod(call) },
  { method: 'POST', pattern: /^\/v1\/payment_methods\/([^/]+)\/detach$/, dialect: 'stripe', handle: (call, m) => stripe.stripeDetachPaymentMethod(call, decode(m[1])) },
];

function decode(segment: string | undefined): string {
  return decodeURIComponent(segment ?? '');
}

export async function startSimulator(options: SimulatorOptions = {}): Promise<Simulator> {
  const state = new SimState();
  const random = createRandom(options.seed ?? 42);
  const concurrencyMax = options.concurrencyMax ?? 512;
  const ambiguousDelayMs = options.ambiguousDelayMs ?? 6_000;
  const hangMaxMs = options.hangMaxMs ?? 60_000;
  const closing = new AbortController();
  // Every held request listens for the close; there may be thousands at once.
  setMaxListeners(0, closing.signal);
  let inFlight = 0;

  const server: Server = createServer((request, response) => {
    inFlight += 1;
    response.on('close', () => {
      inFlight -= 1;
    });
    handle(request, response).catch((error: unknown) => {
      if (!response.headersSent) send(response, { status: 500, body: { code: 'SIMULATOR_ERROR', message: String(error) } });
    });
  });

  async function handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const url = new URL(request.url ?? '/', 'http://sim');
    const raw = await readBody(request);
    if (url.pathname.startsWith('/__sim/')) return send(response, hook(request.method ?? 'GET', url, raw));
    const route = routes.find((candidate) => candidate.method === request.method && candidate.pattern.test(url.pathname));
    const dialect = route?.dialect ?? (request.headers['content-type']?.includes('form') ? 'stripe' : 'toss');
    if (inFlight > concurrencyMax) return send(response, refusal(dialect, 429, 'too many requests in flight'));
    const country = String(request.headers['keel-country'] ?? 'ZZ').toUpperCase();
    const fault = state.activeFault(country, Date.now());
    if (fault?.mode === 'outage') return send(response, refusal(dialect, 503, 'partner outage'));
    if (fault?.mode === 'errors' && random() < fault.rate) return send(response, refusal(dialect, 500, 'injected error'));
    if (fault?.mode === 'hang') {
      await sleep(Math.min(fault.until - Date.now(), hangMaxMs), undefined, { signal: closing.signal }).catch(() => undefined);
      return send(response, refusal(dialect, 504, 'partner hung'));
    }
    const model = state.latencyFor(country);
    const latencyMs = (model === undefined ? 0 : sampleLatencyMs(model, random)) + (fault?.mode === 'latency' ? fault.latencyMs : 0);
    // As real partners do, the effect is applied when the request arrives and the answer leaves after the
    // latency: a client that gives up waiting leaves behind a charge, capture, cancel or refund it never heard of.
    const answer = answerOf(request, url, raw, dialect, route, country);
    const holdMs = latencyMs + (answer.delayMs ?? 0);
    if (holdMs > 0) await sleep(holdMs, undefined, { signal: closing.signal }).catch(() => undefined);
    send(response, answer);
  }

  function answerOf(request: IncomingMessage, url: URL, raw: string, dialect: 'toss' | 'stripe', route: (typeof routes)[number] | undefined, country: string): SimAnswer {
    const account = accountOf(request);
    if (account === undefined) return refusal(dialect, 401, 'missing or malformed credentials');
    if (route === undefined) return refusal(dialect, 404, 'no such endpoint');
    const body = parseBody(raw, dialect);
    const correlationId = typeof request.headers['x-correlation-id'] === 'string' ? request.headers['x-correlation-id'] : null;
    const call: SimCall = { state, account, country, body, query: url.searchParams, ambiguousDelayMs, correlationId };
    const match = route.pattern.exec(url.pathname) as RegExpExecArray;
    return request.method === 'POST' ? idempotent(call, request, raw, dialect, () => route.handle(call, match)) : route.handle(call, match);
  }

  /** Partner-side idempotency: a repeated key replays the first answer; a key in flight is refused. */
  function idempotent(call: SimCall, request: IncomingMessage, raw: string, dialect: 'toss' | 'stripe', work: () => SimAnswer): SimAnswer {
    const key = request.headers['idempotency-key'];
    if (typeof key !== 'string' || key === '') return work();
    const scoped = `${call.account}\u0000${key}`;
    const requestHash = createHash('sha256').update(`${request.url ?? ''}\u0000${raw}`).digest('hex');
    const existing = state.idempotency.get(scoped);
    if (existing !== undefined) {
      if (existing.requestHash !== requestHash) {
        return dialect === 'toss'
          ? toss.tossError(422, 'INVALID_IDEMPOTENCY_KEY', '멱등키가 다른 요청에 사용되었습니다.')
          : stripe.stripeError(400, 'idempotency_error', 'Keys for idempotent requests can only be used with the same parameters they were first used with.');
      }
      if (existing.response === null) {
        return dialect === 'toss'
          ? toss.tossError(409, 'IDEMPOTENT_REQUEST_PROCESSING', '이전 멱등 요청이 아직 처리 중입니다.')
          : stripe.stripeError(409, 'idempotency_error', 'There is currently another in-progress request using this Idempotent Key.');
      }
      return existing.response;
    }
    const entry = { requestHash, response: null as SimAnswer | null };
    state.remember(scoped, entry);
    const answer = work();
    // A 5xx answer is not remembered: the partner did nothing, and a retry may do the work.
    if (answer.status >= 500) state.idempotency.delete(scoped);
    else entry.response = { status: answer.status, body: answer.body };
    return answer;
  }

  function hook(method: string, url: URL, raw: string): SimAnswer {
    const body = parseJsonObject(raw);
    if (url.pathname === '/__sim/faults' && method === 'POST') return addFault(body);
    if (url.pathname === '/__sim/faults' && method === 'DELETE') {
      state.faults = [];
      return { status: 200, body: { deleted: true } };
    }
    if (url.pathname === '/__sim/faults' && method === 'GET') return { status: 200, body: { data: state.faults } };
    if (url.pathname === '/__sim/charges' && method === 'GET') return listCharges(url.searchParams);
    if (url.pathname === '/__sim/charges' && method === 'POST') return recordUnmadeCharge(state, body);
    if (url.pathname === '/__sim/drift' && method === 'POST') return applyDrift(state, body);
    if (url.pathname === '/__sim/latency' && method === 'POST') return setLatency(body);
    if (url.pathname === '/__sim/consistency' && method === 'POST') return setConsistency(body);
    if (url.pathname === '/__sim/consistency' && method === 'DELETE') {
      state.inquiryLagMs = 0;
      return { status: 200, body: { inquiry_lag_ms: 0 } };
    }
    if (url.pathname === '/__sim/consistency' && method === 'GET') return { status: 200, body: { inquiry_lag_ms: state.inquiryLagMs } };
    if (url.pathname === '/__sim/payouts' && method === 'POST') return setPayouts(body);
    if (url.pathname === '/__sim/payouts' && method === 'GET') return { status: 200, body: { delay_days: state.payoutDelayDays } };
    if (url.pathname === '/__sim/reset' && method === 'POST') {
      state.reset();
      return { status: 200, body: { reset: true } };
    }
    return { status: 404, body: { error: 'no such test hook' } };
  }

  function addFault(body: Record<string, unknown>): SimAnswer {
    const modes: readonly FaultMode[] = ['outage', 'latency', 'errors', 'hang'];
    const mode = body['mode'] as FaultMode;
    if (!modes.includes(mode)) return { status: 400, body: { error: 'mode must be outage, latency, errors or hang' } };
    const durationS = body['duration_s'] === undefined ? 3600 : Number(body['duration_s']);
    const fault = {
      country: typeof body['country'] === 'string' ? body['country'].toUpperCase() : null,
      mode,
      rate: body['rate'] === undefined ? 1 : Number(body['rate']),
      latencyMs: Number(body['latency_ms'] ?? 0),
      until: Date.now() + durationS * 1000,
    };
    state.faults.push(fault);
    return { status: 201, body: fault };
  }

  function setPayouts(body: Record<string, unknown>): SimAnswer {
    const days = body['delay_days'];
    if (typeof days !== 'number' || !Number.isInteger(days) || days < 0 || days > payoutDelayDaysMax) {
      return { status: 400, body: { error: `delay_days must be an integer from 0 to ${payoutDelayDaysMax}` } };
    }
    state.payoutDelayDays = days;
    return { status: 200, body: { delay_days: days } };
  }

  function setLatency(body: Record<string, unknown>): SimAnswer {
    const p50Ms = Number(body['p50_ms']);
    const p99Ms = Number(body['p99_ms'] ?? p50Ms);
    if (!Number.isFinite(p50Ms) || p50Ms < 0 || !Number.isFinite(p99Ms) || p99Ms < p50Ms) {
      return { status: 400, body: { error: 'p50_ms >= 0 and p99_ms >= p50_ms are required' } };
    }
    const country = typeof body['country'] === 'string' ? body['country'].toUpperCase() : '*';
    state.latency.set(country, { p50Ms, p99Ms });
    return { status: 200, body: { country, p50_ms: p50Ms, p99_ms: p99Ms } };
  }

  function setConsistency(body: Record<string, unknown>): SimAnswer {
    const lagMs = Number(body['inquiry_lag_ms']);
    if (!Number.isSafeInteger(lagMs) || lagMs < 0) return { status: 400, body: { error: 'inquiry_lag_ms must be an integer >= 0' } };
    state.inquiryLagMs = lagMs;
    return { status: 200, body: { inquiry_lag_ms: lagMs } };
  }

  function listCharges(query: URLSearchParams): SimAnswer {
    const orderId = query.get('order_id');
    const data = [...state.charges.values()]
      .filter((charge) => orderId === null || charge.orderId === orderId)
      .map((charge) => ({
        id: charge.id,
        gateway: charge.dialect,
        order_id: charge.orderId,
        order_name: charge.orderName,
        amount: charge.amount,
        currency: charge.currency,
        country: charge.country,
        status: charge.status,
        captured: charge.capturedAmount > 0,
        captured_amount: charge.capturedAmount,
        refunded_amount: charge.refundedAmount,
        metadata: charge.metadata,
        correlation_id: charge.correlationId,
      }));
    return { status: 200, body: { data } };
  }

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, options.host ?? '127.0.0.1', () => resolve());
  });
  const address = server.address() as AddressInfo;
  return {
    url: `http://${options.host ?? '127.0.0.1'}:${address.port}`,
    state,
    close: async () => {
      closing.abort();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

function accountOf(request: IncomingMessage): string | undefined {
  const header = request.headers.authorization ?? '';
  if (header.startsWith('Basic ')) {
    const decoded = Buffer.from(header.slice(6), 'base64').toString('utf8');
    return decoded.endsWith(':') && decoded.length > 1 ? decoded.slice(0, -1) : undefined;
  }
  if (header.startsWith('Bearer ') && header.length > 7) return header.slice(7);
  return undefined;
}

function refusal(dialect: 'toss' | 'stripe', status: number, message: string): SimAnswer {
  if (dialect === 'toss') {
    const code =
      status === 429 ? 'TOO_MANY_REQUESTS' : status === 401 ? 'UNAUTHORIZED_KEY' : status === 404 ? 'NOT_FOUND' : 'FAILED_INTERNAL_SYSTEM_PROCESSING';
    return toss.tossError(status, code, message);
  }
  const type = status === 429 ? 'rate_limit_error' : status === 401 ? 'authentication_error' : status === 404 ? 'invalid_request_error' : 'api_error';
  return stripe.stripeError(status, type, message);
}

async function readBody(request: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of request) {
    size += (chunk as Buffer).length;
    if (size > bodyBytesMax) throw new Error('body too large');
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}

function parseJsonObject(raw: string): Record<string, unknown> {
  if (raw === '') return {};
  try {
    const parsed = JSON.parse(raw) as unknown;
    return typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed) ? (parsed as Record<string, unknown>) : {};
  } catch {
    return {};
  }
}

function parseBody(raw: string, dialect: 'toss' | 'stripe'): Record<string, unknown> {
  return dialect === 'toss' ? parseJsonObject(raw) : parseStripeForm(raw);
}

/** Stripe's `a[b][c]=v` form encoding, back into nested objects. */
export function parseStripeForm(raw: string): Record<string, unknown> {
  const result: Record<string, unknown> = {};
  for (const [key, value] of new URLSearchParams(raw)) {
    const path = key.split(/[[\]]+/).filter((part) => part !== '');
    if (path.some((part) => part === '__proto__' || part === 'constructor' || part === 'prototype')) continue;
    let node = result;
    path.forEach((part, index) => {
      if (index === path.length - 1) node[part] = value;
      else node = (node[part] ??= {}) as Record<string, unknown>;
    });
  }
  return result;
}

function send(response: ServerResponse, answer: SimAnswer): void {
  if (response.destroyed) return;
  const payload = JSON.stringify(answer.body);
  response.writeHead(answer.status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) });
  response.end(payload);
}
