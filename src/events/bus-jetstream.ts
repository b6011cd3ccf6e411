import { AckPolicy, DeliverPolicy, jetstream, jetstreamManager, type JetStreamClient, type JetStreamManager } from '@nats-io/jetstream';
import { headers, nanos, type NatsConnection } from '@nats-io/nats-core';
import { connect } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import { retentionDaysDefault } from '../config.js';
import type { EventBus, EventHandler, KeelEvent, SubscribeOptions } from './bus.js';

/**
 * NATS JetStream. Each deployment has its own stream, `KEEL_EVENTS_<NAMESPACE>`, on subjects
 * `<namespace>.<type>`, created if missing, with a de-duplication window keyed by event id (`Nats-Msg-Id`), so a
 * relay that publishes an event again after a crash stores it once. Consumers are durable, explicitly
 * acknowledged after their handler commits, and never acknowledge an event they did not apply.
 */
export const duplicateWindowMs = 120_000;
/** Readiness: how long a round trip to NATS may take before the instance reports it unreachable. */
export const pingTimeoutMs = 1_000;
/** The deployment that published an event; a consumer applies only its own deployment's. */
export const deploymentHeader = 'Keel-Deployment';
/** How long a consumer waits before another deployment's event, refused, is offered again. */
export const foreignRedeliveryMs = 1_000;

export interface JetStreamOptions {
  /**
   * Names the stream, its subjects and its durable consumers. By default derived from the deployment's identity
   * (`eventNamespace`), so deployments sharing a NATS server never share a stream or a consumer.
   */
  readonly namespace: string;
  /** This deployment's id (`deployment` table): marks every event published, and is checked by every consumer. */
  readonly deployment: string;
  readonly maxAgeDays?: number;
}

/** The default namespace of a deployment: `keel_` and 12 hex digits of its id. */
export function eventNamespace(deployment: string): string {
  return `keel_${deployment.replaceAll('-', '').slice(0, 12)}`;
}

/** A namespace is a single NATS subject token: lower-case letters, digits, `_` and `-`. */
export function checkNamespace(namespace: string): string {
  if (!/^[a-z0-9_-]{1,40}$/.test(namespace)) throw new Error(`KEEL_EVENTS_NAMESPACE must be 1-40 of a-z, 0-9, _ and - (got ${JSON.stringify(namespace)})`);
  return namespace;
}

export function streamNameOf(namespace: string): string {
  return `KEEL_EVENTS_${namespace.toUpperCase().replaceAll('-', '_')}`;
}

export async function createJetStreamBus(url: string, logger: Logger, options: JetStreamOptions): Promise<EventBus> {
  const { namespace, deployment } = options;
  const streamName = streamNameOf(checkNamespace(namespace));
  const connection: NatsConnection = await connect({ servers: url, maxReconnectAttempts: -1, reconnectTimeWait: 500, name: `keel ${namespace}` });
  const manager: JetStreamManager = await jetstreamManager(connection);
  await ensureStream(manager, streamName, `${namespace}.>`, options.maxAgeDays ?? retentionDaysDefault, logger);
  const client: JetStreamClient = jetstream(connection);
  const loops: Promise<void>[] = [];
  let closing = false;

  return {
    async publish(event: KeelEvent) {
      const marked = headers();
      marked.set(deploymentHeader, deployment);
      await client.publish(`${namespace}.${event.type}`, JSON.stringify(event), { msgID: event.id, timeout: 2_000, headers: marked });
    },
    async subscribe(consumer: string, handler: EventHandler, options: SubscribeOptions = {}) {
      const concurrency = Math.max(1, options.concurrency ?? 1);
      const durable = consumer.replace(/[^A-Za-z0-9_-]/g, '_');
      try {
        await manager.consumers.info(streamName, durable);
      } catch {
        const start = options.startAt === undefined ? { deliver_policy: DeliverPolicy.All } : { deliver_policy: DeliverPolicy.StartTime, opt_start_time: options.startAt.toISOString() };
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
                // Another deployment's event: only possible when two deployments were given one namespace. It is
                // neither applied nor acknowledged here, so a consumer of the deployment it belongs to can take it.
                const publisher = message.headers?.get(deploymentHeader) ?? '';
                if (publisher !== deployment) {
                  logger.error({ consumer, stream: streamName, publisher }, 'event from another deployment on this stream; left unacknowledged (give each deployment its own KEEL_EVENTS_NAMESPACE)');
                  message.nak(foreignRedeliveryMs);
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
async function ensureStream(manager: JetStreamManager, streamName: string, subjects: string, maxAgeDays: number, logger: Logger): Promise<void> {
  const maxAge = nanos(maxAgeDays * 86_400_000);
  let info: Awaited<ReturnType<JetStreamManager['streams']['info']>> | undefined;
  try {
    info = await manager.streams.info(streamName);
  } catch {
    await manager.streams.add({ name: streamName, subjects: [subjects], duplicate_window: nanos(duplicateWindowMs), max_age: maxAge });
    return;
  }
  if (info.config.max_age !== maxAge) {
    await manager.streams.update(streamName, { max_age: maxAge });
    logger.info({ stream: streamName, max_age_days: maxAgeDays }, 'event stream retention set');
  }
}
