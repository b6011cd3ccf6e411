// Proves that a partner's settlement report is read page by page, as each partner pages it (Toss `page`/`size`,
// Stripe `starting_after`), every row once, and that the benchmark gateway refuses a Toss page larger than Toss
// serves; each row carries its own sold and payout days, and is paid out (Stripe: available) only once its payout
// day has come, as `POST /__sim/payouts` sets it.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { startSimulator, type Simulator } from '../simulator/server.js';
import { defaultPayoutDelayDays } from '../simulator/model.js';
import { settlementPageSizeMax } from '../simulator/toss.js';
import { partnerReportPages } from './settlements.js';

let sim: Simulator;
before(async () => {
  sim = await startSimulator({ port: 0 });
});
after(async () => {
  await sim.close();
});

const today = new Date().toISOString().slice(0, 10);

async function charges(dialect: 'toss' | 'stripe', secretKey: string, count: number): Promise<void> {
  for (let index = 0; index < count; index += 1) {
    const response = await fetch(`${sim.url}/__sim/charges`, {
      method: 'POST',
      body: JSON.stringify({ order_id: `paged-${dialect}-${index}`, amount: 1000 + index, currency: dialect === 'toss' ? 'KRW' : 'USD', country: dialect === 'toss' ? 'KR' : 'US', dialect, secret_key: secretKey }),
    });
    assert.equal(response.status, 201);
  }
}

for (const gateway of ['toss', 'stripe'] as const) {
  test(`a ${gateway} report of five sales read two rows at a time is three pages, every sale once`, async () => {
    const secretKey = gateway === 'toss' ? 'test_sk_paged' : 'sk_test_paged';
    await charges(gateway, secretKey, 5);
    const pages = [];
    for await (const page of partnerReportPages(gateway, sim.url, secretKey, { startDate: today, endDate: today }, 2)) pages.push(page.rows);
    assert.deepEqual(pages.map((rows) => rows.length), [2, 2, 1]);
    const rows = pages.flat();
    assert.equal(new Set(rows.map((row) => row.reference)).size, 5);
    assert.deepEqual(rows.map((row) => Number(row.gross)).sort(), [1000, 1001, 1002, 1003, 1004]);
  });
}

test('a Toss page larger than Toss serves is refused; each row has its sold and payout days', async () => {
  const authorization = `Basic ${Buffer.from('test_sk_paged:').toString('base64')}`;
  const tooLarge = await fetch(`${sim.url}/v1/settlements?startDate=${today}&endDate=${today}&size=${settlementPageSizeMax + 1}`, { headers: { authorization } });
  assert.equal(tooLarge.status, 400);
  const [row] = (await (await fetch(`${sim.url}/v1/settlements?startDate=${today}&endDate=${today}&size=1`, { headers: { authorization } })).json()) as { soldDate: string; paidOutDate: string }[];
  const payout = new Date(Date.parse(`${today}T00:00:00Z`) + defaultPayoutDelayDays * 86_400_000).toISOString().slice(0, 10);
  assert.deepEqual([row?.soldDate, row?.paidOutDate], [today, payout]);
});

for (const gateway of ['toss', 'stripe'] as const) {
  test(`a ${gateway} row is paid out on its payout day: not before, and the same day with no delay`, async () => {
    const secretKey = gateway === 'toss' ? 'test_sk_payouts' : 'sk_test_payouts';
    const read = async () => {
      const rows = [];
      for await (const page of partnerReportPages(gateway, sim.url, secretKey, { startDate: today, endDate: today })) rows.push(...page.rows);
      return rows;
    };
    const setDelay = (days: unknown) => fetch(`${sim.url}/__sim/payouts`, { method: 'POST', body: JSON.stringify({ delay_days: days }) }).then((response) => response.status);
    await charges(gateway, secretKey, 1);
    const [waiting] = await read();
    assert.equal(waiting?.paidOn, null, `paid out ${defaultPayoutDelayDays} days after the sale`);
    assert.equal(waiting?.soldOn, today);
    assert.equal(await setDelay(0), 200);
    try {
      const [paid] = await read();
      assert.equal(paid?.paidOn, today);
    } finally {
      assert.equal(await setDelay(defaultPayoutDelayDays), 200);
    }
    assert.deepEqual([await setDelay(-1), await setDelay(31), await setDelay('2')], [400, 400, 400]);
  });
}
