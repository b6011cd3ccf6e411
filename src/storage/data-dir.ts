import { chmodSync, existsSync, lstatSync, mkdirSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

/**
 * The data directory holds the embedded database and Keel's local secrets (the encryption key, the admin
 * token, the demo merchant's keys). It is created readable by its owner only (0700); the process runs with
 * umask 077 so that the files Keel writes in it are 0600, and the embedded database's tree is narrowed by
 * `restrictTree` when it is opened and closed. A directory that already
 * exists is left as it is, but each file or folder in it that others may read is counted and reported, so
 * the operator can narrow it (`chmod -R go= DIR`).
 */
export interface DataDirReport {
  /** Entries (the directory itself included) whose mode lets the group or others in, up to `wideEntriesMax`. */
  readonly wideEntries: readonly string[];
}

export const wideEntriesMax = 20;

/** What to tell the operator about a data directory others may read. */
export function wideDataDirAdvice(dataDir: string): string {
  return `${dataDir} holds Keel's secrets but others may read it; narrow it with: chmod -R go= ${dataDir}`;
}

export function prepareDataDir(dataDir: string): DataDirReport {
  process.umask(0o077);
  if (existsSync(dataDir)) return { wideEntries: wideEntriesIn(dataDir) };
  // Under umask 077 every folder this creates is 0700.
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  return { wideEntries: [] };
}

/**
 * Narrows every entry under `root` to its owner (directories 0700, files 0600). The embedded engine unpacks
 * its initial database with the modes it was packed with (0666), whatever the umask, so Keel narrows the tree
 * after opening it, and again when it closes.
 */
export function restrictTree(root: string): void {
  const pending = [root];
  for (let path = pending.pop(); path !== undefined; path = pending.pop()) {
    const stat = lstatSync(path);
    if (stat.isSymbolicLink()) continue;
    if (stat.isDirectory()) {
      if ((stat.mode & 0o077) !== 0) chmodSync(path, 0o700);
      for (const name of readdirSync(path)) pending.push(join(path, name));
    } else if ((stat.mode & 0o077) !== 0) {
      chmodSync(path, 0o600);
    }
  }
}

/** Every entry under `root` (itself included) readable, writable or searchable by the group or others. */
export function wideEntriesIn(root: string): string[] {
  const wide: string[] = [];
  const pending = [root];
  for (let path = pending.pop(); path !== undefined && wide.length < wideEntriesMax; path = pending.pop()) {
    const stat = lstatSync(path);
    if (stat.isSymbolicLink()) continue;
    if ((stat.mode & 0o077) !== 0) wide.push(`${path} (${(stat.mode & 0o777).toString(8).padStart(4, '0')})`);
    if (stat.isDirectory()) for (const name of readdirSync(path)) pending.push(join(path, name));
  }
  return wide;
}
