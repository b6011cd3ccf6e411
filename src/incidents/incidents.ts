import { sql, type Kysely, type Selectable, type Transaction } from 'kysely';
import type { Logger } from 'pino';
import { KeelError } from '../errors.js';
import { paged, type Page } from '../http/lists.js';
import { newId, publicToUuid, uuidToPublic } from '../storage/ids.js';
import type { IncidentsTable, KeelDatabase } from '../storage/schema.js';
import { queueNotice } from './notices.js';
import { outageOf } from './outage.js';
import { createPostmortem } from './postmortems.js';

/**
 * Incidents: opened by a person (the API, chat) or by alerts (Alertmanager's receiver), run with clear roles —
 * the IMOC coordinates, the SRM communicates, service owners fix — and a timeline of everything said and done.
 * A status moves `investigating` → `identified` → `monitoring` → `resolved` (back from `monitoring` when the
 * trouble returns); its times stay in order (started ≤ detected ≤ mitigated ≤ resolved), enforced by the table
 * too. Resolving is final: it records the outage (outage.ts) and creates the post-mortem (postmortems.ts) in the
 * same transaction. Every change is written with its timeline entry in one transaction, under the incident's row
 * lock, so two hands on one incident never interleave.
 */
export const incidentStatuses = ['investigating', 'identified', 'monitoring', 'resolved'] as const;
export type IncidentStatus = (typeof incidentStatuses)[number];
export const severities = ['sev1', 'sev2', 'sev3'] as const;
export type Severity = (typeof severities)[number];
export type IncidentRow = Selectable<IncidentsTable>;
type Db = Kysely<KeelDatabase>;
export type Trx = Transaction<KeelDatabase>;

export interface IncidentsDeps {
  readonly db: Db;
  readonly logger: Logger;
  /** Days after resolving that the post-mortem is due (`KEEL_POSTMORTEM_DUE_DAYS`). */
  readonly postmortemDueDays: number;
  /** Whether chat notices are queued at all (`KEEL_SLACK_WEBHOOK_URL` set). */
  readonly notices: boolean;
}

export interface Owner {
  readonly service: string;
  readonly person: string;
}

export function incidentToApi(row: IncidentRow, owners: readonly Owner[]): Record<string, unknown> {
  const time = (value: Date | null) => (value === null ? null : new Date(value).toISOString());
  return {
    id: uuidToPublic('incident', row.id),
    object: 'incident',
    title: row.title,
    severity: row.severity,
    status: row.status,
    source: row.source,
    summary: row.summary,
    roles: { imoc: row.imoc, srm: row.srm, owners: owners.map((owner) => ({ service: owner.service, person: owner.person })) },
    channel: row.channel,
    gateways: row.gateways,
    countries: row.countries,
    started_at: time(row.started_at),
    detected_at: time(row.detected_at),
    mitigated_at: time(row.mitigated_at),
    resolved_at: time(row.resolved_at),
  };
}

export async function ownersOf(db: Db, incidentId: string): Promise<Owner[]> {
  return db.selectFrom('incident_owners').select(['service', 'person']).where('incident_id', '=', incidentId).orderBy('service').execute();
}

export async function incidentApi(db: Db, row: IncidentRow): Promise<Record<string, unknown>> {
  return incidentToApi(row, await ownersOf(db, row.id));
}

export interface NewIncident {
  readonly title: string;
  readonly severity: Severity;
  readonly source: 'manual' | 'alert' | 'chat';
  readonly summary?: string | null;
  readonly channel?: string | null;
  readonly groupKey?: string | null;
  readonly startedAt?: Date;
  readonly gateways?: readonly string[];
  readonly countries?: readonly string[];
  readonly author?: string | null;
}

/** Opens an incident, with its first timeline entry and a chat notice. */
export async function openIncident(deps: IncidentsDeps, trx: Trx, incident: NewIncident): Promise<IncidentRow> {
  const now = new Date();
  const startedAt = incident.startedAt !== undefined && incident.startedAt < now ? incident.startedAt : now;
  const row = await trx
    .insertInto('incidents')
    .values({
      id: newId('incident').uuid,
      title: incident.title,
      severity: incident.severity,
      source: incident.source,
      summary: incident.summary ?? null,
      channel: incident.channel ?? null,
      group_key: incident.groupKey ?? null,
      imoc: null,
      srm: null,
      gateways: [...(incident.gateways ?? [])],
      countries: [...(incident.countries ?? [])],
      started_at: startedAt,
      detected_at: now,
    })
    .returningAll()
    .executeTakeFirstOrThrow();
  await addEntry(trx, row.id, { kind: 'status', text: `investigating: opened (${incident.source})`, author: incident.author ?? null });
  await notify(deps, trx, `:rotating_light: ${row.severity.toUpperCase()} ${uuidToPublic('incident', row.id)} opened: ${row.title}`);
  return row;
}

export async function findIncident(db: Db, publicId: string): Promise<IncidentRow> {
  const id = publicToUuid('incident', publicId);
  const row = id === undefined ? undefined : await db.selectFrom('incidents').selectAll().where('id', '=', id).executeTakeFirst();
  if (row === undefined) throw new KeelError('resource_missing', `No such incident: ${publicId}.`, { param: 'id' });
  return row;
}

export async function listIncidents(db: Db, filter: { status?: IncidentStatus | 'open' }, page: Page): Promise<IncidentRow[]> {
  let query = db.selectFrom('incidents').selectAll();
  if (filter.status === 'open') query = query.where('status', '<>', 'resolved');
  else if (filter.status !== undefined) query = query.where('status', '=', filter.status);
  return paged(query, page).execute();
}

/** The open incident run from a chat channel (the latest, if several). */
export async function incidentOfChannel(db: Db, channel: string): Promise<IncidentRow | undefined> {
  return db.selectFrom('incidents').selectAll().where('channel', '=', channel).where('status', '<>', 'resolved').orderBy('id', 'desc').limit(1).executeTakeFirst();
}

/**
 * Runs a change on an incident under its row lock, in one transaction; a resolved incident refuses every change.
 * Resolves to the incident as the change left it.
 */
export async function changeIncident(deps: IncidentsDeps, incidentId: string, change: (trx: Trx, incident: IncidentRow) => Promise<void>): Promise<IncidentRow> {
  return deps.db.transaction().execute(async (trx) => {
    const incident = await trx.selectFrom('incidents').selectAll().where('id', '=', incidentId).forUpdate().executeTakeFirst();
    if (incident === undefined) throw new KeelError('resource_missing', `No such incident: ${uuidToPublic('incident', incidentId)}.`, { param: 'id' });
    if (incident.status === 'resolved') throw new KeelError('incident_resolved', `${uuidToPublic('incident', incidentId)} is resolved; it no longer changes.`);
    await change(trx, incident);
    return trx.selectFrom('incidents').selectAll().where('id', '=', incidentId).executeTakeFirstOrThrow();
  });
}

export type RoleChange = { readonly role: 'imoc' | 'srm'; readonly person: string } | { readonly role: 'owner'; readonly person: string; readonly service: string };

export async function setRole(deps: IncidentsDeps, incidentId: string, change: RoleChange, author: string | null): Promise<IncidentRow> {
  return changeIncident(deps, incidentId, async (trx, incident) => {
    if (change.role === 'owner') {
      await trx
        .insertInto('incident_owners')
        .values({ incident_id: incident.id, service: change.service, person: change.person })
        .onConflict((conflict) => conflict.columns(['incident_id', 'service']).doUpdateSet({ person: change.person }))
        .execute();
    } else {
      await trx.updateTable('incidents').set(change.role === 'imoc' ? { imoc: change.person } : { srm: change.person }).where('id', '=', incident.id).execute();
    }
    const what = change.role === 'owner' ? `${change.person} owns ${change.service}` : `${change.person} is ${change.role.toUpperCase()}`;
    await addEntry(trx, incident.id, { kind: 'role', text: what, author });
    await notify(deps, trx, `${uuidToPublic('incident', incident.id)}: ${what}`);
  });
}

export async function addMessage(deps: IncidentsDeps, incidentId: string, message: { text: string; author: string; important: boolean }): Promise<IncidentRow> {
  return changeIncident(deps, incidentId, async (trx, incident) => {
    await addEntry(trx, incident.id, { kind: 'message', text: message.text, author: message.author, important: message.important });
  });
}

/**
 * Moves the incident's status. `monitoring` marks it mitigated (the first time); going back from `monitoring`
 * clears that, as the trouble was not over; `resolved` marks it resolved (and mitigated, if it was not yet),
 * records the outage and creates the post-mortem. The same status again changes nothing.
 */
export async function setStatus(deps: IncidentsDeps, incidentId: string, to: IncidentStatus, note: string | null, author: string | null): Promise<IncidentRow> {
  return changeIncident(deps, incidentId, async (trx, incident) => moveStatus(deps, trx, incident, to, note, author));
}

export async function moveStatus(deps: IncidentsDeps, trx: Trx, incident: IncidentRow, to: IncidentStatus, note: string | null, author: string | null): Promise<void> {
  if (incident.status === to) return;
  const now = new Date();
  const mitigatedAt = to === 'monitoring' || to === 'resolved' ? (incident.mitigated_at ?? now) : null;
  await trx
    .updateTable('incidents')
    .set({ status: to, mitigated_at: mitigatedAt, ...(to === 'resolved' ? { resolved_at: now } : {}) })
    .where('id', '=', incident.id)
    .execute();
  await addEntry(trx, incident.id, { kind: 'status', text: `${incident.status} → ${to}${note === null ? '' : `: ${note}`}`, author });
  const name = uuidToPublic('incident', incident.id);
  await notify(deps, trx, to === 'resolved' ? `:white_check_mark: ${name} resolved: ${incident.title}` : `${name} is ${to}${note === null ? '' : `: ${note}`}`);
  if (to === 'resolved') {
    const resolved = await trx.selectFrom('incidents').selectAll().where('id', '=', incident.id).executeTakeFirstOrThrow();
    const outage = await outageOf(trx, resolved);
    await trx.updateTable('incidents').set({ outage: JSON.stringify(outage) }).where('id', '=', incident.id).execute();
    await createPostmortem(trx, resolved, outage, deps.postmortemDueDays);
  }
}

export interface Entry {
  readonly kind: 'alert' | 'role' | 'message' | 'status' | 'system';
  readonly text: string;
  readonly author: string | null;
  readonly important?: boolean;
  readonly at?: Date;
  readonly dedupeKey?: string;
}

/** Writes one timeline entry; one with a dedupe key already written is skipped. Resolves to whether it was new. */
export async function addEntry(trx: Trx | Db, incidentId: string, entry: Entry): Promise<boolean> {
  const written = await trx
    .insertInto('incident_timeline')
    .values({ incident_id: incidentId, kind: entry.kind, text: entry.text, author: entry.author, important: entry.important ?? false, dedupe_key: entry.dedupeKey ?? null, ...(entry.at === undefined ? {} : { at: entry.at }) })
    .onConflict((conflict) => conflict.columns(['incident_id', 'dedupe_key']).where('dedupe_key', 'is not', null).doNothing())
    .returning('id')
    .executeTakeFirst();
  return written !== undefined;
}

export interface TimelineEntry {
  readonly at: string;
  readonly kind: Entry['kind'];
  readonly text: string;
  readonly author: string | null;
  readonly important: boolean;
}

export async function timelineOf(db: Db | Trx, incidentId: string): Promise<TimelineEntry[]> {
  const rows = await db.selectFrom('incident_timeline').select(['at', 'kind', 'text', 'author', 'important']).where('incident_id', '=', incidentId).orderBy('at').orderBy('id').execute();
  return rows.map((row) => ({ at: new Date(row.at).toISOString(), kind: row.kind, text: row.text, author: row.author, important: row.important }));
}

/** Queues a chat notice in the change's transaction: it is sent (and retried) by the workers, or not at all. */
async function notify(deps: IncidentsDeps, trx: Trx, text: string): Promise<void> {
  if (deps.notices) await queueNotice(trx, text);
}

/**
 * A system entry Keel writes itself (a breaker opened or closed, shedding started, an anomaly opened) on every
 * open incident it concerns: those naming the partner (and country) it is about, and those naming none.
 */
export async function systemEntry(db: Db, about: { gateway?: string | null; country?: string | null }, text: string): Promise<number> {
  let query = db.selectFrom('incidents').select('id').where('status', '<>', 'resolved');
  if (about.gateway != null) query = query.where((eb) => eb.or([eb(sql<number>`cardinality(gateways)`, '=', 0), eb(sql.val(about.gateway), '=', eb.fn.any('gateways'))]));
  if (about.country != null) query = query.where((eb) => eb.or([eb(sql<number>`cardinality(countries)`, '=', 0), eb(sql.val(about.country), '=', eb.fn.any('countries'))]));
  const open = await query.execute();
  for (const { id } of open) await addEntry(db, id, { kind: 'system', text, author: 'keel' });
  return open.length;
}
