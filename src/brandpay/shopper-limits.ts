import type { Redis } from 'ioredis';
import { RateLimiterRes, type RateLimiterAbstract } from 'rate-limiter-flexible';
import { limiterStore } from '../http/rate-limit.js';
import { KeelError } from '../errors.js';

/**
 * Velocity limits on what a shopper (or a script posing as one) can try through Brand Pay, on top of the
 * lockout after five wrong PINs in a row:
 * - PIN attempts per customer and per client IP: a script cannot spread guesses across many customers from one
 *   address, nor hammer one customer from many. A checkout session belongs to one customer, so the customer's
 *   budget bounds each of its sessions too.
 * - New payment methods (card testing: trying stolen card numbers one after another to find live ones) per
 *   checkout session, per customer and per client IP. Each refusal comes before the partner is asked to
 *   tokenize anything.
 * The client IP is the connection's address, or with `KEEL_TRUST_PROXY` the one the trusted proxies forwarded.
 * Each refusal is 429 `rate_limited` with `Retry-After`.
 */
export const pinAttemptsPerCustomerPerMinute = 10;
export const pinAttemptsPerIpPerMinute = 30;
export const newMethodsPerSessionPerHour = 5;
export const newMethodsPerCustomerPerDay = 10;
export const newMethodsPerIpPerHour = 20;

export interface Shopper {
  readonly customerId: string;
  readonly sessionId?: string | undefined;
  /** The client's IP; absent when the merchant's own server calls (the API with a secret key). */
  readonly ip?: string | undefined;
}

export class ShopperLimits {
  readonly #pinPerCustomer: RateLimiterAbstract;
  readonly #pinPerIp: RateLimiterAbstract;
  readonly #methodsPerSession: RateLimiterAbstract;
  readonly #methodsPerCustomer: RateLimiterAbstract;
  readonly #methodsPerIp: RateLimiterAbstract;

  /**
   * With Redis the budgets are shared by every API instance (a guesser gains nothing from the load balancer);
   * `namespace` keeps deployments sharing one Redis apart.
   */
  constructor(redis?: Redis, namespace = 'keel') {
    const store = (name: string, points: number, duration: number) => limiterStore(redis, { keyPrefix: `${namespace}_${name}`, points, duration });
    this.#pinPerCustomer = store('pin_customer', pinAttemptsPerCustomerPerMinute, 60);
    this.#pinPerIp = store('pin_ip', pinAttemptsPerIpPerMinute, 60);
    this.#methodsPerSession = store('methods_session', newMethodsPerSessionPerHour, 3_600);
    this.#methodsPerCustomer = store('methods_customer', newMethodsPerCustomerPerDay, 86_400);
    this.#methodsPerIp = store('methods_ip', newMethodsPerIpPerHour, 3_600);
  }

  /** One PIN attempt. */
  async admitPin(shopper: Shopper): Promise<void> {
    await consumeAll('Too many PIN attempts', [
      [this.#pinPerIp, shopper.ip],
      [this.#pinPerCustomer, shopper.customerId],
    ]);
  }

  /** One new card or bank account, before it is tokenized or stored. */
  async admitNewMethod(shopper: Shopper): Promise<void> {
    await consumeAll('Too many new payment methods', [
      [this.#methodsPerIp, shopper.ip],
      [this.#methodsPerSession, shopper.sessionId],
      [this.#methodsPerCustomer, shopper.customerId],
    ]);
  }
}

async function consumeAll(what: string, budgets: readonly (readonly [RateLimiterAbstract, string | undefined])[]): Promise<void> {
  try {
    for (const [limiter, key] of budgets) if (key !== undefined) await limiter.consume(key);
  } catch (rejection) {
    if (!(rejection instanceof RateLimiterRes)) throw rejection;
    const seconds = Math.max(1, Math.ceil(rejection.msBeforeNext / 1000));
    throw new KeelError('rate_limited', `${what}; try again in ${seconds} s.`, { retryAfterSeconds: seconds });
  }
}
