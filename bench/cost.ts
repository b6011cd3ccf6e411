import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import pg from 'pg';

/**
 * What a run costs, per payment: the statements Keel (or the floor) sent the database, each a round trip; the
 * transactions PostgreSQL committed (`pg_stat_database.xact_commit`, every backend of the database, so
 * background work counts too); the CPU of this process (load generator included: it is the same in every run)
 * and of every PostgreSQL process (`/proc/<pid>/stat`, user and system time).
 */
export interface Cost {
  readonly statements: number;
  readonly commits: number;
  readonly processCpuMs: number;
  readonly postgresCpuMs: number;
}

export interface CostSnapshot {
  readonly statements: number;
  readonly processCpuUs: number;
  readonly postgresTicks: number;
}

const ticksPerSecond = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100;

/** Taken while the run's connections are open: a backend's CPU leaves `/proc` with it. */
export function cpuSnapshot(statements: () => number): CostSnapshot {
  const usage = process.cpuUsage();
  return { statements: statements(), processCpuUs: usage.user + usage.system, postgresTicks: postgresTicks() };
}

/** Read once the run's connections are closed: a backend reports its commits by the time it exits. */
export async function commitCount(databaseUrl: string): Promise<number> {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    const { rows } = await client.query<{ commits: string }>('SELECT xact_commit AS commits FROM pg_stat_database WHERE datname = current_database()');
    return Number(rows[0]?.commits ?? 0);
  } finally {
    await client.end();
  }
}

export function costPer(before: CostSnapshot, after: CostSnapshot, commits: number, payments: number): Cost {
  const per = (value: number) => (payments === 0 ? 0 : value / payments);
  return {
    statements: per(after.statements - before.statements),
    commits: per(commits),
    processCpuMs: per((after.processCpuUs - before.processCpuUs) / 1000),
    postgresCpuMs: per(((after.postgresTicks - before.postgresTicks) * 1000) / ticksPerSecond),
  };
}

/** User and system clock ticks of every process named `postgres` (the postmaster, its backends and workers). */
function postgresTicks(): number {
  let ticks = 0;
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
    } catch {
      continue;
    }
    const open = stat.indexOf('(');
    const close = stat.lastIndexOf(')');
    if (!stat.slice(open + 1, close).startsWith('postgres')) continue;
    const fields = stat.slice(close + 2).split(' ');
    // After the name: state is field 3; utime and stime are fields 14 and 15.
    ticks += Number(fields[11]) + Number(fields[12]);
  }
  return ticks;
}
