// A job's mount namespace as pj-init makes it (native/init/job-mounts.c): /tmp
// and /dev/shm are tmpfs mounts of the job's own (source "pj-job"), which CRIU
// carries with the job; every other mount is its host's. CRIU is told those
// are external, each by its mount point, so that a destination binds its own
// mount at the same path: its /pj, its /srv, its /proc.
import { readFileSync } from 'node:fs';

const OWN_SOURCE = 'pj-job';
const OWN_DIRS = ['/tmp', '/dev/shm'];

interface Mount { id: number; dev: string; mountPoint: string; fsType: string; source: string }

/** mountinfo escapes space, tab, newline and backslash as octal. */
const unescape = (s: string) => s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));

/** The mounts `pid` sees, in mount order (a stack's top comes last); [] when it is gone. */
function mountsOf(pid: number | 'self'): Mount[] {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/mountinfo`, 'utf8');
  } catch {
    return [];
  }
  const out: Mount[] = [];
  for (const line of text.split('\n')) {
    // id parent major:minor root mountpoint options [optional fields] - fstype source superoptions
    const [left, right] = line.split(' - ');
    if (!right) continue;
    const f = left.split(' ');
    const [fsType, source] = right.split(' ');
    out.push({ id: Number(f[0]), dev: f[2], mountPoint: unescape(f[4]), fsType, source: unescape(source) });
  }
  return out;
}

const isOwn = (m: Mount) => m.source === OWN_SOURCE && m.fsType === 'tmpfs' && OWN_DIRS.includes(m.mountPoint);

/** Whether `path`, as a process of a job names it, is in the job's own /tmp or /dev/shm. */
export const inOwnDirs = (path: string) => OWN_DIRS.some((d) => path === d || path.startsWith(d + '/'));

export interface JobMounts {
  /** Mount ids of the job's own tmpfs mounts (what fdinfo's mnt_id names). */
  own: number[];
  /** Mount points of the host's mounts, each once: what a destination must have too. */
  external: string[];
}

/** The mounts of the job whose first process is `initPid`. */
export function jobMounts(initPid: number): JobMounts {
  const mounts = mountsOf(initPid);
  const external = new Set(mounts.filter((m) => !isOwn(m) && m.mountPoint !== '/').map((m) => m.mountPoint));
  return { own: mounts.filter(isOwn).map((m) => m.id), external: [...external] };
}

/** The device (major:minor) of the mount `pid` sees at `path` (the top of a stack), if any. */
export function deviceAt(pid: number | 'self', path: string): string | undefined {
  return mountsOf(pid).filter((m) => m.mountPoint === path).at(-1)?.dev;
}
