/**
 * The event bus port: the relay publishes outbox rows to it, consumers subscribe. Two adapters: in-process
 * (embedded mode) and NATS JetStream (`KEEL_NATS_URL`). Both deliver at least once; consumers de-duplicate by
 * event id in the inbox table.
 */
export interface KeelEvent {
  readonly id: string;
  readonly type: string;
  readonly created_at: string;
  readonly merchant: string;
  readonly correlation_id: string | null;
  readonly data: { readonly object: Record<string, unknown> };
}

export type EventHandler = (event: KeelEvent) => Promise<void>;

export interface SubscribeOptions {
  readonly concurrency?: number;
  /**
   * Where a durable consumer created for the first time starts: by default at the stream's end; with `startAt`,
   * at the first event stored from that time (a consumer that can de-duplicate what it already holds).
   */
  readonly startAt?: Date;
}

export interface EventBus {
  /** Publishes one event; resolves once the bus holds it (JetStream: the stream acknowledged it). */
  publish(event: KeelEvent): Promise<void>;
  /**
   * A durable subscription named `consumer`: every event reaches it at least once, in publish order unless
   * `concurrency` above 1 lets that many events be handled at once (for consumers whose effects commute).
   */
  subscribe(consumer: string, handler: EventHandler, options?: SubscribeOptions): Promise<void>;
  /** Resolves when the broker answers a round trip (readiness); rejects otherwise. */
  ping(): Promise<void>;
  close(): Promise<void>;
}

/** In-process bus: delivery is a call to each subscriber, retried by the relay if a subscriber fails. */
export function createMemoryBus(): EventBus {
  const subscribers = new Map<string, EventHandler>();
  return {
    async publish(event) {
      for (const handler of subscribers.values()) await handler(event);
    },
    async subscribe(consumer, handler) {
      subscribers.set(consumer, handler);
    },
    async ping() {},
    async close() {
      subscribers.clear();
    },
  };
}
