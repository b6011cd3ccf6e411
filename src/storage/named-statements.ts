import type { PreparedStatements } from './database.js';

/**
 * Hot statements written with named parameters (`:name`), numbered once when their module loads and run as
 * named prepared statements (`Database.statements`): PostgreSQL parses and plans each once per connection.
 */
export interface NamedStatement {
  readonly name: string;
  readonly text: string;
  /** The parameter each `$n` stands for, in order. */
  readonly order: readonly string[];
}

/** `:name` placeholders (not `::type` casts) become `$1…$n`, one number per name. */
export function namedStatement(name: string, text: string): NamedStatement {
  const order: string[] = [];
  const numbered = text.replace(/(?<![:\w]):([a-z][a-z0-9_]*)/g, (_match, parameter: string) => {
    if (!order.includes(parameter)) order.push(parameter);
    return `$${order.indexOf(parameter) + 1}`;
  });
  return { name, text: numbered, order };
}

export function runNamed<R>(statements: PreparedStatements, statement: NamedStatement, parameters: Readonly<Record<string, unknown>>): Promise<R[]> {
  const values = statement.order.map((parameter) => {
    if (!(parameter in parameters)) throw new Error(`statement ${statement.name} needs :${parameter}`);
    return parameters[parameter];
  });
  return statements.run<R>(statement.name, statement.text, values);
}

