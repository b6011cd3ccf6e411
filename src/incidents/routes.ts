import { Type } from 'typebox';
import { KeelError } from '../errors.js';
import type { KeelApp, KeelServices } from '../http/app.js';
import { inContext } from '../http/app.js';
import { ListQuery, pageOf } from '../http/lists.js';
import { IdParams } from '../http/schemas.js';
import { AlertmanagerBody, receiveAlerts } from './alerts.js';
import { firstSighting, runSlashCommand, verifySlackRequest } from './chatops.js';
import {
  addMessage,
  findIncident,
  incidentApi,
  incidentStatuses,
  listIncidents,
  openIncident,
  setRole,
  setStatus,
  severities,
  timelineOf,
  type IncidentsDeps,
} from './incidents.js';
import {
  actionItemToApi,
  addActionItem,
  findPostmortem,
  itemsOf,
  listPostmortems,
  postmortemApi,
  postmortemMarkdown,
  postmortemStatuses,
  setActionItemStatus,
  updatePostmortem,
} from './postmortems.js';

/**
 * Incidents over HTTP, for the operator (admin token): Alertmanager's receiver, incidents with their roles,
 * timelines, statuses and outage records, post-mortems and their action items; and Slack's slash command
 * (`/chatops/slack`, signed by Slack, no admin token). None of these POSTs takes an `Idempotency-Key`
 * (Alertmanager and Slack cannot send one): each is safe to repeat as its sender repeats it.
 */
const literals = <T extends string>(values: readonly T[]) => Type.Union(values.map((value) => Type.Literal(value)));
const Text = (maxLength: number) => Type.String({ minLength: 1, maxLength });
const IncidentBody = Type.Object({ title: Text(200), severity: literals(severities), summary: Type.Optional(Text(4000)) }, { additionalProperties: false });
const IncidentQuery = ListQuery({ status: Type.Optional(literals([...incidentStatuses, 'open'])) });
const RoleBody = Type.Object({ role: literals(['imoc', 'srm', 'owner'] as const), person: Text(100), service: Type.Optional(Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$' })) }, { additionalProperties: false });
const TimelineBody = Type.Object({ text: Text(4000), author: Text(100), important: Type.Optional(Type.Boolean()) }, { additionalProperties: false });
const StatusBody = Type.Object({ status: literals(incidentStatuses), note: Type.Optional(Text(2000)), author: Type.Optional(Text(100)) }, { additionalProperties: false });
const PostmortemQuery = ListQuery({ status: Type.Optional(literals(postmortemStatuses)), overdue: Type.Optional(Type.Boolean()) });
const PostmortemBody = Type.Object(
  {
    summary: Type.Optional(Text(4000)),
    what_happened: Type.Optional(Text(20_000)),
    wrong_assumptions: Type.Optional(Type.Array(Text(2000), { maxItems: 50 })),
    status: Type.Optional(literals(postmortemStatuses)),
  },
  { additionalProperties: false },
);
const ActionItemBody = Type.Object({ text: Text(2000), owner: Text(100), due_at: Type.Optional(Type.String({ maxLength: 40 })) }, { additionalProperties: false });
const ActionItemStatusBody = Type.Object({ status: literals(['open', 'done'] as const) }, { additionalProperties: false });

export function incidentsDepsOf(services: KeelServices): IncidentsDeps {
  return { db: services.deps.db, logger: services.logger, postmortemDueDays: services.config.postmortemDueDays, notices: services.config.slackWebhookUrl !== undefined };
}

function dateParam(value: string | undefined, param: string): Date | null {
  if (value === undefined) return null;
  const at = new Date(value);
  if (Number.isNaN(at.getTime()) || !/^\d{4}-\d{2}-\d{2}/.test(value)) throw new KeelError('parameter_invalid', `${param} must be an ISO 8601 date or time.`, { param });
  return at;
}

export function registerIncidentRoutes(app: KeelApp, services: KeelServices): void {
  const deps = incidentsDepsOf(services);
  const { db } = deps;
  const operator = { auth: 'operator' } as const;
  const hide = true;

  app.post('/admin/alerts/alertmanager', { config: operator, schema: { body: AlertmanagerBody, hide } }, (request) =>
    inContext(request, async () => {
      for (const [index, alert] of request.body.alerts.entries()) {
        if (Number.isNaN(Date.parse(alert.startsAt))) throw new KeelError('parameter_invalid', 'startsAt must be an ISO 8601 time.', { param: `alerts.${index}.startsAt` });
      }
      const received = await receiveAlerts(deps, request.body);
      return { incident: received.incident === null ? null : await incidentApi(db, received.incident), opened: received.opened, entries: received.entries };
    }),
  );

  app.post('/admin/incidents', { config: operator, schema: { body: IncidentBody, hide } }, async (request, reply) => {
    const row = await inContext(request, () => db.transaction().execute((trx) => openIncident(deps, trx, { title: request.body.title, severity: request.body.severity, source: 'manual', summary: request.body.summary ?? null })));
    return reply.status(201).send(await incidentApi(db, row));
  });

  app.get('/admin/incidents', { config: operator, schema: { querystring: IncidentQuery, hide } }, (request) =>
    inContext(request, async () => {
      const page = pageOf(request.query, 'incident');
      const rows = await listIncidents(db, request.query.status === undefined ? {} : { status: request.query.status }, page);
      const data = await Promise.all(rows.slice(0, page.limit).map((row) => incidentApi(db, row)));
      return { object: 'list', data, has_more: rows.length > page.limit };
    }),
  );

  app.get('/admin/incidents/:id', { config: operator, schema: { params: IdParams, hide } }, (request) => inContext(request, async () => incidentApi(db, await findIncident(db, request.params.id))));

  app.post('/admin/incidents/:id/roles', { config: operator, schema: { params: IdParams, body: RoleBody, hide } }, (request) =>
    inContext(request, async () => {
      const incident = await findIncident(db, request.params.id);
      const { role, person, service } = request.body;
      if (role === 'owner' && service === undefined) throw new KeelError('parameter_missing', 'An owner needs the service they own.', { param: 'service' });
      const change = role === 'owner' ? { role, person, service: service ?? '' } : { role, person };
      return incidentApi(db, await setRole(deps, incident.id, change, null));
    }),
  );

  app.post('/admin/incidents/:id/timeline', { config: operator, schema: { params: IdParams, body: TimelineBody, hide } }, async (request, reply) => {
    const incident = await inContext(request, () => findIncident(db, request.params.id));
    await inContext(request, () => addMessage(deps, incident.id, { text: request.body.text, author: request.body.author, important: request.body.important ?? false }));
    return reply.status(201).send({ object: 'list', data: await timelineOf(db, incident.id), has_more: false });
  });

  app.get('/admin/incidents/:id/timeline', { config: operator, schema: { params: IdParams, hide } }, (request) =>
    inContext(request, async () => ({ object: 'list', data: await timelineOf(db, (await findIncident(db, request.params.id)).id), has_more: false })),
  );

  app.post('/admin/incidents/:id/status', { config: operator, schema: { params: IdParams, body: StatusBody, hide } }, (request) =>
    inContext(request, async () => {
      const incident = await findIncident(db, request.params.id);
      return incidentApi(db, await setStatus(deps, incident.id, request.body.status, request.body.note ?? null, request.body.author ?? null));
    }),
  );

  // The outage record is kept when the incident resolves; before that there is none yet.
  app.get('/admin/incidents/:id/outage', { config: operator, schema: { params: IdParams, hide } }, (request) =>
    inContext(request, async () => {
      const incident = await findIncident(db, request.params.id);
      if (incident.outage === null) throw new KeelError('resource_missing', `${request.params.id} has no outage record until it resolves.`, { param: 'id' });
      return { object: 'outage', incident: request.params.id, ...incident.outage };
    }),
  );

  app.get('/admin/postmortems', { config: operator, schema: { querystring: PostmortemQuery, hide } }, (request) =>
    inContext(request, async () => {
      const page = pageOf(request.query, 'postmortem');
      const { status, overdue } = request.query;
      const rows = await listPostmortems(db, { ...(status === undefined ? {} : { status }), ...(overdue === undefined ? {} : { overdue }) }, page);
      const data = await Promise.all(rows.slice(0, page.limit).map((row) => postmortemApi(db, row)));
      return { object: 'list', data, has_more: rows.length > page.limit };
    }),
  );

  app.get('/admin/postmortems/:id', { config: operator, schema: { params: IdParams, hide } }, (request) => inContext(request, async () => postmortemApi(db, await findPostmortem(db, request.params.id))));

  app.post('/admin/postmortems/:id', { config: operator, schema: { params: IdParams, body: PostmortemBody, hide } }, (request) =>
    inContext(request, async () => postmortemApi(db, await updatePostmortem(db, request.params.id, request.body))),
  );

  app.post('/admin/postmortems/:id/action_items', { config: operator, schema: { params: IdParams, body: ActionItemBody, hide } }, async (request, reply) => {
    const item = await inContext(request, () => addActionItem(db, request.params.id, { text: request.body.text, owner: request.body.owner, dueAt: dateParam(request.body.due_at, 'due_at') }));
    return reply.status(201).send(actionItemToApi(item));
  });

  app.post('/admin/action_items/:id', { config: operator, schema: { params: IdParams, body: ActionItemStatusBody, hide } }, (request) =>
    inContext(request, async () => actionItemToApi(await setActionItemStatus(db, request.params.id, request.body.status))),
  );

  app.get('/admin/postmortems/:id/markdown', { config: operator, schema: { params: IdParams, hide } }, async (request, reply) => {
    const markdown = await inContext(request, async () => {
      const row = await findPostmortem(db, request.params.id);
      const incident = await db.selectFrom('incidents').selectAll().where('id', '=', row.incident_id).executeTakeFirstOrThrow();
      return postmortemMarkdown(row, await itemsOf(db, row.id), incident);
    });
    return reply.type('text/markdown; charset=utf-8').send(markdown);
  });

  // Slack posts form-encoded bodies, signed over the raw bytes: this scope keeps them as text.
  void app.register(async (scope) => {
    scope.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string', bodyLimit: 16_384 }, (_request, body, done) => done(null, body));
    scope.post('/chatops/slack', { schema: { hide } }, async (request, reply) => {
      const raw = typeof request.body === 'string' ? request.body : '';
      const answer = await inContext(request, async () => {
        const signature = verifySlackRequest(services.config.slackSigningSecret, request.headers, raw);
        if (!(await firstSighting(db, signature))) throw new KeelError('signature_invalid', 'This request was already received (a replay).');
        const form = new URLSearchParams(raw);
        return runSlashCommand(deps, { text: form.get('text') ?? '', channelId: form.get('channel_id') ?? '', user: form.get('user_id') ?? 'unknown' });
      });
      return reply.status(200).send(answer);
    });
  });
}
