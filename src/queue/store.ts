import type { Redis } from 'ioredis';

/**
 * Where the checkout queue keeps its order: one queue per country, first come first served. Admission is a
 * token bucket at the queue's capacity (admissions per second, burst of one second's worth): a shopper who
 * arrives while nobody waits and a token is left is admitted at once; otherwise they join the back. Every call
 * first advances the queue to `now` — refills the bucket, admits from the head, lapses admissions unused for
 * the TTL — so the order moves even between ticks.
 *
 * Two stores share this contract and one test suite (`store.test.ts`): memory (one process) and Redis (every
 * API instance shares one order; each call is one Lua script, so concurrent joins from many instances get
 * distinct, ordered places, and a restart loses nobody's). The algorithm is written twice, once per store,
 * because the Redis one must run inside Redis to be atomic.
 */
export type TicketStatus = 'waiting' | 'admitted' | 'expired';

export interface TicketRecord {
  readonly id: string;
  readonly queue: string;
  readonly merchant: string;
  readonly customer: string | null;
  readonly session: string | null;
  readonly status: TicketStatus;
  /** 1-based while waiting; 0 once admitted; null when expired. */
  readonly position: number | null;
  readonly joinedAt: number;
  readonly admittedAt: number | null;
  /** Who used the admission (a checkout session, or `merchant:order`), once used. */
  readonly usedBy: string | null;
}

/** The queue after an advance: what the caller reports in metrics, and a start or stop edge at most once. */
export interface QueueSnapshot {
  readonly queue: string;
  readonly waiting: number;
  /** Admissions per second, smoothed over `rateTauMs`. */
  readonly rate: number;
  /** The capacity the bucket refilled at (admissions per second); Infinity when unbounded. */
  readonly capacity: number;
  readonly admitted: number;
  readonly lapsed: number;
  /** The queue started (someone waits) or stopped (nobody waited for `quietMs`) in this call. */
  readonly edge: 'started' | 'stopped' | undefined;
}

export interface AdvanceInput {
  readonly queue: string;
  readonly now: number;
  /**
   * This instance's measured capacity; undefined when it has measured nothing (no bound of its own); null keeps
   * what it last published (a call by ticket id, whose country the caller does not know).
   */
  readonly measured: number | undefined | null;
  /** The configured capacity (deployment-wide), undefined when none. */
  readonly configured: number | undefined;
  readonly instance: string;
  readonly ttlMs: number;
}

export interface JoinInput extends AdvanceInput {
  readonly id: string;
  readonly merchant: string;
  readonly customer: string | null;
  readonly session: string | null;
}

export type UseResult = 'ok' | 'waiting' | 'expired' | 'used' | 'missing';

export interface QueueStore {
  join(input: JoinInput): Promise<{ ticket: TicketRecord; snapshot: QueueSnapshot }>;
  /** The ticket (its queue advanced first), or undefined when unknown. */
  status(id: string, input: Omit<AdvanceInput, 'queue'>): Promise<{ ticket: TicketRecord; snapshot: QueueSnapshot } | undefined>;
  /**
   * Marks an admitted ticket of `merchant` used by `by`; the same `by` may use it again (a retried request).
   * Another merchant's ticket is `missing`, and stays as it was.
   */
  use(id: string, by: string, merchant: string, input: Omit<AdvanceInput, 'queue'>): Promise<{ result: UseResult; ticket: TicketRecord | undefined }>;
  advance(input: AdvanceInput): Promise<QueueSnapshot>;
  /** The queues that exist (each tick advances them all). */
  queues(): Promise<string[]>;
}

/** The admission rate's smoothing constant, and how long a queue stays started after it empties. */
export const rateTauMs = 5_000;
export const quietMs = 60_000;
/** An instance's published capacity counts for this long. */
export const capacityFreshMs = 5_000;
/** At most this many lapsed admissions are swept per call (the rest in the next ones). */
export const lapseBatch = 100;
/** A ticket's record outlives its admission by this much, so a late status still answers `expired`. */
export const ticketRetentionMs = 24 * 3_600_000;

/** The capacity an advance refills at: the configured one, bounded by what the instances measured. */
export function effectiveCapacity(configured: number | undefined, measuredSum: number | undefined): number {
  return Math.min(configured ?? Infinity, measuredSum ?? Infinity);
}

interface MemoryQueue {
  allowance: number;
  at: number;
  rate: number;
  active: boolean;
  emptySince: number | undefined;
  seq: number;
  /** Waiting ids in order; `head` indexes the first still waiting. */
  waiting: string[];
  head: number;
  /** Admitted, not yet used or lapsed, in admission order. */
  admitted: Map<string, number>;
  caps: Map<string, { cap: number | undefined; at: number }>;
}

interface MemoryTicket {
  id: string;
  queue: string;
  merchant: string;
  customer: string | null;
  session: string | null;
  seq: number;
  joinedAt: number;
  admittedAt: number | null;
  usedBy: string | null;
  expired: boolean;
}

export class MemoryQueueStore implements QueueStore {
  readonly #queues = new Map<string, MemoryQueue>();
  readonly #tickets = new Map<string, MemoryTicket>();

  async join(input: JoinInput): Promise<{ ticket: TicketRecord; snapshot: QueueSnapshot }> {
    const queue = this.#queue(input.queue, input.now);
    const step = this.#advance(queue, input);
    queue.seq += 1;
    const ticket: MemoryTicket = {
      id: input.id,
      queue: input.queue,
      merchant: input.merchant,
      customer: input.customer,
      session: input.session,
      seq: queue.seq,
      joinedAt: input.now,
      admittedAt: null,
      usedBy: null,
      expired: false,
    };
    this.#tickets.set(ticket.id, ticket);
    if (queue.waiting.length === queue.head && queue.allowance >= 1) {
      queue.allowance -= 1;
      this.#admit(queue, ticket, input.now);
      queue.rate += 1 / (rateTauMs / 1000);
      step.admitted += 1;
    } else {
      queue.waiting.push(ticket.id);
    }
    const snapshot = this.#edges(queue, input.queue, input.now, step);
    return { ticket: this.#record(ticket, queue, input.now, input.ttlMs), snapshot };
  }

  async status(id: string, input: Omit<AdvanceInput, 'queue'>): Promise<{ ticket: TicketRecord; snapshot: QueueSnapshot } | undefined> {
    const ticket = this.#tickets.get(id);
    if (ticket === undefined) return undefined;
    const snapshot = await this.advance({ ...input, queue: ticket.queue });
    return { ticket: this.#record(ticket, this.#queue(ticket.queue, input.now), input.now, input.ttlMs), snapshot };
  }

  async use(id: string, by: string, merchant: string, input: Omit<AdvanceInput, 'queue'>): Promise<{ result: UseResult; ticket: TicketRecord | undefined }> {
    const found = await this.status(id, input);
    if (found === undefined || found.ticket.merchant !== merchant) return { result: 'missing', ticket: undefined };
    const ticket = this.#tickets.get(id) as MemoryTicket;
    const result = useOf(found.ticket, by);
    if (result === 'ok' && ticket.usedBy === null) {
      ticket.usedBy = by;
      this.#queue(ticket.queue, input.now).admitted.delete(id);
    }
    return { result, ticket: this.#record(ticket, this.#queue(ticket.queue, input.now), input.now, input.ttlMs) };
  }

  async advance(input: AdvanceInput): Promise<QueueSnapshot> {
    const queue = this.#queue(input.queue, input.now);
    const step = this.#advance(queue, input);
    return this.#edges(queue, input.queue, input.now, step);
  }

  async queues(): Promise<string[]> {
    return [...this.#queues.keys()];
  }

  #queue(name: string, now: number): MemoryQueue {
    let queue = this.#queues.get(name);
    if (queue === undefined) {
      queue = { allowance: Number.MAX_SAFE_INTEGER, at: now, rate: 0, active: false, emptySince: undefined, seq: 0, waiting: [], head: 0, admitted: new Map(), caps: new Map() };
      this.#queues.set(name, queue);
    }
    return queue;
  }

  #advance(queue: MemoryQueue, input: AdvanceInput): { admitted: number; lapsed: number; capacity: number } {
    const { now } = input;
    if (input.measured !== null) queue.caps.set(input.instance, { cap: input.measured, at: now });
    let measuredSum: number | undefined;
    for (const [instance, entry] of queue.caps) {
      if (now - entry.at > capacityFreshMs) queue.caps.delete(instance);
      else if (entry.cap !== undefined) measuredSum = (measuredSum ?? 0) + entry.cap;
    }
    const capacity = effectiveCapacity(input.configured, measuredSum);
    const elapsedS = Math.max(0, now - queue.at) / 1000;
    queue.rate *= Math.exp((-elapsedS * 1000) / rateTauMs);
    // What accrued since the last call admits those who waited through it; only the leftover is capped at the burst.
    queue.allowance = Number.isFinite(capacity) ? Math.min(queue.allowance, Math.max(1, capacity)) + elapsedS * capacity : Infinity;
    queue.at = Math.max(queue.at, now);
    let admitted = 0;
    while (queue.head < queue.waiting.length && queue.allowance >= 1) {
      const ticket = this.#tickets.get(queue.waiting[queue.head] as string) as MemoryTicket;
      queue.head += 1;
      queue.allowance -= 1;
      this.#admit(queue, ticket, now);
      admitted += 1;
    }
    if (queue.head > 1024 && queue.head * 2 > queue.waiting.length) {
      queue.waiting = queue.waiting.slice(queue.head);
      queue.head = 0;
    }
    queue.allowance = Number.isFinite(queue.allowance) ? Math.min(queue.allowance, Math.max(1, capacity)) : 1;
    let lapsed = 0;
    for (const [id, admittedAt] of queue.admitted) {
      if (now - admittedAt < input.ttlMs || lapsed >= lapseBatch) break;
      queue.admitted.delete(id);
      const ticket = this.#tickets.get(id);
      if (ticket !== undefined) ticket.expired = true;
      lapsed += 1;
    }
    for (const [id, ticket] of this.#tickets) {
      if (now - ticket.joinedAt < ticketRetentionMs) break;
      if (ticket.admittedAt !== null || ticket.expired) this.#tickets.delete(id);
    }
    queue.rate += admitted / (rateTauMs / 1000);
    return { admitted, lapsed, capacity };
  }

  #admit(queue: MemoryQueue, ticket: MemoryTicket, now: number): void {
    ticket.admittedAt = now;
    queue.admitted.set(ticket.id, now);
  }

  #edges(queue: MemoryQueue, name: string, now: number, step: { admitted: number; lapsed: number; capacity: number }): QueueSnapshot {
    const waiting = queue.waiting.length - queue.head;
    let edge: QueueSnapshot['edge'];
    if (waiting > 0) {
      queue.emptySince = undefined;
      if (!queue.active) {
        queue.active = true;
        edge = 'started';
      }
    } else if (queue.active) {
      queue.emptySince ??= now;
      if (now - queue.emptySince >= quietMs) {
        queue.active = false;
        queue.emptySince = undefined;
        edge = 'stopped';
      }
    }
    return { queue: name, waiting, rate: queue.rate, capacity: step.capacity, admitted: step.admitted, lapsed: step.lapsed, edge };
  }

  #record(ticket: MemoryTicket, queue: MemoryQueue, now: number, ttlMs: number): TicketRecord {
    const headSeq = queue.head < queue.waiting.length ? (this.#tickets.get(queue.waiting[queue.head] as string)?.seq ?? ticket.seq) : ticket.seq;
    const status = statusOf(ticket.admittedAt, ticket.usedBy, ticket.expired, now, ttlMs);
    return {
      id: ticket.id,
      queue: ticket.queue,
      merchant: ticket.merchant,
      customer: ticket.customer,
      session: ticket.session,
      status,
      position: status === 'waiting' ? ticket.seq - headSeq + 1 : status === 'admitted' ? 0 : null,
      joinedAt: ticket.joinedAt,
      admittedAt: ticket.admittedAt,
      usedBy: ticket.usedBy,
    };
  }
}

function statusOf(admittedAt: number | null, usedBy: string | null, expired: boolean, now: number, ttlMs: number): TicketStatus {
  if (admittedAt === null) return 'waiting';
  if (usedBy !== null) return 'admitted';
  if (expired || now - admittedAt >= ttlMs) return 'expired';
  return 'admitted';
}

function useOf(ticket: TicketRecord, by: string): UseResult {
  if (ticket.status === 'waiting') return 'waiting';
  if (ticket.status === 'expired') return 'expired';
  return ticket.usedBy === null || ticket.usedBy === by ? 'ok' : 'used';
}

/**
 * The Lua script behind every Redis call: advance the queue, then join, read or use a ticket. Keys are built
 * inside the script from the deployment's prefix (a ticket names its queue), so it needs a standalone Redis
 * (or a primary with replicas), not Redis Cluster. Lua numbers cross back to the client as strings, since
 * Redis would truncate them to integers.
 */
const script = `
local prefix, mode = ARGV[1], ARGV[2]
local now, instance = tonumber(ARGV[3]), ARGV[4]
local measured, configured, ttl = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local tau, quiet, fresh, batch, retention = tonumber(ARGV[8]), tonumber(ARGV[9]), tonumber(ARGV[10]), tonumber(ARGV[11]), tonumber(ARGV[12])
local queue, ticketId
if mode == 'advance' or mode == 'join' then
  queue = ARGV[13]
else
  ticketId = ARGV[13]
  queue = redis.call('HGET', prefix .. 't:' .. ticketId, 'queue')
  if not queue then return false end
end
local stateKey = prefix .. 'q:' .. queue
local waitingKey, admittedKey, capsKey = stateKey .. ':waiting', stateKey .. ':admitted', stateKey .. ':caps'
redis.call('SADD', prefix .. 'queues', queue)

if measured ~= -2 then redis.call('HSET', capsKey, instance, measured .. '|' .. now) end
local caps = redis.call('HGETALL', capsKey)
local sum = -1
for i = 1, #caps, 2 do
  local value = caps[i + 1]
  local sep = string.find(value, '|', 1, true)
  local cap, at = tonumber(string.sub(value, 1, sep - 1)), tonumber(string.sub(value, sep + 1))
  if now - at > fresh then
    redis.call('HDEL', capsKey, caps[i])
  elseif cap >= 0 then
    if sum < 0 then sum = 0 end
    sum = sum + cap
  end
end
local capacity = -1
if configured >= 0 and sum >= 0 then capacity = math.min(configured, sum) elseif configured >= 0 then capacity = configured else capacity = sum end

local s = redis.call('HMGET', stateKey, 'allowance', 'at', 'rate', 'active', 'empty_since')
local allowance = tonumber(s[1]) or 1e15
local at = tonumber(s[2]) or now
local rate = tonumber(s[3]) or 0
local active = s[4] == '1'
local emptySince = tonumber(s[5])
local elapsed = math.max(0, now - at) / 1000
rate = rate * math.exp(-elapsed * 1000 / tau)
local unbounded = capacity < 0
if not unbounded then allowance = math.min(allowance, math.max(1, capacity)) + elapsed * capacity end
at = math.max(at, now)
local admitted = 0
local room = 1000
if not unbounded then room = math.min(room, math.floor(allowance)) end
if room > 0 then
  local popped = redis.call('ZPOPMIN', waitingKey, room)
  for i = 1, #popped, 2 do
    redis.call('HSET', prefix .. 't:' .. popped[i], 'admitted_at', now)
    redis.call('ZADD', admittedKey, now, popped[i])
    admitted = admitted + 1
  end
end
if unbounded then allowance = 1 else allowance = math.min(allowance - admitted, math.max(1, capacity)) end
local lapsed = 0
local old = redis.call('ZRANGEBYSCORE', admittedKey, '-inf', now - ttl, 'LIMIT', 0, batch)
for _, id in ipairs(old) do
  redis.call('ZREM', admittedKey, id)
  if not redis.call('HGET', prefix .. 't:' .. id, 'used_by') then
    redis.call('HSET', prefix .. 't:' .. id, 'expired', '1')
    lapsed = lapsed + 1
  end
end
rate = rate + admitted / (tau / 1000)

local ticketKey
local useResult = ''
if mode == 'join' then
  ticketId = ARGV[14]
  ticketKey = prefix .. 't:' .. ticketId
  local seq = redis.call('HINCRBY', stateKey, 'seq', 1)
  redis.call('HSET', ticketKey, 'id', ticketId, 'queue', queue, 'merchant', ARGV[15], 'customer', ARGV[16], 'session', ARGV[17], 'seq', seq, 'joined_at', now)
  redis.call('PEXPIRE', ticketKey, retention)
  if redis.call('ZCARD', waitingKey) == 0 and allowance >= 1 then
    allowance = allowance - 1
    redis.call('HSET', ticketKey, 'admitted_at', now)
    redis.call('ZADD', admittedKey, now, ticketId)
    rate = rate + 1 / (tau / 1000)
    admitted = admitted + 1
  else
    redis.call('ZADD', waitingKey, seq, ticketId)
  end
elseif ticketId then
  ticketKey = prefix .. 't:' .. ticketId
end
if mode == 'use' then
  local by = ARGV[14]
  local t = redis.call('HMGET', ticketKey, 'admitted_at', 'used_by', 'expired', 'merchant')
  if t[4] ~= ARGV[15] then useResult = 'missing'
  elseif not t[1] then useResult = 'waiting'
  elseif t[2] then
    if t[2] == by then useResult = 'ok' else useResult = 'used' end
  elseif t[3] or now - tonumber(t[1]) >= ttl then useResult = 'expired'
  else
    useResult = 'ok'
    redis.call('HSET', ticketKey, 'used_by', by)
    redis.call('ZREM', admittedKey, ticketId)
  end
end

local waiting = redis.call('ZCARD', waitingKey)
local edge = ''
if waiting > 0 then
  emptySince = nil
  if not active then active = true edge = 'started' end
elseif active then
  if not emptySince then emptySince = now end
  if now - emptySince >= quiet then active = false emptySince = nil edge = 'stopped' end
end
redis.call('HSET', stateKey, 'allowance', tostring(allowance), 'at', tostring(at), 'rate', tostring(rate), 'active', active and '1' or '0', 'empty_since', emptySince and tostring(emptySince) or '')
local fields = {}
local position = -1
if ticketKey then
  fields = redis.call('HGETALL', ticketKey)
  local rank = redis.call('ZRANK', waitingKey, ticketId)
  if rank then position = rank + 1 end
end
return { edge, waiting, tostring(rate), tostring(capacity), admitted, lapsed, useResult, position, fields }
`;

type ScriptReply = [string, number, string, string, number, number, string, number, string[]] | null;

interface QueueScript {
  keelQueue(...args: (string | number)[]): Promise<ScriptReply>;
}

export class RedisQueueStore implements QueueStore {
  readonly #redis: Redis & QueueScript;
  readonly #prefix: string;

  /** `namespace` keeps deployments sharing one Redis apart. */
  constructor(redis: Redis, namespace: string) {
    if (!('keelQueue' in redis)) redis.defineCommand('keelQueue', { numberOfKeys: 0, lua: script });
    this.#redis = redis as Redis & QueueScript;
    this.#prefix = `${namespace}_queue:`;
  }

  async join(input: JoinInput): Promise<{ ticket: TicketRecord; snapshot: QueueSnapshot }> {
    const reply = await this.#call('join', input, input.queue, input.id, input.merchant, input.customer ?? '', input.session ?? '');
    return this.#found(reply, input) ?? missing();
  }

  async status(id: string, input: Omit<AdvanceInput, 'queue'>): Promise<{ ticket: TicketRecord; snapshot: QueueSnapshot } | undefined> {
    return this.#found(await this.#call('status', input, id), input);
  }

  async use(id: string, by: string, merchant: string, input: Omit<AdvanceInput, 'queue'>): Promise<{ result: UseResult; ticket: TicketRecord | undefined }> {
    const reply = await this.#call('use', input, id, by, merchant);
    if (reply === null || reply[6] === 'missing') return { result: 'missing', ticket: undefined };
    return { result: reply[6] as UseResult, ticket: this.#found(reply, input)?.ticket };
  }

  async advance(input: AdvanceInput): Promise<QueueSnapshot> {
    const reply = await this.#call('advance', input, input.queue);
    if (reply === null) return missing();
    return snapshotOf(input.queue, reply);
  }

  async queues(): Promise<string[]> {
    return this.#redis.smembers(`${this.#prefix}queues`);
  }

  #call(mode: string, input: Omit<AdvanceInput, 'queue'>, ...rest: string[]): Promise<ScriptReply> {
    return this.#redis.keelQueue(
      this.#prefix,
      mode,
      input.now,
      input.instance,
      input.measured === null ? -2 : (input.measured ?? -1),
      input.configured ?? -1,
      input.ttlMs,
      rateTauMs,
      quietMs,
      capacityFreshMs,
      lapseBatch,
      ticketRetentionMs,
      ...rest,
    );
  }

  #found(reply: ScriptReply, input: Omit<AdvanceInput, 'queue'>): { ticket: TicketRecord; snapshot: QueueSnapshot } | undefined {
    if (reply === null) return undefined;
    const fields = new Map<string, string>();
    const flat = reply[8];
    for (let index = 0; index + 1 < flat.length; index += 2) fields.set(flat[index] as string, flat[index + 1] as string);
    const admittedAt = fields.has('admitted_at') ? Number(fields.get('admitted_at')) : null;
    const usedBy = fields.get('used_by') ?? null;
    const status = statusOf(admittedAt, usedBy, fields.has('expired'), input.now, input.ttlMs);
    const blank = (value: string | undefined) => (value === undefined || value === '' ? null : value);
    const queue = fields.get('queue') ?? '';
    return {
      ticket: {
        id: fields.get('id') ?? '',
        queue,
        merchant: fields.get('merchant') ?? '',
        customer: blank(fields.get('customer')),
        session: blank(fields.get('session')),
        status,
        position: status === 'waiting' ? reply[7] : status === 'admitted' ? 0 : null,
        joinedAt: Number(fields.get('joined_at')),
        admittedAt,
        usedBy,
      },
      snapshot: snapshotOf(queue, reply),
    };
  }
}

function snapshotOf(queue: string, reply: NonNullable<ScriptReply>): QueueSnapshot {
  const capacity = Number(reply[3]);
  return {
    queue,
    waiting: reply[1],
    rate: Number(reply[2]),
    capacity: capacity < 0 ? Infinity : capacity,
    admitted: reply[4],
    lapsed: reply[5],
    edge: reply[0] === '' ? undefined : (reply[0] as 'started' | 'stopped'),
  };
}

function missing(): never {
  throw new Error('the checkout queue script answered nothing for a queue it was given');
}
