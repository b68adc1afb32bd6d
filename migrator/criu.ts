// CRIU, as the migrator runs it: `pj-criu` (CRIU >= 4.2, installed by
// scripts/setup) in this host's namespaces. A job is dumped as the tree of its
// first process, left stopped (the source copy stays until the move commits),
// and restored detached, also left stopped until the new location commits.
import { spawn } from 'node:child_process';
import { connect } from 'node:net';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { run } from '../common/run.js';
import { repoRoot } from '../common/repo-root.js';

/**
 * Options both sides need: nftables for the network lock (no iptables here), flocks and TCP connections
 * inside the job. The benchmarks' plain-CRIU floors use them too, so that they do the same work.
 */
export const CRIU_OPTIONS = ['--network-lock', 'nftables', '--file-locks', '--tcp-established', '-v4'];
/** A move leaves the job stopped on both sides until it commits. */
const COMMON = [...CRIU_OPTIONS, '--leave-stopped'];
/** A job's files deleted while open in its own /tmp or /dev/shm travel in the images up to this size (CRIU's default: 1 MiB). */
const DUMP = ['--ghost-limit', '256M'];

/**
 * The host's mounts in the job's mount namespace (job-mounts.ts), each named by its mount point: the
 * dump leaves them out of the images, the restore binds the destination's own mount at the same path.
 */
const external = (mounts: string[]) => mounts.flatMap((m) => ['--external', `mnt[${m}]:${m}`]);

export class CriuError extends Error {
  constructor(readonly action: string, readonly logTail: string) {
    super(`criu ${action} failed: ${logTail}`);
  }
}

/** Runs CRIU; one that has not ended after `deadlineMs` is killed with what it restored so far, and fails. */
function criu(args: string[], dir: string, log: string, action: string, deadlineMs?: number): Promise<void> {
  return new Promise((resolve, reject) => {
    // Our descriptors stay ours: CRIU would otherwise see and report them.
    const p = spawn('pj-criu', [...args, '-D', dir, '-o', log], { stdio: 'ignore' });
    let late = false;
    const timer = deadlineMs === undefined ? undefined : setTimeout(() => {
      late = true;
      // The tasks it forked first (a job's init, whose end ends its PID namespace) go with it.
      for (const pid of [...childrenOf(p.pid), p.pid]) {
        try { if (pid) process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
      }
    }, deadlineMs);
    p.on('error', (e) => reject(new CriuError(action, `cannot run pj-criu (${e.message}); run scripts/setup`)));
    p.on('exit', (code, signal) => {
      clearTimeout(timer);
      if (code === 0 && !late) return resolve();
      const tail = logTail(join(dir, log), late ? 1 : 3, !late);
      reject(new CriuError(action, late ? `did not end within ${deadlineMs! / 1000} s and was killed (its log ends: ${tail || 'nothing'})` : tail || `exit ${code ?? signal}`));
    });
  });
}

/** The processes `pid` forked, as the kernel lists them; none once it is gone. */
function childrenOf(pid: number | undefined): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

/** The last error lines of a CRIU log, which say why it failed (or its last lines, which say where it was). */
function logTail(path: string, count = 3, errorsOnly = true): string {
  try {
    const lines = readFileSync(path, 'utf8').split('\n').filter((l) => l && (!errorsOnly || /Error|error|fail/i.test(l)) && !/RLIMIT_NOFILE/.test(l));
    return lines.slice(-count).map((l) => l.replace(/^\(\d+\.\d+\)\s*/, '')).join('; ');
  } catch {
    return '';
  }
}

/**
 * How long a restore may take before it is given up (the source, which waits a minute for it, then
 * aborts the move): a restore stuck in the kernel or on a file must not hold the job frozen longer.
 */
export const RESTORE_DEADLINE_MS = 45_000;

/** Freezes the job and writes its images to `dir`; the job is left stopped. A failed dump leaves it running. */
export const dump = (initPid: number, dir: string, mounts: string[]): Promise<void> =>
  criu(['dump', '-t', String(initPid), ...DUMP, ...external(mounts), ...COMMON], dir, 'dump.log', 'dump');

/**
 * Restores the images in `dir`; the job is left stopped. Resolves with its first process's pid.
 * `lazy`: the pages a lazy dump left out are asked of whoever listens on lazy-pages.socket in `dir`.
 * `mounts`: the dump's external mounts; the job's mount namespace is built on this host's root.
 */
export async function restore(dir: string, lazy: boolean, mounts: string[], deadlineMs = RESTORE_DEADLINE_MS): Promise<number> {
  const pidfile = join(dir, 'restored.pid');
  const hook = join(repoRoot(), 'scripts', 'criu-restore-hook');
  await criu(['restore', '-d', '--pidfile', pidfile, '--action-script', hook, ...(lazy ? ['--lazy-pages'] : []), '--root', '/', ...external(mounts), ...COMMON], dir, 'restore.log', 'restore', deadlineMs);
  return Number(readFileSync(pidfile, 'utf8').trim());
}

export interface LazyDump {
  /** The images are written and the job is frozen, its memory in place. */
  ready: Promise<void>;
  /** CRIU ended (after closePageServer, or on a failure). */
  done: Promise<void>;
}

/**
 * A dump that leaves the pages in the frozen job (`--lazy-pages`): CRIU writes the other images,
 * then keeps the tasks frozen and serves their pages on `port` until its page server is closed.
 */
export function dumpLazy(initPid: number, dir: string, port: number, mounts: string[]): LazyDump {
  let ready!: () => void;
  let failed!: (e: Error) => void;
  const readyP = new Promise<void>((resolve, reject) => { ready = resolve; failed = reject; });
  const p = spawn('pj-criu', ['dump', '-t', String(initPid), '--lazy-pages', '--address', '127.0.0.1', '--port', String(port), '--status-fd', '3', ...DUMP, ...external(mounts), ...COMMON, '-D', dir, '-o', 'dump.log'],
    { stdio: ['ignore', 'ignore', 'ignore', 'pipe'] });
  p.stdio[3]!.once('data', () => ready());
  const done = new Promise<void>((resolve, reject) => {
    p.on('error', (e) => reject(new CriuError('dump', `cannot run pj-criu (${e.message}); run scripts/setup`)));
    p.on('exit', (code, signal) => (code === 0 ? resolve() : reject(new CriuError('dump', logTail(join(dir, 'dump.log')) || `exit ${code ?? signal}`))));
  });
  done.then(() => failed(new CriuError('dump', 'ended before it was ready')), failed); // no-ops once ready
  return { ready: readyP, done };
}

/** Ends a lazy dump's page server as CRIU's own lazy-pages daemon does when every page is moved (PS_IOV_CLOSE). */
export function closePageServer(port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1', () => {
      const req = Buffer.alloc(32); // { u32 cmd; u32 pad; u64 nr_pages; u64 vaddr; u64 dst_id }
      req.writeUInt32LE(PS_IOV_CLOSE, 0);
      s.write(req);
    });
    s.setTimeout(10_000, () => s.destroy(new Error('no answer from CRIU\'s page server')));
    s.once('data', () => { s.destroy(); resolve(); });
    s.once('error', reject);
  });
}
const PS_IOV_CLOSE = 0x1023;

/**
 * CRIU's network lock is an nftables table in this host's network namespace, named after the run
 * (`inet CRIU-<first 21 characters of its run id>`); one that stays (a dump not followed by a restore
 * here, a failed restore) blocks the job's connections. Drops the tables of the runs logged in `dir`,
 * and no other: another job may be moving meanwhile; for a job with a network namespace of its own
 * (`initPid`), the lock is in there.
 */
export async function dropNetworkLocks(dir: string, initPid?: number): Promise<void> {
  for (const log of ['dump.log', 'restore.log']) {
    let id: string | undefined;
    try {
      id = /CRIU run id = ([0-9a-f-]+)/.exec(readFileSync(join(dir, log), 'utf8'))?.[1];
    } catch {
      continue;
    }
    if (!id) continue;
    const table = ['nft', 'delete', 'table', 'inet', `CRIU-${id.slice(0, 21)}`];
    await run(table[0], table.slice(1), { allowFail: true });
    if (initPid) await run('nsenter', [`--net=/proc/${initPid}/ns/net`, ...table], { allowFail: true });
  }
}

/**
 * Drops every CRIU network lock in the network namespace of the job whose init is `initPid`: for a
 * dump whose CRIU died with its manager (its run id went with the manager's work folder). In the
 * job's own namespace every such lock is a dump of this job.
 */
export async function dropJobNetworkLocks(initPid: number): Promise<void> {
  const ns = [`--net=/proc/${initPid}/ns/net`];
  const listed = await run('nsenter', [...ns, 'nft', 'list', 'tables'], { allowFail: true });
  for (const table of listed.stdout.match(/^table inet CRIU-\S+$/gm) ?? []) {
    await run('nsenter', [...ns, 'nft', 'delete', ...table.split(' ')], { allowFail: true });
  }
}
