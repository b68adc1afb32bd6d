// CRIU, as the migrator runs it: `pj-criu` (CRIU >= 4.2, installed by
// scripts/setup) in this host's namespaces. A job is dumped as the tree of its
// first process, left stopped (the source copy stays until the move commits),
// and restored detached, also left stopped until the new location commits.
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { run } from '../common/run.js';

/** Options both sides need: nftables for the network lock (no iptables here), flocks and TCP connections inside the job. */
const COMMON = ['--network-lock', 'nftables', '--file-locks', '--tcp-established', '--leave-stopped', '-v4'];

export class CriuError extends Error {
  constructor(readonly action: string, readonly logTail: string) {
    super(`criu ${action} failed: ${logTail}`);
  }
}

function criu(args: string[], dir: string, log: string, action: string): Promise<void> {
  return new Promise((resolve, reject) => {
    // Our descriptors stay ours: CRIU would otherwise see and report them.
    const p = spawn('pj-criu', [...args, '-D', dir, '-o', log], { stdio: 'ignore' });
    p.on('error', (e) => reject(new CriuError(action, `cannot run pj-criu (${e.message}); run scripts/setup`)));
    p.on('exit', (code, signal) => {
      if (code === 0) return resolve();
      reject(new CriuError(action, logTail(join(dir, log)) || `exit ${code ?? signal}`));
    });
  });
}

/** The last error lines of a CRIU log, which say why it failed. */
function logTail(path: string): string {
  try {
    const lines = readFileSync(path, 'utf8').split('\n').filter((l) => /Error|error|fail/i.test(l) && !/RLIMIT_NOFILE/.test(l));
    return lines.slice(-3).map((l) => l.replace(/^\(\d+\.\d+\)\s*/, '')).join('; ');
  } catch {
    return '';
  }
}

/** Freezes the job and writes its images to `dir`; the job is left stopped. A failed dump leaves it running. */
export const dump = (initPid: number, dir: string): Promise<void> => criu(['dump', '-t', String(initPid), ...COMMON], dir, 'dump.log', 'dump');

/** Restores the images in `dir`; the job is left stopped. Resolves with its first process's pid. */
export async function restore(dir: string): Promise<number> {
  const pidfile = join(dir, 'restored.pid');
  await criu(['restore', '-d', '--pidfile', pidfile, ...COMMON], dir, 'restore.log', 'restore');
  return Number(readFileSync(pidfile, 'utf8').trim());
}

/**
 * CRIU's network lock is an nftables table in this host's network namespace, named after the run
 * (`inet CRIU-<first 21 characters of its run id>`); one that stays (a dump not followed by a restore
 * here, a failed restore) blocks the job's connections. Drops the tables of the runs logged in `dir`,
 * and no other: another job may be moving meanwhile.
 */
export async function dropNetworkLocks(dir: string): Promise<void> {
  for (const log of ['dump.log', 'restore.log']) {
    let id: string | undefined;
    try {
      id = /CRIU run id = ([0-9a-f-]+)/.exec(readFileSync(join(dir, log), 'utf8'))?.[1];
    } catch {
      continue;
    }
    if (id) await run('nft', ['delete', 'table', 'inet', `CRIU-${id.slice(0, 21)}`], { allowFail: true });
  }
}
