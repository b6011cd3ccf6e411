import { KeelError } from '../errors.js';

/**
 * The checks every request value passes before its route's schema sees it, whatever the route: strings and
 * object keys are well-formed Unicode without NUL (PostgreSQL `text` cannot hold `\u0000`, and a lone UTF-16
 * surrogate cannot be encoded as UTF-8), numbers are exact (an integer beyond 2^53 − 1 has already lost digits
 * when JSON was parsed), and nesting is shallow. A refusal names the parameter and happens before any write.
 */
export const nestingDepthMax = 16;

// Without the `u` flag the pattern reads UTF-16 code units, so it sees a lone half of a surrogate pair.
// eslint-disable-next-line no-control-regex -- NUL is exactly what this pattern looks for
const unsafeText = /\u0000|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

export function isSafeText(text: string): boolean {
  return !unsafeText.test(text);
}

/**
 * Walks a parsed value without recursion (a hostile body cannot overflow the stack) and throws the first
 * refusal. `prefix` names where the value came from ('' for the body, 'querystring.' and the like otherwise).
 */
export function assertSafeInput(value: unknown, prefix: string): void {
  const pending: { value: unknown; path: readonly string[] }[] = [{ value, path: [] }];
  for (let item = pending.pop(); item !== undefined; item = pending.pop()) {
    const { value: current, path } = item;
    if (typeof current === 'string') {
      if (!isSafeText(current)) throw refusal(paramName(prefix, path), 'must be well-formed Unicode text without NUL characters');
      continue;
    }
    if (typeof current === 'number') {
      if (!Number.isFinite(current) || (Number.isInteger(current) && !Number.isSafeInteger(current))) {
        throw refusal(paramName(prefix, path), 'is beyond the exact range of a number (2^53 - 1); send amounts in minor units');
      }
      continue;
    }
    if (current === null || typeof current !== 'object') continue;
    if (path.length >= nestingDepthMax) throw refusal(paramName(prefix, path), `is nested more than ${nestingDepthMax} levels deep`);
    if (Array.isArray(current)) {
      current.forEach((element: unknown, index) => pending.push({ value: element, path: [...path, String(index)] }));
      continue;
    }
    for (const [key, element] of Object.entries(current as Record<string, unknown>)) {
      if (!isSafeText(key)) throw refusal(paramName(prefix, path), 'has a key that is not well-formed Unicode text without NUL characters');
      pending.push({ value: element, path: [...path, key] });
    }
  }
}

function paramName(prefix: string, path: readonly string[]): string {
  return `${prefix}${path.join('.')}`.replace(/\.$/, '') || 'body';
}

function refusal(param: string, reason: string): KeelError {
  return new KeelError('parameter_invalid', `Invalid parameter ${param}: ${reason}.`, { param });
}
