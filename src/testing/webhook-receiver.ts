import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

/** A shop's webhook endpoint on loopback for tests: it records every delivery and answers as told. */
export interface Received {
  readonly body: string;
  readonly signature: string | undefined;
  readonly at: number;
}

export interface WebhookReceiver {
  readonly url: string;
  readonly received: Received[];
  /** The event types delivered so far, in order. */
  types(): string[];
  close(): Promise<void>;
}

export async function startWebhookReceiver(answer: (count: number) => Promise<number> | number = () => 200): Promise<WebhookReceiver> {
  const received: Received[] = [];
  const server: Server = createServer((request: IncomingMessage, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      received.push({ body: Buffer.concat(chunks).toString('utf8'), signature: request.headers['keel-signature'] as string | undefined, at: Date.now() });
      void Promise.resolve(answer(received.length)).then((status) => response.writeHead(status).end());
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hooks`,
    received,
    types: () => received.map((delivery) => (JSON.parse(delivery.body) as { type: string }).type),
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}
