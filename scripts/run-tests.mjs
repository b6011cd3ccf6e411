#!/usr/bin/env node
// Runs Keel's tests with Node's own test runner (through tsx, so no build step). Every `*.test.ts` under the
// given folders (default: src) runs in its own process; `--embedded` forces the embedded PGlite database even
// when KEEL_TEST_DATABASE_URL is set, which is how CI runs the storage and payment tests on both engines.
import { spawnSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

const args = process.argv.slice(2);
const embedded = args.includes('--embedded');
const roots = args.filter((arg) => !arg.startsWith('--'));
const files = [];
const walk = (path) => {
  if (statSync(path).isFile()) {
    if (path.endsWith('.test.ts')) files.push(path);
    return;
  }
  for (const entry of readdirSync(path).sort()) {
    if (entry === 'node_modules') continue;
    walk(join(path, entry));
  }
};
for (const root of roots.length > 0 ? roots : ['src']) walk(root);
if (files.length === 0) {
  console.error('no test files found');
  process.exit(1);
}
const env = { ...process.env, ...(embedded ? { KEEL_TEST_EMBEDDED: '1' } : {}) };
const concurrency = process.env.KEEL_TEST_CONCURRENCY ?? '2';
const result = spawnSync(
  process.execPath,
  ['--import', 'tsx', '--test', `--test-concurrency=${concurrency}`, '--test-reporter=spec', ...files],
  { stdio: 'inherit', env },
);
process.exit(result.status ?? 1);
