import { Type } from 'typebox';
import type { KeelApp, KeelServices } from '../http/app.js';
import { inContext } from '../http/app.js';
import { ListQuery, listOf, pageOf } from '../http/lists.js';
import { IdParams } from '../http/schemas.js';
import { publicToUuid } from '../storage/ids.js';
import { KeelError } from '../errors.js';
import { anomalyToApi, anomalyTypes, findAnomaly, listAnomalies, resolveAnomaly } from './anomalies.js';
import { listRuns, runReconciliation, runToApi } from './reconcile.js';

/**
 * Anomalies and reconciliation over HTTP: a merchant lists and reads its own anomalies (`/v1/anomalies`,
 * secret key); the operator runs a reconciliation, lists the runs and every merchant's anomalies, and resolves
 * one with a note (`/admin/…`, admin token).
 */
const AnomalyQuery = ListQuery({
  status: Type.Optional(Type.Union([Type.Literal('open'), Type.Literal('resolved')])),
  type: Type.Optional(Type.Union(anomalyTypes.map((type) => Type.Literal(type)))),
});
const AdminAnomalyQuery = ListQuery({
  status: Type.Optional(Type.Union([Type.Literal('open'), Type.Literal('resolved')])),
  type: Type.Optional(Type.Union(anomalyTypes.map((type) => Type.Literal(type)))),
  merchant: Type.Optional(Type.String({ maxLength: 64 })),
});
const RunBody = Type.Object(
  {
    gateway: Type.Union([Type.Literal('toss'), Type.Literal('stripe')]),
    date: Type.String({ pattern: '^[0-9]{4}-[0-9]{2}-[0-9]{2}$' }),
    merchant: Type.Optional(Type.String({ maxLength: 64 })),
  },
  { additionalProperties: false },
);
const RunsQuery = Type.Object({ limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 100 })) }, { additionalProperties: false });
const ResolveBody = Type.Object({ note: Type.String({ minLength: 1, maxLength: 2000 }) }, { additionalProperties: false });

export function registerAnomalyRoutes(app: KeelApp, services: KeelServices): void {
  const { db } = services.deps;
  const secret = { auth: 'secret' } as const;
  const operator = { auth: 'operator' } as const;

  app.get('/v1/anomalies', { config: secret, schema: { querystring: AnomalyQuery, tags: ['reconciliation'] } }, (request) =>
    inContext(request, async () => {
      const page = pageOf(request.query, 'anomaly');
      const { status, type } = request.query;
      const rows = await listAnomalies(db, { merchantId: request.merchant.id, ...(status === undefined ? {} : { status }), ...(type === undefined ? {} : { type }) }, page);
      return listOf(rows, page, anomalyToApi);
    }),
  );

  app.get('/v1/anomalies/:id', { config: secret, schema: { params: IdParams, tags: ['reconciliation'] } }, (request) =>
    inContext(request, async () => anomalyToApi(await findAnomaly(db, request.params.id, request.merchant.id))),
  );

  app.get('/admin/anomalies', { config: operator, schema: { querystring: AdminAnomalyQuery, hide: true } }, (request) =>
    inContext(request, async () => {
      const page = pageOf(request.query, 'anomaly');
      const { status, type, merchant } = request.query;
      const merchantId = merchant === undefined ? undefined : publicToUuid('merchant', merchant);
      if (merchant !== undefined && merchantId === undefined) throw new KeelError('parameter_invalid', 'merchant must be a merchant id (mer_…).', { param: 'merchant' });
      const rows = await listAnomalies(db, { ...(merchantId === undefined ? {} : { merchantId }), ...(status === undefined ? {} : { status }), ...(type === undefined ? {} : { type }) }, page);
      return listOf(rows, page, anomalyToApi);
    }),
  );

  // One reconciliation, synchronously: the run object, with what it read and found.
  app.post('/admin/reconciliation/runs', { config: operator, schema: { body: RunBody, hide: true } }, (request) =>
    inContext(request, async () => {
      const { gateway, date, merchant } = request.body;
      if (Number.isNaN(Date.parse(`${date}T00:00:00Z`))) throw new KeelError('parameter_invalid', 'date must be a day, YYYY-MM-DD.', { param: 'date' });
      const merchantId = merchant === undefined ? undefined : publicToUuid('merchant', merchant);
      if (merchant !== undefined && merchantId === undefined) throw new KeelError('parameter_invalid', 'merchant must be a merchant id (mer_…).', { param: 'merchant' });
      const { deps } = services;
      const run = await runReconciliation({ db, cipher: deps.cipher, logger: services.logger, gateways: deps.gateways, partnerUrls: services.partnerUrls, payments: deps }, { gateway, date, merchantId });
      return runToApi(run);
    }),
  );

  app.get('/admin/reconciliation/runs', { config: operator, schema: { querystring: RunsQuery, hide: true } }, (request) =>
    inContext(request, async () => {
      const limit = request.query.limit ?? 10;
      const rows = await listRuns(db, limit + 1);
      return { object: 'list', data: rows.slice(0, limit).map(runToApi), has_more: rows.length > limit };
    }),
  );

  // A person's resolution: what they did, in their words. Resolving a resolved anomaly answers it unchanged.
  app.post('/admin/anomalies/:id/resolve', { config: operator, schema: { params: IdParams, body: ResolveBody, hide: true } }, (request) =>
    inContext(request, async () => anomalyToApi(await resolveAnomaly(db, request.params.id, undefined, { kind: 'manual', action: 'resolved by an operator', note: request.body.note }))),
  );
}
