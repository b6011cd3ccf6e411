// Proves the long-command progress line: written on each tick with the rows read so far (or only the time when
// they cannot be read), and never after it is stopped.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { progressLines } from './progress.js';

test('a progress line per tick, with the rows read or only the time, and none once stopped', async () => {
  const lines: string[] = [];
  let rows: number | undefined = 10_000;
  let ticks = 0;
  const ticked = new Promise<void>((resolve) => {
    const progress = progressLines(
      'reconciling toss 2026-06-15',
      async () => {
        ticks += 1;
        const now = rows;
        rows = ticks === 1 ? undefined : 30_000;
        if (ticks === 3) {
          progress.stop();
          resolve();
        }
        return now;
      },
      (line) => lines.push(line),
      5,
    );
  });
  await ticked;
  await new Promise((resolve) => setTimeout(resolve, 30));
  assert.equal(lines.length, 2, 'the third read came after stop: no line');
  assert.match(lines[0] ?? '', /^reconciling toss 2026-06-15: 10000 rows read, \d+ s$/);
  assert.match(lines[1] ?? '', /^reconciling toss 2026-06-15: \d+ s$/);
});
