import { Agent, request } from 'undici';
import type { PartnerOutcome } from './connector.js';

/**
 * One undici agent per partner, with Keel's short timeouts: connect 1 s, read 5 s unless the partner's config
 * says otherwise. The answer separates a failure before the request was sent from one after it.
 */
export interface PartnerHttpOptions {
  readonly connectTimeoutMs: number;
  readonly readTimeoutMs: number;
  readonly connectionsMax: number;
}

export const partnerHttpDefaults: PartnerHttpOptions = { connectTimeoutMs: 1_000, readTimeoutMs: 5_000, connectionsMax: 256 };

export type PartnerHttpAnswer =
  | { readonly kind: 'response'; readonly status: number; readonly body: unknown }
  | { readonly kind: 'unreachable'; readonly reason: string }
  | { readonly kind: 'unknown'; readonly reason: string };

export interface PartnerHttpRequest {
  readonly method: 'GET' | 'POST' | 'DELETE';
  readonly path: string;
  readonly headers: Record<string, string>;
  readonly body?: string;
  readonly readTimeoutMs?: number;
}

/**
 * The reading every partner shares: a transport outcome passes through, 2xx is the value, 429 means the partner
 * did nothing, 5xx means the outcome is unknown. A 4xx is left to the partner's own error format.
 */
export function readAnswer<T>(
  answer: PartnerHttpAnswer,
  read: (body: unknown) => T,
  readClientError: (status: number, body: unknown) => PartnerOutcome<T>,
): PartnerOutcome<T> {
  if (answer.kind !== 'response') return answer;
  const { status, body } = answer;
  if (status >= 200 && status < 300) return { kind: 'ok', value: read(body) };
  if (status === 429) return { kind: 'unreachable', reason: 'partner rate limit (429)' };
  if (status >= 500) return { kind: 'unknown', reason: `partner answered ${status}` };
  return readClientError(status, body);
}

/** Error codes that prove the request never left Keel. */
const notSentCodes = new Set(['ECONNREFUSED', 'UND_ERR_CONNECT_TIMEOUT', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH']);
const responseBodyBytesMax = 1_048_576;

export class PartnerHttpClient {
  readonly baseUrl: string;
  /** `host:port` of the partner, the first part of every resource id. */
  readonly hostPort: string;
  readonly #agent: Agent;

  constructor(baseUrl: string, options: PartnerHttpOptions) {
    this.baseUrl = baseUrl.replace(/\/+$/, '');
    const url = new URL(this.baseUrl);
    this.hostPort = `${url.hostname}:${url.port === '' ? (url.protocol === 'https:' ? '443' : '80') : url.port}`;
    this.#agent = new Agent({
      connect: { timeout: options.connectTimeoutMs },
      headersTimeout: options.readTimeoutMs,
      bodyTimeout: options.readTimeoutMs,
      connections: options.connectionsMax,
      keepAliveTimeout: 10_000,
    });
  }

  async send(call: PartnerHttpRequest): Promise<PartnerHttpAnswer> {
    let response;
    try {
      response = await request(`${this.baseUrl}${call.path}`, {
        method: call.method,
        headers: call.headers,
        body: call.body ?? null,
        dispatcher: this.#agent,
        ...(call.readTimeoutMs === undefined ? {} : { headersTimeout: call.readTimeoutMs, bodyTimeout: call.readTimeoutMs }),
      });
    } catch (error) {
      return classifyFailure(error);
    }
    try {
      const text = await response.body.text();
      if (text.length > responseBodyBytesMax) return { kind: 'unknown', reason: 'partner response too large' };
      return { kind: 'response', status: response.statusCode, body: parseJson(text) };
    } catch (error) {
      return { kind: 'unknown', reason: `reading the partner's answer failed: ${errorCode(error)}` };
    }
  }

  async close(): Promise<void> {
    await this.#agent.close();
  }
}

function classifyFailure(error: unknown): PartnerHttpAnswer {
  const code = errorCode(error);
  if (notSentCodes.has(code)) return { kind: 'unreachable', reason: code };
  return { kind: 'unknown', reason: code };
}

function errorCode(error: unknown): string {
  const candidate = error as { code?: unknown; cause?: { code?: unknown } } | null;
  if (typeof candidate?.code === 'string') return candidate.code;
  if (typeof candidate?.cause?.code === 'string') return candidate.cause.code;
  return error instanceof Error ? error.name : 'unknown_error';
}

function parseJson(text: string): unknown {
  if (text === '') return null;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return { unparsable: text.slice(0, 200) };
  }
}
