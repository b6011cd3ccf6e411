import { startSimulator } from '../src/simulator/server.js';
import type { SimCharge } from '../src/simulator/model.js';

/**
 * The benchmark gateway of `npm run bench -- reconcile`, in a process of its own so that the day it holds (a
 * million charges) is not counted in Keel's memory. It records each account's day straight into its ledger, as
 * `dayOf` describes, prints `{"url"}` on one line, and stops when its standard input closes.
 */

export interface BenchDay {
  readonly day: string;
  readonly accounts: readonly { readonly secretKey: string; readonly prefix: string; readonly size: number }[];
}

/** One drift of each kind per this many payments (see `dayOf`). */
export const driftEvery = 100_000;

export const amountOf = (index: number) => 1000 + (index % 90) * 100;

/**
 * Payment `index` of an account's day: order `<prefix>_ord_<index>`, the partner's key `<prefix>_pk_<index>`,
 * approved at an even spread over the day. Every `driftEvery` payments the partner's record differs four ways:
 * at offset 7 it charged 100 less (AmountMismatch), at 11 it charged the order a second time (DuplicateCharge),
 * at 13 it has no record (MissingAtPartner), and once per block it holds a charge for an order Keel never made
 * (MissingLocally).
 */
function dayOf(prefix: string, size: number, day: string, account: string, record: (charge: SimCharge) => void): void {
  const start = Date.parse(`${day}T00:00:00Z`);
  const charge = (id: string, orderId: string, amount: number, at: number) => {
    const when = new Date(at);
    record({
      id,
      dialect: 'toss',
      account,
      orderId,
      orderName: null,
      amount,
      currency: 'KRW',
      country: 'KR',
      status: 'captured',
      capturedAmount: amount,
      refundedAmount: 0,
      cancels: [],
      metadata: {},
      cardLast4: '4242',
      createdAt: when,
      approvedAt: when,
      decline: null,
      paymentMethod: null,
      correlationId: null,
      history: [{ at, state: { status: 'captured', capturedAmount: amount, refundedAmount: 0, cancelCount: 0 } }],
      feeOverride: null,
    });
  };
  for (let index = 0; index < size; index += 1) {
    const at = start + Math.floor((index * 86_399_000) / size);
    const offset = index % driftEvery;
    if (offset === 13) continue;
    charge(`${prefix}_pk_${index}`, `${prefix}_ord_${index}`, amountOf(index) - (offset === 7 ? 100 : 0), at);
    if (offset === 11) charge(`${prefix}_dup_${index}`, `${prefix}_ord_${index}`, amountOf(index), at + 1);
    if (offset === 0) charge(`${prefix}_orphan_${index}`, `${prefix}_orphan_${index}`, 5000, at);
  }
}

/**
 * The anomalies a day of `size` payments holds by construction: four per `driftEvery` block begun, and one
 * `BalanceMismatch` for the day (the drifts change what the partner holds: the orphans alone add 5,000 each).
 */
export function driftsIn(size: number): { readonly blocks: number; readonly anomalies: number; readonly matched: number } {
  const blocks = Math.ceil(size / driftEvery);
  const hit = (offset: number) => Math.max(0, Math.ceil((size - offset) / driftEvery));
  return { blocks, anomalies: hit(0) + hit(7) + hit(11) + hit(13) + 1, matched: size - hit(7) - hit(13) };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const spec = JSON.parse(process.argv[2] ?? '{}') as BenchDay;
  const sim = await startSimulator({ port: 0 });
  for (const account of spec.accounts) dayOf(account.prefix, account.size, spec.day, account.secretKey, (charge) => sim.state.charges.set(charge.id, charge));
  process.stdout.write(`${JSON.stringify({ url: sim.url })}\n`);
  process.stdin.resume();
  process.stdin.on('end', () => {
    void sim.close().then(() => process.exit(0));
  });
}
