import { Type } from 'typebox';
import type { KeelApp, KeelServices } from '../http/app.js';
import { inContext } from '../http/app.js';
import { paymentsProjection, rebuildProjections } from './projection.js';
import { readPaymentsReport, reportQueryFrom } from './reports.js';

/** `GET /v1/reports/payments`: the merchant's daily payment counts, amounts and approval rates, from the read model. */
const ReportQuery = Type.Object(
  {
    start_date: Type.Optional(Type.String({ maxLength: 10 })),
    end_date: Type.Optional(Type.String({ maxLength: 10 })),
    group_by: Type.Optional(Type.String({ maxLength: 40 })),
  },
  { additionalProperties: false },
);

export function registerReportRoutes(app: KeelApp, services: KeelServices): void {
  app.get('/v1/reports/payments', { config: { auth: 'secret' }, schema: { querystring: ReportQuery, tags: ['reports'] } }, (request) =>
    inContext(request, () => readPaymentsReport(services.deps.db, request.merchant.id, reportQueryFrom(request.query))),
  );

  const operator = { auth: 'operator' } as const;
  // Recomputes the read models from the outbox (after an upgrade that adds one, or to repair one).
  app.post('/admin/projections/rebuild', { config: operator, schema: { hide: true } }, (request) =>
    inContext(request, async () => {
      const report = await rebuildProjections(services.database.db, services.logger);
      return { object: 'projection_rebuild', name: paymentsProjection, events_replayed: report.events };
    }),
  );
}
