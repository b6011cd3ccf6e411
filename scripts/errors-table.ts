// Prints the error catalogue as the Markdown table docs/errors.md carries: `node --import tsx scripts/errors-table.ts`.
import { errorCatalogue } from '../src/errors.js';

console.log('| code | HTTP | type | meaning |');
console.log('| --- | --- | --- | --- |');
for (const [code, entry] of Object.entries(errorCatalogue)) console.log(`| \`${code}\` | ${entry.status} | \`${entry.type}\` | ${entry.description} |`);
