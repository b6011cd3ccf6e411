#!/usr/bin/env node
// Fails when Keel's modules import each other in a cycle. A module is a folder under src/ (or a root file such
// as runtime.ts); an import counts when it carries a value (`import type` does not), from non-test files.
// DESIGN.md's module table says dependencies point downward, and what a lower module needs from a higher one
// is passed in; a cycle is the first sign that an arrow points up. Part of `npm run lint`. ESLint's
// import/no-cycle works file by file and cannot see module-level cycles, so this is Keel's own.
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';

const root = resolve(process.argv[2] ?? 'src');
const files = [];
const walk = (dir) => {
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) walk(path);
    else if (path.endsWith('.ts') && !path.endsWith('.test.ts')) files.push(path);
  }
};
walk(root);

const moduleOf = (file) => relative(root, file).split('/')[0].replace(/\.ts$/, '');
const edges = new Map(); // module -> Map(target -> first file that imports it)
const importPattern = /^\s*(?:import|export)\s+(type\s+)?([^;]*?)\s*from\s*['"](\.[^'"]+)['"]/gms;
for (const file of files) {
  for (const match of readFileSync(file, 'utf8').matchAll(importPattern)) {
    const [, typeOnly, names, target] = match;
    if (typeOnly !== undefined) continue;
    const bindings = names.replace(/[{}\s]/g, '');
    if (bindings !== '' && bindings.split(',').every((binding) => binding.startsWith('type'))) continue;
    const from = moduleOf(file);
    const to = moduleOf(resolve(dirname(file), target.replace(/\.js$/, '.ts')));
    if (from === to) continue;
    if (!edges.has(from)) edges.set(from, new Map());
    if (!edges.get(from).has(to)) edges.get(from).set(to, relative(process.cwd(), file));
  }
}

// Tarjan's strongly connected components: every component of more than one module is a cycle.
let counter = 0;
const index = new Map();
const low = new Map();
const stack = [];
const onStack = new Set();
const cycles = [];
const visit = (module) => {
  index.set(module, counter);
  low.set(module, counter);
  counter += 1;
  stack.push(module);
  onStack.add(module);
  for (const next of edges.get(module)?.keys() ?? []) {
    if (!index.has(next)) {
      visit(next);
      low.set(module, Math.min(low.get(module), low.get(next)));
    } else if (onStack.has(next)) {
      low.set(module, Math.min(low.get(module), index.get(next)));
    }
  }
  if (low.get(module) === index.get(module)) {
    const component = [];
    let member;
    do {
      member = stack.pop();
      onStack.delete(member);
      component.push(member);
    } while (member !== module);
    if (component.length > 1) cycles.push(component);
  }
};
for (const module of edges.keys()) if (!index.has(module)) visit(module);

for (const cycle of cycles) {
  const inside = new Set(cycle);
  console.error(`module cycle: ${cycle.join(', ')}`);
  for (const [from, targets] of edges) {
    if (!inside.has(from)) continue;
    for (const [to, file] of targets) if (inside.has(to)) console.error(`  ${from} -> ${to} (${file})`);
  }
}
if (cycles.length > 0) process.exit(1);
console.log(`module graph: ${edges.size} modules import others, no cycles`);
