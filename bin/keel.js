#!/usr/bin/env node
// The `keel` command: runs the TypeScript CLI through tsx so `npx keel …` works from a checkout
// without a build step.
import { register } from 'tsx/esm/api';

register();
await import('../src/cli/main.ts');
