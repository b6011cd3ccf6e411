/**
 * HTML that escapes by default: every value interpolated into an `html` template is escaped, unless it is
 * itself `Html` (another template's output), so markup can be composed but text can never become markup.
 * Arrays are joined, `null`, `undefined` and `false` render nothing. `jsonData` embeds a value in a
 * `<script type="application/json">` block safely. A tagged template is all Keel's two server-rendered pages
 * need; a template engine would add a dependency and a second syntax for the same guarantee.
 */
export class Html {
  constructor(readonly text: string) {}

  toString(): string {
    return this.text;
  }
}

const entities: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

export function escapeHtml(value: string): string {
  return value.replace(/[&<>"']/g, (char) => entities[char] ?? char);
}

function render(value: unknown): string {
  if (value instanceof Html) return value.text;
  if (Array.isArray(value)) return value.map(render).join('');
  if (value === null || value === undefined || value === false) return '';
  return escapeHtml(String(value));
}

export function html(strings: TemplateStringsArray, ...values: readonly unknown[]): Html {
  let text = strings[0] ?? '';
  values.forEach((value, index) => {
    text += render(value) + (strings[index + 1] ?? '');
  });
  return new Html(text);
}

/** JSON for a data block: `<`, `>`, `&` and the JavaScript line separators are escaped, so it cannot end the block. */
export function jsonData(value: unknown): Html {
  const json = JSON.stringify(value).replace(/[<>&\u2028\u2029]/g, (char) => `\\u${char.charCodeAt(0).toString(16).padStart(4, '0')}`);
  return new Html(json);
}
