import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * PGlite admits one process per data directory. A running embedded Keel records itself in
 * `KEEL_DATA_DIR/keel.pid`; other `keel` commands then go through its API or refuse, and a second start refuses,
 * so the data directory is never opened twice.
 */
export interface RunningKeel {
  readonly pid: number;
  readonly url: string;
}

const lockName = 'keel.pid';

export function runningKeel(dataDir: string): RunningKeel | undefined {
  const path = join(dataDir, lockName);
  if (!existsSync(path)) return undefined;
  try {
    const lock = JSON.parse(readFileSync(path, 'utf8')) as RunningKeel;
    process.kill(lock.pid, 0);
    return lock;
  } catch {
    // The process that wrote the lock is gone: the lock is stale.
    return undefined;
  }
}

export function writeLock(dataDir: string, running: RunningKeel): () => void {
  const path = join(dataDir, lockName);
  writeFileSync(path, JSON.stringify(running), { mode: 0o600 });
  return () => {
    try {
      const lock = JSON.parse(readFileSync(path, 'utf8')) as RunningKeel;
      if (lock.pid === process.pid) rmSync(path);
    } catch {
      // Already gone.
    }
  };
}

export function readAdminToken(dataDir: string): string | undefined {
  const path = join(dataDir, 'admin-token');
  return existsSync(path) ? readFileSync(path, 'utf8').trim() : undefined;
}
