import { currentContext } from './context.js';

/**
 * Appends the request's correlation id to a SQL statement as a comment (sqlcommenter style), so a slow query
 * in `pg_stat_activity` or the server log leads back to the request that sent it. The id is already limited to
 * `[A-Za-z0-9._:-]`, so it cannot close the comment.
 */
export function withSqlComment(sql: string): string {
  const context = currentContext();
  if (context === undefined) return sql;
  return `${sql} /*correlation_id='${context.correlationId}'*/`;
}
