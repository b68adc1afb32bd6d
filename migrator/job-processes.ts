// A job's processes as this host's /proc shows them. A job is its first
// process (pj-init, pid 1 of the job's PID namespace) and everything in that
// namespace; the first process is known by pid and start time together.
// Reading the /proc of a process that is in execve or exit can wait until that
// process lets go of its exec lock, and it may be waiting for this very agent to
// answer a /pj request: so everything here that touches a process other than a
// job's first one runs on the ProcReader's thread (proc-reader.ts), never on the
// event loop. Only alive/startTime/stateOf, which read a job's first process (it
// never execs), are called directly.
import { readFileSync, readdirSync, readlinkSync } from 'node:fs';
import { namespaceOf } from '../common/process-ns.js';
import { deviceAt, jobMounts } from './job-mounts.js';

export { namespaceOf, jobMounts };

const PAGE = 4096;
const TICKS_PER_S = 100;

/** The fields of /proc/<pid>/stat after the command name: [0] is the state, [19] the start time. */
function statFields(pid: number): string[] | undefined {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return s.slice(s.lastIndexOf(')') + 2).split(' ');
  } catch {
    return undefined;
  }
}

export function startTime(pid: number): number | undefined {
  const f = statFields(pid);
  return f ? Number(f[19]) : undefined;
}

/** Whether `pid` is still the process that started at `start` (and not a zombie). */
export function alive(pid: number, start: number): boolean {
  const f = statFields(pid);
  return f !== undefined && Number(f[19]) === start && f[0] !== 'Z' && f[0] !== 'X';
}

/** The process state letter (R, S, D, T, t, Z...). */
export const stateOf = (pid: number): string | undefined => statFields(pid)?.[0];

/** The process that ptraces `pid` (0: none). */
export function tracerOf(pid: number): number {
  try {
    return Number(/^TracerPid:\s+(\d+)$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0);
  } catch {
    return 0;
  }
}

/** The process's command line, words joined by spaces ('' once it is gone). */
export function commandLine(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ').trim();
  } catch {
    return '';
  }
}

/** The process's pid in each PID namespace it is in, outermost first. */
function nsPids(pid: number): number[] | undefined {
  try {
    return /^NSpid:\s+(.*)$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1].trim().split(/\s+/).map(Number);
  } catch {
    return undefined;
  }
}

const allPids = (): number[] => readdirSync('/proc').filter((d) => /^\d+$/.test(d)).map(Number);

/** Every process of the job whose first process is `initPid` (itself included). */
export function jobPids(initPid: number): number[] {
  const ns = namespaceOf(initPid, 'pid');
  if (ns === undefined) return [];
  return allPids().filter((p) => p === initPid || namespaceOf(p, 'pid') === ns);
}

/** The job's processes by their pid inside its namespace (as CRIU's images name them): their pid on this host. */
export function jobTasks(initPid: number): Map<number, number> {
  const out = new Map<number, number>();
  for (const pid of jobPids(initPid)) {
    const ids = nsPids(pid);
    if (ids && ids.length > 1) out.set(ids.at(-1)!, pid);
  }
  return out;
}

/** Every thread of the job's processes (FUSE names a caller by its thread). */
export function jobThreads(initPid: number): number[] {
  return jobPids(initPid).flatMap((p) => {
    try {
      return readdirSync(`/proc/${p}/task`).map(Number);
    } catch {
      return [];
    }
  });
}

export function signalAll(pids: number[], signal: NodeJS.Signals): void {
  for (const p of pids) {
    try {
      process.kill(p, signal);
    } catch { /* gone meanwhile */ }
  }
}

/** `demandS`: time its threads spent on a CPU or ready to run and waiting for one (a busy machine does not shrink it). */
export interface JobUsage { rssBytes: number; cpuS: number; demandS: number; processes: number }

/** `pids`: the job's processes, when the caller has them already. */
export function jobUsage(initPid: number, pids = jobPids(initPid)): JobUsage {
  let rssBytes = 0;
  let ticks = 0;
  let demandNs = 0;
  for (const p of pids) {
    const f = statFields(p);
    if (!f) continue;
    ticks += Number(f[11]) + Number(f[12]);
    rssBytes += Number(f[21]) * PAGE;
    demandNs += demandNsOf(p);
  }
  return { rssBytes, cpuS: ticks / TICKS_PER_S, demandS: demandNs / 1e9, processes: pids.length };
}

/** Nanoseconds the process's threads ran plus waited on a run queue (the first two fields of each thread's schedstat). */
function demandNsOf(pid: number): number {
  let ns = 0;
  try {
    for (const tid of readdirSync(`/proc/${pid}/task`)) {
      try {
        const [run, wait] = readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ').map(Number);
        ns += (run || 0) + (wait || 0);
      } catch { /* the thread ended */ }
    }
  } catch { /* the process ended */ }
  return ns;
}

/** Bytes the process read and wrote by any call (files, pipes, sockets); 0 once it is gone. */
function ioBytes(pid: number): number {
  try {
    const io = readFileSync(`/proc/${pid}/io`, 'utf8');
    return Number(/^rchar: (\d+)/m.exec(io)?.[1] ?? 0) + Number(/^wchar: (\d+)/m.exec(io)?.[1] ?? 0);
  } catch {
    return 0;
  }
}

/** What the policy samples of a job each round: its PID namespace, processes, usage and their I/O counters. */
export interface JobSample { ns: number; pids: number[]; usage: JobUsage; io: Array<[number, number]> }

export function jobSample(initPid: number): JobSample | undefined {
  const ns = namespaceOf(initPid, 'pid');
  if (ns === undefined) return undefined;
  const pids = jobPids(initPid);
  return { ns, pids, usage: jobUsage(initPid, pids), io: pids.filter((p) => p !== initPid).map((p) => [p, ioBytes(p)]) };
}

/** The process that made a request: its PID namespace (a job's, or the host's) and its command. */
export function caller(pid: number): { ns?: number; comm?: string } {
  const ns = namespaceOf(pid, 'pid');
  if (ns === undefined) return {};
  try {
    return { ns, comm: readFileSync(`/proc/${pid}/comm`, 'utf8').trim() };
  } catch {
    return { ns };
  }
}

/** A descriptor: what it names; for a file, whether it is open read-only and whether it is in the job's own /tmp or /dev/shm. */
export interface OpenFd { fd: string; target: string; readOnly?: boolean; own?: boolean }
/** Each process of a job with its descriptors and the files it maps (for the migratability check). */
export interface ProcessFiles { pid: number; fds: OpenFd[]; maps: string[] }

/** `ownMounts`: the mount ids of the job's own /tmp and /dev/shm (jobMounts). */
export function jobFiles(initPid: number, ownMounts: number[]): ProcessFiles[] {
  const out: ProcessFiles[] = [];
  const own = new Set(ownMounts);
  for (const pid of jobPids(initPid)) {
    let names: string[];
    try {
      names = readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue; // gone meanwhile
    }
    const fds: OpenFd[] = [];
    for (const fd of names) {
      try {
        const target = readlinkSync(`/proc/${pid}/fd/${fd}`);
        if (!target.startsWith('/')) fds.push({ fd, target });
        else {
          const info = readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8');
          const flags = /^flags:\s+([0-7]+)/m.exec(info);
          fds.push({ fd, target, readOnly: flags !== null && (parseInt(flags[1], 8) & 3) === 0, own: own.has(Number(/^mnt_id:\s+(\d+)/m.exec(info)?.[1])) });
        }
      } catch { /* closed meanwhile */ }
    }
    let maps: string[] = [];
    try {
      maps = readFileSync(`/proc/${pid}/maps`, 'utf8').split('\n').map((l) => l.split(/\s+/).slice(5).join(' ')).filter((p) => p.startsWith('/'));
    } catch { /* gone meanwhile */ }
    out.push({ pid, fds, maps });
  }
  return out;
}

/**
 * The first processes of the jobs on this host: pj-init as pid 1 of its namespace, with the job's
 * directory. Hosts of a simulated cluster share one PID space; a job of this host is one whose /pj is
 * this host's (`pjMount`), also after a move (its destination binds its own /pj into the job).
 */
export function localJobInits(pjMount: string): Array<{ pid: number; dir: string }> {
  const out: Array<{ pid: number; dir: string }> = [];
  const hostPj = deviceAt('self', pjMount);
  if (!hostPj) return out;
  for (const pid of allPids()) {
    const dir = jobInitDir(pid);
    if (dir !== undefined && deviceAt(pid, pjMount) === hostPj) out.push({ pid, dir });
  }
  return out;
}

/** The job's directory when `pid` is the first process of a job (pj-init as pid 1 of its namespace). */
export function jobInitDir(pid: number): string | undefined {
  let argv: string[];
  try {
    // The command name first: reading it takes no lock a process in execve holds, its cmdline does.
    if (readFileSync(`/proc/${pid}/comm`, 'utf8') !== 'pj-init\n') return undefined;
    argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
  } catch {
    return undefined;
  }
  if (!argv[0].endsWith('/pj-init') || !argv.includes('--')) return undefined;
  const ids = nsPids(pid);
  return ids && ids.length > 1 && ids.at(-1) === 1 ? argv[1] : undefined;
}
