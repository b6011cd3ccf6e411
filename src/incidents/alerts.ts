import { Type, type Static } from 'typebox';
import { isUniqueViolation } from '../storage/database.js';
import { addEntry, changeIncident, moveStatus, openIncident, type IncidentRow, type IncidentsDeps, type Severity } from './incidents.js';

/**
 * Alertmanager's receiver (webhook body version 4). A firing alert opens an incident for its group, or joins the
 * group's open incident; every alert, firing or resolved, is one timeline entry (a redelivery of the same alert —
 * fingerprint, status and start — is the same entry); when every alert of the group has resolved, the incident
 * moves to `monitoring`, and an alert firing again moves it back to `investigating`. A group that fires after its
 * incident resolved opens a new one. The incident is titled after the alert's name and labels, takes its
 * severity from the `severity` label (`critical` → sev1, `warning` → sev2, otherwise sev3) and records the
 * `gateway` and `country` labels it names, for the outage record.
 */
const Labels = Type.Record(Type.String({ maxLength: 200 }), Type.String({ maxLength: 2000 }));
const Alert = Type.Object({
  status: Type.Union([Type.Literal('firing'), Type.Literal('resolved')]),
  labels: Labels,
  annotations: Type.Optional(Labels),
  startsAt: Type.String({ minLength: 1, maxLength: 64 }),
  endsAt: Type.Optional(Type.String({ maxLength: 64 })),
  fingerprint: Type.String({ minLength: 1, maxLength: 200 }),
});
export const AlertmanagerBody = Type.Object({
  version: Type.Literal('4'),
  groupKey: Type.String({ minLength: 1, maxLength: 2000 }),
  status: Type.Union([Type.Literal('firing'), Type.Literal('resolved')]),
  receiver: Type.Optional(Type.String({ maxLength: 200 })),
  groupLabels: Type.Optional(Labels),
  commonLabels: Type.Optional(Labels),
  commonAnnotations: Type.Optional(Labels),
  externalURL: Type.Optional(Type.String({ maxLength: 2000 })),
  alerts: Type.Array(Alert, { minItems: 1, maxItems: 1000 }),
});
export type AlertmanagerBody = Static<typeof AlertmanagerBody>;
type AlertBody = Static<typeof Alert>;

export function severityOf(labels: Record<string, string>): Severity {
  return labels['severity'] === 'critical' ? 'sev1' : labels['severity'] === 'warning' ? 'sev2' : 'sev3';
}

const shownLabels = (labels: Record<string, string>) =>
  Object.entries(labels)
    .filter(([key]) => key !== 'alertname' && key !== 'severity')
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([key, value]) => `${key}=${value}`)
    .join(', ');

export function titleOf(labels: Record<string, string>): string {
  const shown = shownLabels(labels);
  return `${labels['alertname'] ?? 'alert'}${shown === '' ? '' : `: ${shown}`}`;
}

const gatewayPattern = /^[a-z][a-z0-9_]{0,31}$/;
const countryPattern = /^[A-Z]{2}$/;
const named = (alerts: readonly AlertBody[], label: string, pattern: RegExp) =>
  [...new Set(alerts.map((alert) => alert.labels[label]).filter((value): value is string => value !== undefined && pattern.test(value)))].sort();

export interface Received {
  readonly incident: IncidentRow | null;
  readonly opened: boolean;
  readonly entries: number;
}

export async function receiveAlerts(deps: IncidentsDeps, body: AlertmanagerBody): Promise<Received> {
  for (let attempt = 0; ; attempt += 1) {
    try {
      return await receiveOnce(deps, body);
    } catch (error) {
      // Two deliveries of a new group at once: the second finds the incident the first opened.
      if (!isUniqueViolation(error) || attempt > 0) throw error;
    }
  }
}

async function receiveOnce(deps: IncidentsDeps, body: AlertmanagerBody): Promise<Received> {
  const firing = body.alerts.filter((alert) => alert.status === 'firing');
  const existing = await deps.db.selectFrom('incidents').selectAll().where('group_key', '=', body.groupKey).where('status', '<>', 'resolved').executeTakeFirst();
  let opened = false;
  let incidentId = existing?.id;
  if (incidentId === undefined) {
    // Resolved alerts of a group with no open incident are news of nothing.
    if (firing.length === 0) return { incident: null, opened: false, entries: 0 };
    const first = firing[0];
    const labels = { ...(body.commonLabels ?? {}), ...(first?.labels ?? {}) };
    const startedAt = new Date(Math.min(...firing.map((alert) => Date.parse(alert.startsAt)).filter(Number.isFinite)));
    const row = await deps.db.transaction().execute((trx) =>
      openIncident(deps, trx, {
        title: titleOf(body.commonLabels?.['alertname'] === undefined ? labels : body.commonLabels),
        severity: severityOf(labels),
        source: 'alert',
        summary: first?.annotations?.['summary'] ?? body.commonAnnotations?.['summary'] ?? null,
        groupKey: body.groupKey,
        ...(Number.isNaN(startedAt.getTime()) ? {} : { startedAt }),
        gateways: named(body.alerts, 'gateway', gatewayPattern),
        countries: named(body.alerts, 'country', countryPattern),
        author: 'alertmanager',
      }),
    );
    opened = true;
    incidentId = row.id;
  }
  let entries = 0;
  const incident = await changeIncident(deps, incidentId, async (trx, current) => {
    let refired = false;
    for (const alert of body.alerts) {
      const summary = alert.annotations?.['summary'];
      const written = await addEntry(trx, current.id, {
        kind: 'alert',
        text: `${alert.status}: ${titleOf(alert.labels)}${summary === undefined ? '' : ` — ${summary}`}`,
        author: 'alertmanager',
        dedupeKey: `${alert.fingerprint}:${alert.status}:${alert.startsAt}`,
      });
      if (!written) continue;
      entries += 1;
      if (alert.status === 'firing') refired = true;
      await trx
        .insertInto('incident_alerts')
        .values({ incident_id: current.id, fingerprint: alert.fingerprint, status: alert.status, starts_at: alert.startsAt })
        .onConflict((conflict) => conflict.columns(['incident_id', 'fingerprint']).doUpdateSet({ status: alert.status, starts_at: alert.startsAt }))
        .execute();
    }
    const gateways = [...new Set([...current.gateways, ...named(body.alerts, 'gateway', gatewayPattern)])].sort();
    const countries = [...new Set([...current.countries, ...named(body.alerts, 'country', countryPattern)])].sort();
    if (gateways.length !== current.gateways.length || countries.length !== current.countries.length) {
      await trx.updateTable('incidents').set({ gateways, countries }).where('id', '=', current.id).execute();
    }
    const stillFiring = await trx.selectFrom('incident_alerts').select('fingerprint').where('incident_id', '=', current.id).where('status', '=', 'firing').execute();
    if (stillFiring.length === 0 && (current.status === 'investigating' || current.status === 'identified')) {
      await moveStatus(deps, trx, current, 'monitoring', 'every alert of the group has resolved', 'alertmanager');
    } else if (refired && !opened && current.status === 'monitoring') {
      await moveStatus(deps, trx, current, 'investigating', 'an alert of the group fired again', 'alertmanager');
    }
  });
  return { incident, opened, entries };
}
