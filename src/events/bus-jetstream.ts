import { AckPolicy, DeliverPolicy, jetstream, jetstreamManager, type JetStreamClient, type JetStreamManager } from '@nats-io/jetstream';
import { headers, nanos, type NatsConnection } from '@nats-io/nats-core';
import { connect } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import { retentionDaysDefault } from '../config.js';
import type { EventBus, EventHandler, KeelEvent, SubscribeOptions } from './bus.js';

/**
 * NATS JetStream: stream `KEEL_EVENTS` on subjects `keel.<type>`, created if missing, with a de-duplication
 * window keyed by event id (`Nats-Msg-Id`), so a relay that publishes an event again after a crash stores it
 * once. Consumers are durable, explicitly acknowledged after their handler commits.
 */
export const streamName = 'KEEL_EVENTS';
export const duplicateWindowMs = 120_000;
/** Readiness: how long a round trip to NATS may take before the instance reports it unreachable. */
export const pingTimeoutMs = 1_000;
/** The deployment that published an event; consumers take only their own deployment's. */
export const namespaceHeader = 'Keel-Namespace';

/**
 * `namespace` names this deployment's durable consumers (`<namespace>_<consumer>`) and marks its events
 * (header `Keel-Namespace`), so deployments (or test schemas) sharing one NATS server never take each other's
 * deliveries nor apply each other's events. A consumer created for the first time
 * starts at the stream's end: in Keel's topology the relay runs only in workers, and a worker subscribes before
 * its relay starts, so no event of its own deployment precedes its consumers.
 */
export async function createJetStreamBus(url: string, logger: Logger, namespace = 'keel', options: { readonly maxAgeDays?: number } = {}): Promise<EventBus> {
  const connection: NatsConnection = await connect({ servers: url, maxReconnectAttempts: -1, reconnectTimeWait: 500, name: 'keel' });
  const manager: JetStreamManager = await jetstreamManager(connection);
  await ensureStream(manager, options.maxAgeDays ?? retentionDaysDefault, logger);
  const client: JetStreamClient = jetstream(connection);
  const loops: Promise<void>[] = [];
  let closing = false;

  return {
    async publish(event: KeelEvent) {
      const marked = headers();
      marked.set(namespaceHeader, namespace);
      await client.publish(`keel.${event.type}`, JSON.stringify(event), { msgID: event.id, timeout: 2_000, headers: marked });
    },
    async subscribe(consumer: string, handler: EventHandler, options: SubscribeOptions = {}) {
      const concurrency = Math.max(1, options.concurrency ?? 1);
      const durable = `${namespace}_${consumer}`.replace(/[^A-Za-z0-9_-]/g, '_');
      try {
        await manager.consumers.info(streamName, durable);
      } catch {
        const start = options.startAt === undefined ? { deliver_policy: DeliverPolicy.New } : { deliver_policy: DeliverPolicy.StartTime, opt_start_time: options.startAt.toISOString() };
        await manager.consumers.add(streamName, { durable_name: durable, ack_policy: AckPolicy.Explicit, ack_wait: nanos(30_000), ...start });
      }
      const subscription = await client.consumers.get(streamName, durable);
      loops.push(
        (async () => {
          while (!closing) {
            try {
              const messages = await subscription.consume({ max_messages: 100 });
              const inFlight = new Set<Promise<void>>();
              for await (const message of messages) {
                // Another deployment's event on a shared server: not this consumer's business. (An event without
                // the header was published by a Keel from before the header existed, and is taken.)
                const publisher = message.headers?.get(namespaceHeader) ?? '';
                if (publisher !== '' && publisher !== namespace) {
                  message.ack();
                  continue;
                }
                const handled = handler(message.json<KeelEvent>()).then(
                  () => message.ack(),
                  (error: unknown) => {
                    logger.warn({ err: error, consumer }, 'event handler failed; the event will be redelivered');
                    message.nak(1_000);
                  },
                );
                inFlight.add(handled);
                void handled.finally(() => inFlight.delete(handled));
                if (inFlight.size >= concurrency) await Promise.race(inFlight);
                if (closing) break;
              }
              await Promise.all(inFlight);
            } catch (error) {
              if (!closing) logger.warn({ err_message: String(error), consumer }, 'event consumer interrupted; resuming');
              await new Promise((resolve) => setTimeout(resolve, 500));
            }
          }
        })(),
      );
    },
    async ping() {
      if (connection.isClosed()) throw new Error('NATS connection closed');
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<never>((_resolve, reject) => {
        timer = setTimeout(() => reject(new Error(`NATS did not answer within ${pingTimeoutMs} ms`)), pingTimeoutMs);
      });
      try {
        await Promise.race([connection.rtt(), timeout]);
      } finally {
        clearTimeout(timer);
      }
    },
    async close() {
      closing = true;
      await connection.drain().catch(() => undefined);
    },
  };
}

/** Creates the stream, or brings an existing one's `max_age` to the retention asked for. */
async function ensureStream(manager: JetStreamManager, maxAgeDays: number, logger: Logger): Promise<void> {
  const maxAge = nanos(maxAgeDays * 86_400_000);
  let info: Awaited<ReturnType<JetStreamManager['streams']['info']>> | undefined;
  try {
    info = await manager.streams.info(streamName);
  } catch {
    await manager.streams.add({ name: streamName, subjects: ['keel.>'], duplicate_window: nanos(duplicateWindowMs), max_age: maxAge });
    return;
  }
  if (info.config.max_age !== maxAge) {
    await manager.streams.update(streamName, { max_age: maxAge });
    logger.info({ stream: streamName, max_age_days: maxAgeDays }, 'event stream retention set');
  }
}
