import { Command, InvalidArgumentError } from 'commander';
import type { KeelConfig } from '../config.js';

/**
 * `keel incident …`: the incident operations of the admin API from a terminal. Each subcommand is one request
 * to `/admin/incidents…`, sent to the running embedded Keel, or to an API-role Keel this process starts on the
 * configured database (which, like `keel reconcile`, needs the partners' URLs); `admin` makes that call.
 */
export type AdminCall = (config: KeelConfig, method: 'GET' | 'POST', path: string, body?: unknown) => Promise<{ status: number; body: unknown }>;

interface IncidentView {
  id: string;
  title: string;
  severity: string;
  status: string;
  roles: { imoc: string | null; srm: string | null; owners: { service: string; person: string }[] };
  gateways: string[];
  countries: string[];
  started_at: string;
}

const statuses = ['investigating', 'identified', 'monitoring', 'resolved'];
const line = (incident: IncidentView) => `${incident.id} ${incident.severity} ${incident.status.padEnd(13)} ${incident.title}`;

export function incidentCommand(loadConfig: () => KeelConfig, admin: AdminCall): Command {
  const command = new Command('incident').description('open, run and close incidents (docs/operations.md)');
  const call = async (method: 'GET' | 'POST', path: string, body?: unknown) => {
    const answer = await admin(loadConfig(), method, path, body);
    if (answer.status >= 400) {
      const error = (answer.body as { error?: { message?: string } }).error;
      throw new Error(error?.message ?? `Keel answered ${answer.status}`);
    }
    return answer.body;
  };
  const print = (json: boolean | undefined, value: unknown, text: () => string) => console.log(json === true ? JSON.stringify(value) : text());
  const author = () => process.env['USER'] ?? 'cli';

  command
    .command('list')
    .description('incidents, newest first')
    .option('--status <status>', `${statuses.join(', ')} or open`)
    .option('--json', 'print the list as JSON')
    .action(async (options: { status?: string; json?: boolean }) => {
      const list = (await call('GET', `/admin/incidents?limit=100${options.status === undefined ? '' : `&status=${encodeURIComponent(options.status)}`}`)) as { data: IncidentView[] };
      print(options.json, list, () => (list.data.length === 0 ? 'no incidents' : list.data.map(line).join('\n')));
    });

  command
    .command('open')
    .description('open an incident')
    .requiredOption('--severity <severity>', 'sev1, sev2 or sev3', (value: string) => {
      if (!['sev1', 'sev2', 'sev3'].includes(value)) throw new InvalidArgumentError('severity must be sev1, sev2 or sev3');
      return value;
    })
    .requiredOption('--title <title>', 'what is wrong, in a line')
    .option('--summary <summary>', 'what is known so far')
    .option('--json', 'print the incident as JSON')
    .action(async (options: { severity: string; title: string; summary?: string; json?: boolean }) => {
      const opened = (await call('POST', '/admin/incidents', { title: options.title, severity: options.severity, ...(options.summary === undefined ? {} : { summary: options.summary }) })) as IncidentView;
      print(options.json, opened, () => `opened ${line(opened)}`);
    });

  command
    .command('show <id>')
    .description('an incident and its timeline')
    .option('--json', 'print them as JSON')
    .action(async (id: string, options: { json?: boolean }) => {
      const incident = (await call('GET', `/admin/incidents/${encodeURIComponent(id)}`)) as IncidentView;
      const timeline = (await call('GET', `/admin/incidents/${encodeURIComponent(id)}/timeline`)) as { data: { at: string; kind: string; text: string; author: string | null; important: boolean }[] };
      print(options.json, { incident, timeline: timeline.data }, () =>
        [
          line(incident),
          `IMOC ${incident.roles.imoc ?? '-'} · SRM ${incident.roles.srm ?? '-'} · owners ${incident.roles.owners.map((owner) => `${owner.service}: ${owner.person}`).join(', ') || '-'}`,
          `partners ${incident.gateways.join(', ') || 'all'} · countries ${incident.countries.join(', ') || 'all'} · started ${incident.started_at}`,
          ...timeline.data.map((entry) => `${entry.at} ${entry.kind.padEnd(7)} ${entry.important ? '! ' : ''}${entry.text}${entry.author === null ? '' : ` (${entry.author})`}`),
        ].join('\n'),
      );
    });

  command
    .command('role <id> <role> <person>')
    .description('set the IMOC, the SRM, or a service owner (with --service)')
    .option('--service <service>', 'the service a service owner owns')
    .action(async (id: string, role: string, person: string, options: { service?: string }) => {
      if (!['imoc', 'srm', 'owner'].includes(role)) throw new InvalidArgumentError('role must be imoc, srm or owner');
      const updated = (await call('POST', `/admin/incidents/${encodeURIComponent(id)}/roles`, { role, person, ...(options.service === undefined ? {} : { service: options.service }) })) as IncidentView;
      console.log(`${updated.id}: ${person} is ${role === 'owner' ? `the owner of ${options.service ?? ''}` : role.toUpperCase()}`);
    });

  command
    .command('note <id> <text...>')
    .description('add a message to the timeline')
    .option('--important', 'an important message (it goes into the outage record)')
    .action(async (id: string, text: string[], options: { important?: boolean }) => {
      await call('POST', `/admin/incidents/${encodeURIComponent(id)}/timeline`, { text: text.join(' '), author: author(), important: options.important === true });
      console.log(`${id}: ${options.important === true ? 'important message' : 'note'} added`);
    });

  command
    .command('status <id> <status>')
    .description(`move the status (${statuses.join(', ')})`)
    .option('--note <note>', 'why')
    .action(async (id: string, status: string, options: { note?: string }) => {
      if (!statuses.includes(status)) throw new InvalidArgumentError(`status must be one of ${statuses.join(', ')}`);
      const moved = (await call('POST', `/admin/incidents/${encodeURIComponent(id)}/status`, { status, author: author(), ...(options.note === undefined ? {} : { note: options.note }) })) as IncidentView;
      console.log(`${moved.id} is ${moved.status}`);
    });

  command
    .command('close <id>')
    .description('resolve the incident: its outage record is kept and its post-mortem created')
    .action(async (id: string) => {
      const closed = (await call('POST', `/admin/incidents/${encodeURIComponent(id)}/status`, { status: 'resolved', author: author() })) as IncidentView;
      console.log(`${closed.id} is ${closed.status}; its post-mortem is open (keel incident postmortem ${closed.id})`);
    });

  command
    .command('outage <id>')
    .description("a resolved incident's outage record (JSON)")
    .action(async (id: string) => {
      console.log(JSON.stringify(await call('GET', `/admin/incidents/${encodeURIComponent(id)}/outage`), null, 2));
    });

  command
    .command('postmortem <id>')
    .description("a resolved incident's post-mortem, as Markdown")
    .action(async (id: string) => {
      const list = (await call('GET', '/admin/postmortems?limit=100')) as { data: { id: string; incident: string }[] };
      const postmortem = list.data.find((candidate) => candidate.incident === id);
      if (postmortem === undefined) throw new Error(`${id} has no post-mortem (it is created when the incident resolves)`);
      process.stdout.write(String(await call('GET', `/admin/postmortems/${postmortem.id}/markdown`)));
    });
  return command;
}
