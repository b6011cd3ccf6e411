import { sql, type SelectQueryBuilder } from 'kysely';
import { Type, type TObject, type TProperties } from 'typebox';
import { KeelError } from '../errors.js';
import { idPrefixes, publicToUuid, type IdKind } from '../storage/ids.js';

/**
 * Cursor lists, as every list in the contract: `limit=1..100` (default 10) and `starting_after=ID`, newest
 * first, answered as `{"object":"list","data":[…],"has_more":bool}`. Ids are time-ordered UUIDv7, so "after" in
 * the list's order is "smaller id"; a page fetches one row more than it shows to know whether more remain.
 */
export interface Page {
  readonly limit: number;
  readonly startingAfter: string | undefined;
}

export const listLimitDefault = 10;

/** A list endpoint's query schema: `limit`, `starting_after`, and the endpoint's own filters. */
export function ListQuery<T extends TProperties>(filters: T): TObject<T & { limit: ReturnType<typeof limitField>; starting_after: ReturnType<typeof cursorField> }> {
  return Type.Object({ ...filters, limit: limitField(), starting_after: cursorField() }, { additionalProperties: false });
}

function limitField() {
  return Type.Optional(Type.Integer({ minimum: 1, maximum: 100 }));
}

function cursorField() {
  return Type.Optional(Type.String({ maxLength: 64 }));
}

/** The page a list request asks for; a cursor that is not an id of the listed kind is 400 `parameter_invalid`. */
export function pageOf(query: { readonly limit?: number | undefined; readonly starting_after?: string | undefined }, kind: IdKind): Page {
  if (query.starting_after === undefined) return { limit: query.limit ?? listLimitDefault, startingAfter: undefined };
  const startingAfter = publicToUuid(kind, query.starting_after);
  if (startingAfter === undefined) {
    throw new KeelError('parameter_invalid', `starting_after must be an id starting ${idPrefixes[kind]}_.`, { param: 'starting_after' });
  }
  return { limit: query.limit ?? listLimitDefault, startingAfter };
}

/** Restricts a query to the page, newest first, one row beyond it. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- any table with a uuid `id` column
export function paged<Q extends SelectQueryBuilder<any, any, any>>(query: Q, page: Page, idColumn = 'id'): Q {
  const after = page.startingAfter === undefined ? query : query.where(sql.ref(idColumn), '<', page.startingAfter);
  return after.orderBy(sql.ref(idColumn), 'desc').limit(page.limit + 1) as Q;
}

/** The list object for a page's rows (fetched with `paged`). */
export function listOf<R, T>(rows: readonly R[], page: Page, toApi: (row: R) => T): { object: 'list'; data: T[]; has_more: boolean } {
  return { object: 'list', data: rows.slice(0, page.limit).map(toApi), has_more: rows.length > page.limit };
}
