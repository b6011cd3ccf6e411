import type { Kysely, Selectable, Transaction } from 'kysely';
import { KeelError } from '../errors.js';
import { paged, type Page } from '../http/lists.js';
import { newId, publicToUuid, uuidToPublic } from '../storage/ids.js';
import type { ActionItemsTable, KeelDatabase, PostmortemsTable } from '../storage/schema.js';
import type { IncidentRow } from './incidents.js';
import { queueNotice } from './notices.js';
import type { OutageRecord } from './outage.js';

/**
 * Post-mortems: one per incident, created when it resolves, due `KEEL_POSTMORTEM_DUE_DAYS` later, prefilled with
 * the incident's summary, timeline and outage record (never with what happened: that is the team's to write).
 * `published` needs what happened, at least one wrong assumption and at least one action item. Action items have
 * an owner, a due date and a status. A post-mortem past due and not published, and an open action item past
 * due, are overdue: listed with `overdue=true` and reminded in chat once a day.
 */
export type PostmortemRow = Selectable<PostmortemsTable>;
export type ActionItemRow = Selectable<ActionItemsTable>;
type Db = Kysely<KeelDatabase>;
type Trx = Transaction<KeelDatabase>;

export const postmortemStatuses = ['draft', 'in_review', 'published'] as const;
export type PostmortemStatus = (typeof postmortemStatuses)[number];

export async function createPostmortem(trx: Trx, incident: IncidentRow, outage: OutageRecord, dueDays: number): Promise<void> {
  const resolvedAt = new Date(incident.resolved_at ?? Date.now());
  const timeline = await trx.selectFrom('incident_timeline').select(['at', 'kind', 'text', 'author', 'important']).where('incident_id', '=', incident.id).orderBy('at').orderBy('id').execute();
  await trx
    .insertInto('postmortems')
    .values({
      id: newId('postmortem').uuid,
      incident_id: incident.id,
      due_at: new Date(resolvedAt.getTime() + dueDays * 86_400_000),
      summary: incident.summary ?? incident.title,
      what_happened: null,
      wrong_assumptions: '[]',
      timeline: JSON.stringify(timeline.map((entry) => ({ ...entry, at: new Date(entry.at).toISOString() }))),
      outage: JSON.stringify(outage),
    })
    .onConflict((conflict) => conflict.column('incident_id').doNothing())
    .execute();
}

const isOverdue = (row: PostmortemRow, items: readonly ActionItemRow[], now: number) =>
  (row.status !== 'published' && new Date(row.due_at).getTime() < now) || items.some((item) => itemOverdue(item, now));
const itemOverdue = (item: ActionItemRow, now: number) => item.status === 'open' && item.due_at !== null && new Date(item.due_at).getTime() < now;

export function actionItemToApi(item: ActionItemRow, now = Date.now()): Record<string, unknown> {
  return {
    id: uuidToPublic('actionItem', item.id),
    object: 'action_item',
    postmortem: uuidToPublic('postmortem', item.postmortem_id),
    text: item.text,
    owner: item.owner,
    due_at: item.due_at === null ? null : new Date(item.due_at).toISOString(),
    status: item.status,
    overdue: itemOverdue(item, now),
  };
}

export function postmortemToApi(row: PostmortemRow, items: readonly ActionItemRow[], now = Date.now()): Record<string, unknown> {
  return {
    id: uuidToPublic('postmortem', row.id),
    object: 'postmortem',
    incident: uuidToPublic('incident', row.incident_id),
    status: row.status,
    due_at: new Date(row.due_at).toISOString(),
    overdue: isOverdue(row, items, now),
    summary: row.summary,
    what_happened: row.what_happened,
    wrong_assumptions: row.wrong_assumptions,
    timeline: row.timeline,
    outage: row.outage,
    action_items: items.map((item) => actionItemToApi(item, now)),
  };
}

export async function itemsOf(db: Db | Trx, postmortemId: string): Promise<ActionItemRow[]> {
  return db.selectFrom('action_items').selectAll().where('postmortem_id', '=', postmortemId).orderBy('id').execute();
}

export async function postmortemApi(db: Db, row: PostmortemRow): Promise<Record<string, unknown>> {
  return postmortemToApi(row, await itemsOf(db, row.id));
}

export async function findPostmortem(db: Db | Trx, publicId: string, options: { forUpdate?: boolean } = {}): Promise<PostmortemRow> {
  const missing = () => new KeelError('resource_missing', `No such post-mortem: ${publicId}.`, { param: 'id' });
  const id = publicToUuid('postmortem', publicId);
  if (id === undefined) throw missing();
  let query = db.selectFrom('postmortems').selectAll().where('id', '=', id);
  if (options.forUpdate === true) query = query.forUpdate();
  const row = await query.executeTakeFirst();
  if (row === undefined) throw missing();
  return row;
}

export async function postmortemOfIncident(db: Db, incidentId: string): Promise<PostmortemRow | undefined> {
  return db.selectFrom('postmortems').selectAll().where('incident_id', '=', incidentId).executeTakeFirst();
}

export async function listPostmortems(db: Db, filter: { status?: PostmortemStatus; overdue?: boolean }, page: Page): Promise<PostmortemRow[]> {
  let query = db.selectFrom('postmortems').selectAll();
  if (filter.status !== undefined) query = query.where('status', '=', filter.status);
  if (filter.overdue === true) {
    query = query.where((eb) =>
      eb.or([
        eb.and([eb('status', '<>', 'published'), eb('due_at', '<', new Date())]),
        eb.exists(eb.selectFrom('action_items').select('action_items.id').whereRef('action_items.postmortem_id', '=', 'postmortems.id').where('action_items.status', '=', 'open').where('action_items.due_at', '<', new Date())),
      ]),
    );
  }
  return paged(query, page).execute();
}

export interface PostmortemUpdate {
  readonly summary?: string;
  readonly what_happened?: string;
  readonly wrong_assumptions?: readonly string[];
  readonly status?: PostmortemStatus;
}

/** Replaces the fields the update names; publishing checks the post-mortem is complete, as it would then stand. */
export async function updatePostmortem(db: Db, publicId: string, update: PostmortemUpdate): Promise<PostmortemRow> {
  return db.transaction().execute(async (trx) => {
    const row = await findPostmortem(trx, publicId, { forUpdate: true });
    const whatHappened = update.what_happened ?? row.what_happened;
    const wrongAssumptions = update.wrong_assumptions ?? row.wrong_assumptions;
    if (update.status === 'published') {
      const items = await itemsOf(trx, row.id);
      if (whatHappened === null || whatHappened.trim() === '' || wrongAssumptions.length === 0 || items.length === 0) {
        throw new KeelError('postmortem_incomplete', 'Publishing needs what happened, at least one wrong assumption and at least one action item.', { param: 'status' });
      }
    }
    return trx
      .updateTable('postmortems')
      .set({
        ...(update.summary === undefined ? {} : { summary: update.summary }),
        ...(update.what_happened === undefined ? {} : { what_happened: update.what_happened }),
        ...(update.wrong_assumptions === undefined ? {} : { wrong_assumptions: JSON.stringify(update.wrong_assumptions) }),
        ...(update.status === undefined ? {} : { status: update.status }),
        updated_at: new Date(),
      })
      .where('id', '=', row.id)
      .returningAll()
      .executeTakeFirstOrThrow();
  });
}

export async function addActionItem(db: Db, publicId: string, item: { text: string; owner: string; dueAt: Date | null }): Promise<ActionItemRow> {
  const row = await findPostmortem(db, publicId);
  return db
    .insertInto('action_items')
    .values({ id: newId('actionItem').uuid, postmortem_id: row.id, text: item.text, owner: item.owner, due_at: item.dueAt })
    .returningAll()
    .executeTakeFirstOrThrow();
}

export async function setActionItemStatus(db: Db, publicId: string, status: 'open' | 'done'): Promise<ActionItemRow> {
  const id = publicToUuid('actionItem', publicId);
  const row = id === undefined ? undefined : await db.updateTable('action_items').set({ status }).where('id', '=', id).returningAll().executeTakeFirst();
  if (row === undefined) throw new KeelError('resource_missing', `No such action item: ${publicId}.`, { param: 'id' });
  return row;
}

/** The post-mortem as a Markdown document, for a wiki or a review. */
export function postmortemMarkdown(row: PostmortemRow, items: readonly ActionItemRow[], incident: IncidentRow): string {
  const outage = row.outage as unknown as Partial<OutageRecord>;
  const line = (text: string | null | undefined) => (text === null || text === undefined || text === '' ? '_(not written yet)_' : text);
  const timeline = (row.timeline as { at: string; kind: string; text: string; author: string | null; important: boolean }[]).map(
    (entry) => `| ${entry.at} | ${entry.kind} | ${entry.important ? '**' : ''}${entry.text.replaceAll('|', '\\|')}${entry.important ? '**' : ''} | ${entry.author ?? ''} |`,
  );
  const impact = outage.impact;
  return [
    `# Post-mortem: ${incident.title}`,
    '',
    `${uuidToPublic('postmortem', row.id)} · incident ${uuidToPublic('incident', incident.id)} · ${incident.severity} · ${row.status} · due ${new Date(row.due_at).toISOString().slice(0, 10)}`,
    '',
    '## Summary',
    '',
    line(row.summary),
    '',
    '## Impact',
    '',
    `- Started ${outage.started_at ?? '?'}, detected ${outage.detected_at ?? '?'}, mitigated ${outage.mitigated_at ?? '?'}, resolved ${outage.resolved_at ?? '?'} (${outage.duration_s ?? '?'} s; ${outage.time_to_detect_s ?? '?'} s to detect, ${outage.time_to_mitigate_s ?? '?'} s to mitigate)`,
    `- Partners: ${outage.gateways?.length ? outage.gateways.join(', ') : 'all'}; countries: ${outage.countries?.length ? outage.countries.join(', ') : 'all'}`,
    `- Payments failed ${impact?.payments_failed ?? 0}, unreachable ${impact?.payments_unreachable ?? 0}, processing ${impact?.payments_processing ?? 0}; at risk ${impact?.amount_at_risk?.map((money) => `${money.amount} ${money.currency}`).join(', ') || 'nothing'}`,
    '',
    '## What happened',
    '',
    line(row.what_happened),
    '',
    '## Wrong assumptions',
    '',
    ...(row.wrong_assumptions.length === 0 ? ['_(none written yet)_'] : row.wrong_assumptions.map((assumption) => `- ${assumption}`)),
    '',
    '## Action items',
    '',
    ...(items.length === 0 ? ['_(none yet)_'] : items.map((item) => `- [${item.status === 'done' ? 'x' : ' '}] ${item.text} — ${item.owner}${item.due_at === null ? '' : `, due ${new Date(item.due_at).toISOString().slice(0, 10)}`}`)),
    '',
    '## Timeline',
    '',
    '| at | kind | entry | by |',
    '| --- | --- | --- | --- |',
    ...timeline,
    '',
  ].join('\n');
}

/**
 * The daily reminder: each overdue post-mortem and each overdue open action item is reminded in chat once per
 * UTC day, across every worker (the notice's dedupe key names the day). Resolves to how many were queued.
 */
export async function remindOverdue(db: Db, now: Date = new Date()): Promise<number> {
  const day = now.toISOString().slice(0, 10);
  let queued = 0;
  const late = await db.selectFrom('postmortems').innerJoin('incidents', 'incidents.id', 'postmortems.incident_id').select(['postmortems.id', 'postmortems.due_at', 'incidents.title']).where('postmortems.status', '<>', 'published').where('postmortems.due_at', '<', now).execute();
  for (const row of late) {
    const text = `:memo: post-mortem ${uuidToPublic('postmortem', row.id)} for "${row.title}" was due ${new Date(row.due_at).toISOString().slice(0, 10)} and is not published`;
    if (await queueNotice(db, text, `reminder:${row.id}:${day}`)) queued += 1;
  }
  const items = await db.selectFrom('action_items').select(['id', 'text', 'owner', 'due_at']).where('status', '=', 'open').where('due_at', '<', now).execute();
  for (const item of items) {
    const text = `:memo: action item ${uuidToPublic('actionItem', item.id)} (${item.owner}) was due ${new Date(item.due_at ?? now).toISOString().slice(0, 10)}: ${item.text}`;
    if (await queueNotice(db, text, `reminder:${item.id}:${day}`)) queued += 1;
  }
  return queued;
}
