import { createHmac, timingSafeEqual } from 'node:crypto';
import { parseCookie, stringifySetCookie } from 'cookie';
import type { Logger } from 'pino';
import { KeelError } from '../errors.js';
import { Counter, Gauge, type Registry } from 'prom-client';
import type { CheckoutQueueConfig } from '../config.js';
import type { SystemSignals } from '../observability/signals.js';
import type { FieldCipher } from '../storage/encryption.js';
import { newId } from '../storage/ids.js';
import { type CapacityMeter, probeGrowthPerS } from './capacity.js';
import type { AdvanceInput, QueueSnapshot, QueueStore, TicketRecord, UseResult } from './store.js';

/**
 * The checkout queue: when admissions pass the capacity of a country's checkout, new shoppers wait, first come
 * first served (store.ts), and are admitted at the capacity. `auto` measures the capacity (capacity.ts),
 * bounded by `KEEL_CHECKOUT_CAPACITY_PER_S` when set; `on` admits at the configured rate; `off` never queues
 * (a ticket is admitted as soon as it is asked for). Every 500 ms a tick samples the capacity and advances each
 * queue, so admissions, lapses and the metrics move without any shopper asking.
 *
 * The estimated wait is Little's law, W = L / λ: the shopper's position over the admission rate. While anyone
 * waits, admissions go at the token rate — the capacity — so λ is the capacity, and the smoothed measured
 * admission rate when the capacity is unbounded. A capacity the API measures grows while it is used, and the
 * wait counts that growth in (`#waitS`).
 */
export const tickMs = 500;
export const queueCookie = 'keel_queue';
export const queueTicketPattern = /^qt_[0-9A-Za-z]{26}$/;

export interface Ticket extends TicketRecord {
  /** Seconds until admission by Little's law (one decimal); 0 once admitted, null when expired. */
  readonly estimatedWaitS: number | null;
}

export interface JoinRequest {
  readonly queue: string;
  readonly merchant: string;
  readonly customer: string | null;
  readonly session: string | null;
}

export interface CheckoutQueueOptions {
  readonly config: CheckoutQueueConfig;
  readonly store: QueueStore;
  readonly meter: CapacityMeter | undefined;
  /** This instance's name among those sharing the store. */
  readonly instance: string;
  readonly registry: Registry;
  readonly signals: SystemSignals;
  readonly cipher: FieldCipher;
  readonly logger: Logger;
  readonly now?: () => number;
}

export class CheckoutQueue {
  readonly mode: CheckoutQueueConfig['mode'];
  readonly #options: CheckoutQueueOptions;
  #now: () => number;
  readonly #cookieKey: Buffer;
  readonly #metrics;
  #timer: NodeJS.Timeout | undefined;
  #ticking = false;
  /** The queues that had shoppers waiting at their last advance. */
  readonly #queueing = new Set<string>();

  constructor(options: CheckoutQueueOptions) {
    this.#options = options;
    this.mode = options.config.mode;
    this.#now = options.now ?? Date.now;
    this.#cookieKey = options.cipher.keyFor('checkout queue cookie');
    const registers = [options.registry];
    this.#metrics = {
      length: new Gauge({ name: 'keel_checkout_queue_length', help: 'Shoppers waiting in the checkout queue, by country (every instance reports the shared queue: take the max)', labelNames: ['country'], registers }),
      admissions: new Counter({ name: 'keel_checkout_queue_admissions_total', help: 'Shoppers admitted from the checkout queue or at once, by country (the instance that admitted them counts them)', labelNames: ['country'], registers }),
      wait: new Gauge({ name: 'keel_checkout_queue_estimated_wait_seconds', help: 'Estimated wait for a shopper joining the checkout queue now (length over admission rate), by country', labelNames: ['country'], registers }),
      lapsed: new Counter({ name: 'keel_checkout_queue_lapsed_total', help: 'Admissions that lapsed unused after KEEL_QUEUE_ADMISSION_TTL_S, by country', labelNames: ['country'], registers }),
      capacity: new Gauge({ name: 'keel_checkout_queue_capacity_per_second', help: 'The admission rate the checkout queue refills at, by country (-1: unbounded)', labelNames: ['country'], registers }),
    };
  }

  /** Replaces the clock (tests let minutes pass without waiting for them). */
  useClock(now: () => number): void {
    this.#now = now;
  }

  /** Whether the hosted page queues shoppers at all. */
  get enabled(): boolean {
    return this.mode !== 'off';
  }

  async join(request: JoinRequest): Promise<Ticket> {
    const { ticket, snapshot } = await this.#options.store.join({ ...this.#advanceInput(request.queue), ...request, id: newId('queueTicket').publicId });
    return this.#ticket(ticket, this.#observe(snapshot));
  }

  async status(id: string): Promise<Ticket | undefined> {
    const found = await this.#options.store.status(id, this.#advanceInputOf(undefined));
    return found === undefined ? undefined : this.#ticket(found.ticket, this.#observe(found.snapshot));
  }

  /**
   * Uses `merchant`'s admitted ticket for `by` (a checkout session, or `merchant:order`); `by` may use it again.
   * Another merchant's ticket is `missing` and stays unused.
   */
  use(id: string, by: string, merchant: string): Promise<{ result: UseResult; ticket: TicketRecord | undefined }> {
    return this.#options.store.use(id, by, merchant, this.#advanceInputOf(undefined));
  }

  /** Samples the capacity and advances every queue (the timer's work; tests call it with their own clock). */
  async tick(): Promise<void> {
    await this.#options.meter?.sample(this.#now(), this.#queueing.size > 0);
    for (const queue of await this.#options.store.queues()) this.#observe(await this.#options.store.advance(this.#advanceInput(queue)));
  }

  start(): void {
    this.#timer = setInterval(() => {
      if (this.#ticking) return;
      this.#ticking = true;
      this.tick()
        .catch((error: unknown) => this.#options.logger.warn({ err_message: String(error) }, 'checkout queue tick failed'))
        .finally(() => {
          this.#ticking = false;
        });
    }, tickMs);
    this.#timer.unref();
  }

  stop(): void {
    clearInterval(this.#timer);
  }

  /** The `keel_queue` cookie's value for a ticket held by a checkout session: signed, bound to the session. */
  cookieValue(ticketId: string, sessionId: string): string {
    return `${ticketId}.${sessionId}.${this.#mac(ticketId, sessionId).toString('base64url')}`;
  }

  /** The ticket a cookie names for this session; undefined when absent, forged, or another session's. */
  ticketFromCookie(cookieHeader: string | undefined, sessionId: string): string | undefined {
    if (cookieHeader === undefined) return undefined;
    const raw = parseCookie(cookieHeader)[queueCookie];
    if (raw === undefined) return undefined;
    const [ticketId, boundTo, mac, extra] = raw.split('.');
    if (extra !== undefined || ticketId === undefined || mac === undefined || boundTo !== sessionId || !queueTicketPattern.test(ticketId)) return undefined;
    const given = Buffer.from(mac, 'base64url');
    const expected = this.#mac(ticketId, sessionId);
    return given.length === expected.length && timingSafeEqual(given, expected) ? ticketId : undefined;
  }

  /** HMAC-SHA256 of the ticket and the session it is bound to, under a key derived for the cookie alone. */
  #mac(ticketId: string, sessionId: string): Buffer {
    return createHmac('sha256', this.#cookieKey).update(`${ticketId}.${sessionId}`).digest();
  }

  /** A `Set-Cookie` header for the hosted page of `sessionId`. */
  setCookieHeader(ticketId: string, sessionId: string, secure: boolean): string {
    return stringifySetCookie({
      name: queueCookie,
      value: this.cookieValue(ticketId, sessionId),
      path: `/pay/${sessionId}`,
      httpOnly: true,
      sameSite: 'lax',
      secure,
      maxAge: 3_600,
    });
  }

  #advanceInput(queue: string): AdvanceInput {
    return { ...this.#advanceInputOf(queue), queue };
  }

  #advanceInputOf(queue: string | undefined): Omit<AdvanceInput, 'queue'> {
    const { config, meter, instance } = this.#options;
    return {
      now: this.#now(),
      instance,
      ttlMs: config.admissionTtlS * 1000,
      configured: config.mode === 'off' ? undefined : config.capacityPerS,
      // `on` admits at the configured rate alone; `off` has no bound at all.
      measured: config.mode !== 'auto' ? undefined : queue === undefined ? null : meter?.capacityOf(queue),
    };
  }

  /** Records the snapshot in the metrics and signals an edge; answers the admission rate estimates use. */
  #observe(snapshot: QueueSnapshot): number {
    const labels = { country: snapshot.queue };
    if (snapshot.waiting > 0) this.#queueing.add(snapshot.queue);
    else this.#queueing.delete(snapshot.queue);
    const rate = Number.isFinite(snapshot.capacity) ? snapshot.capacity : Math.max(snapshot.rate, 0.1);
    this.#metrics.length.set(labels, snapshot.waiting);
    this.#metrics.wait.set(labels, round(this.#waitS(snapshot.queue, snapshot.waiting, rate)));
    this.#metrics.capacity.set(labels, Number.isFinite(snapshot.capacity) ? snapshot.capacity : -1);
    if (snapshot.admitted > 0) this.#metrics.admissions.inc(labels, snapshot.admitted);
    if (snapshot.lapsed > 0) this.#metrics.lapsed.inc(labels, snapshot.lapsed);
    if (snapshot.edge !== undefined) this.#options.signals.signal('queue', { country: snapshot.queue, to: snapshot.edge });
    return rate;
  }

  /**
   * Seconds until `position` shoppers are admitted at `rate`. The API's measured capacity probes upwards while
   * checkout keeps up (capacity.ts), so the admissions it refills at grow by `probeGrowthPerS` a second: W solves
   * ∫₀ᵂ rate·(1+g)ᵗ dt = position. A configured rate, or the partner's bound, does not move: W = position / rate.
   */
  #waitS(queue: string, position: number, rate: number): number {
    const { meter, config } = this.#options;
    const configured = config.capacityPerS ?? Infinity;
    if (this.mode !== 'auto' || meter?.probes(queue) !== true || rate >= configured) return position / rate;
    const k = Math.log(1 + probeGrowthPerS);
    return Math.log(1 + (position * k) / rate) / k;
  }

  #ticket(record: TicketRecord, rate: number): Ticket {
    const estimatedWaitS = record.status === 'waiting' ? round(this.#waitS(record.queue, record.position ?? 0, rate)) : record.status === 'admitted' ? 0 : null;
    return { ...record, estimatedWaitS };
  }
}

function round(seconds: number): number {
  return Math.round(seconds * 10) / 10;
}

/** The API object of a ticket (`POST /v1/queue_tickets`, `GET /v1/queue_tickets/{id}`). */
export function ticketToApi(ticket: Ticket): Record<string, unknown> {
  return {
    id: ticket.id,
    object: 'queue_ticket',
    status: ticket.status,
    position: ticket.position,
    estimated_wait_s: ticket.estimatedWaitS,
    customer: ticket.customer,
    country: ticket.queue,
    joined_at: new Date(ticket.joinedAt).toISOString(),
    admitted_at: ticket.admittedAt === null ? null : new Date(ticket.admittedAt).toISOString(),
  };
}

/**
 * Uses the payment's queue ticket for `merchant:order` (a retry of the same order uses it again); refuses a
 * ticket of another merchant, still waiting, lapsed, or used by another order.
 */
export async function useQueueTicket(queue: CheckoutQueue, ticketId: string, merchantId: string, orderId: string): Promise<void> {
  const { result } = await queue.use(ticketId, `${merchantId}:${orderId}`, merchantId);
  if (result === 'missing') throw new KeelError('resource_missing', `No such queue ticket: ${ticketId}.`, { param: 'queue_ticket' });
  const reasons = { waiting: 'is still waiting in the queue', expired: 'was admitted but its admission lapsed unused; join the queue again', used: 'was already used by another order' } as const;
  if (result !== 'ok') throw new KeelError('queue_ticket_not_admitted', `Queue ticket ${ticketId} ${reasons[result]}.`, { param: 'queue_ticket' });
}

/** Whether the ticket is admitted for this merchant (a payment carrying it is work that finishes a payment). */
export async function admittedTicket(queue: CheckoutQueue, ticketId: unknown, merchantId: string): Promise<boolean> {
  if (typeof ticketId !== 'string' || !queueTicketPattern.test(ticketId)) return false;
  const ticket = await queue.status(ticketId);
  return ticket !== undefined && ticket.merchant === merchantId && ticket.status === 'admitted';
}
