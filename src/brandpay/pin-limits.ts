import type { Redis } from 'ioredis';
import { RateLimiterRes, type RateLimiterAbstract } from 'rate-limiter-flexible';
import { limiterStore } from '../http/rate-limit.js';
import { KeelError } from '../errors.js';

/**
 * PIN attempts are limited per customer and per client IP, on top of the lockout after five wrong PINs in a
 * row: a script cannot spread guesses across many customers from one address, nor hammer one customer.
 */
export const pinAttemptsPerCustomerPerMinute = 10;
export const pinAttemptsPerIpPerMinute = 30;

export class PinAttemptLimiter {
  readonly #perCustomer: RateLimiterAbstract;
  readonly #perIp: RateLimiterAbstract;

  /**
   * With Redis the budgets are shared by every API instance (a guesser gains nothing from the load balancer);
   * `namespace` keeps deployments sharing one Redis apart.
   */
  constructor(redis?: Redis, namespace = 'keel') {
    this.#perCustomer = limiterStore(redis, { keyPrefix: `${namespace}_pin_customer`, points: pinAttemptsPerCustomerPerMinute, duration: 60 });
    this.#perIp = limiterStore(redis, { keyPrefix: `${namespace}_pin_ip`, points: pinAttemptsPerIpPerMinute, duration: 60 });
  }

  async admit(customerId: string, ip: string): Promise<void> {
    try {
      await this.#perIp.consume(ip);
      await this.#perCustomer.consume(customerId);
    } catch (rejection) {
      if (!(rejection instanceof RateLimiterRes)) throw rejection;
      const seconds = Math.max(1, Math.ceil(rejection.msBeforeNext / 1000));
      throw new KeelError('rate_limited', `Too many PIN attempts; try again in ${seconds} s.`, { retryAfterSeconds: seconds });
    }
  }
}
