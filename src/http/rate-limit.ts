import type { Redis } from 'ioredis';
import { BurstyRateLimiter, RateLimiterMemory, RateLimiterRedis, RateLimiterRes } from 'rate-limiter-flexible';

/**
 * Rate limits per API key, with rate-limiter-flexible: in memory by default, in Redis when `KEEL_REDIS_URL` is
 * set so every API instance draws on one budget. A token bucket of `perSecond` tokens a second and `burst`
 * capacity is expressed as the library's BurstyRateLimiter: a sustained limiter of `perSecond` points a second
 * plus a burst limiter of `burst - perSecond` extra points that refill over `(burst - perSecond) / perSecond`
 * seconds. With Redis, an in-memory limiter insures the budget while Redis is unreachable, so a Redis outage
 * never blocks payments.
 */
export interface RateLimitPolicy {
  readonly perSecond: number;
  readonly burst: number;
}

type Limiter = BurstyRateLimiter | RateLimiterMemory | RateLimiterRedis;

export interface RateLimitDecision {
  readonly allowed: boolean;
  readonly limit: number;
  readonly remaining: number;
  readonly resetSeconds: number;
}

export class ApiRateLimiter {
  readonly #redis: Redis | undefined;
  readonly #limiters = new Map<string, Limiter>();

  constructor(redis: Redis | undefined) {
    this.#redis = redis;
  }

  async check(apiKeyId: string, policy: RateLimitPolicy): Promise<RateLimitDecision> {
    const limiter = this.#limiterFor(policy);
    try {
      const result = await limiter.consume(apiKeyId);
      return decision(true, policy, result);
    } catch (rejection) {
      if (rejection instanceof RateLimiterRes) return decision(false, policy, rejection);
      throw rejection;
    }
  }

  #limiterFor(policy: RateLimitPolicy): Limiter {
    const name = `${policy.perSecond}_${policy.burst}`;
    let limiter = this.#limiters.get(name);
    if (limiter === undefined) {
      const sustained = this.#store({ keyPrefix: `keel_rl_${name}`, points: policy.perSecond, duration: 1 });
      const extra = policy.burst - policy.perSecond;
      limiter =
        extra <= 0
          ? sustained
          : new BurstyRateLimiter(
              sustained,
              this.#store({ keyPrefix: `keel_rl_burst_${name}`, points: extra, duration: Math.max(1, Math.ceil(extra / policy.perSecond)) }),
            );
      this.#limiters.set(name, limiter);
    }
    return limiter;
  }

  #store(options: LimiterStoreOptions): RateLimiterMemory | RateLimiterRedis {
    return limiterStore(this.#redis, options);
  }
}

export interface LimiterStoreOptions {
  readonly keyPrefix: string;
  readonly points: number;
  readonly duration: number;
}

/** A limiter in memory, or in Redis (shared by every instance) with an in-memory insurance for Redis outages. */
export function limiterStore(redis: Redis | undefined, options: LimiterStoreOptions): RateLimiterMemory | RateLimiterRedis {
  if (redis === undefined) return new RateLimiterMemory(options);
  return new RateLimiterRedis({ ...options, storeClient: redis, insuranceLimiter: new RateLimiterMemory(options) });
}

function decision(allowed: boolean, policy: RateLimitPolicy, result: RateLimiterRes): RateLimitDecision {
  return {
    allowed,
    limit: policy.perSecond,
    remaining: Math.max(0, result.remainingPoints),
    resetSeconds: Math.max(1, Math.ceil(result.msBeforeNext / 1000)),
  };
}
