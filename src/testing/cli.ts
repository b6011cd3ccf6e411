import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { createServer } from 'node:net';

/** The `keel` command as a shop engineer runs it, for tests that drive Keel as separate processes. */
export const keelBin = new URL('../../bin/keel.js', import.meta.url).pathname;

export interface KeelRun {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Starts `keel <args>` with this environment; the caller reads or stops the process. */
export function spawnKeel(args: readonly string[], env: NodeJS.ProcessEnv): ChildProcessWithoutNullStreams {
  return spawn(process.execPath, [keelBin, ...args], { env });
}

/** Runs `keel <args>` to its end and collects what it printed. */
export function runKeel(args: readonly string[], env: NodeJS.ProcessEnv): Promise<KeelRun> {
  return new Promise((resolve) => {
    const child = spawnKeel(args, env);
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

/** A loopback port free right now, for a process a test starts (its server, Prometheus, Alertmanager). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const address = probe.address();
      probe.close(() => resolve(typeof address === 'object' && address !== null ? address.port : 0));
    });
  });
}
