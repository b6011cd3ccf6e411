import { AsyncLocalStorage } from 'node:async_hooks';
import { randomUUID } from 'node:crypto';

/**
 * The request context carried through every await of a request, job or partner call: the correlation id
 * reaches log lines, partner headers and SQL comments without being passed by hand.
 */
export interface RequestContext {
  readonly correlationId: string;
  readonly requestId: string;
  /** When the request must have answered (epoch ms); retries never wait past it. Absent for jobs. */
  readonly deadlineAt?: number;
  /** Time this request spent waiting on partners, so load shedding can measure Keel's own latency. */
  readonly timing?: { partnerMs: number };
}

const storage = new AsyncLocalStorage<RequestContext>();

const correlationIdPattern = /^[A-Za-z0-9._:-]{1,128}$/;

/** Adopts a well-formed client correlation id; anything else is replaced, since it lands in logs and SQL. */
export function correlationIdFrom(header: unknown): string {
  if (typeof header === 'string' && correlationIdPattern.test(header)) return header;
  return `corr_${randomUUID()}`;
}

export function runWithContext<T>(context: RequestContext, work: () => T): T {
  return storage.run(context, work);
}

export function enterContext(context: RequestContext): void {
  storage.enterWith(context);
}

export function currentContext(): RequestContext | undefined {
  return storage.getStore();
}

export function newJobContext(job: string, correlationId?: string): RequestContext {
  return { correlationId: correlationId ?? `job_${job}_${randomUUID()}`, requestId: `job_${randomUUID()}` };
}
