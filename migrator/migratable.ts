// Whether a job can move, decided before anything is frozen. Its open files
// must be under /pj (the same path on every host), pipes, sockets whose other
// end is in the job (or listening TCP sockets, or any socket in the job's own
// network namespace), or kernel objects CRIU
// restores (eventfd, epoll, timerfd, signalfd, inotify). Files it maps or only
// reads from outside /pj (the executable, libraries, a linker's crt1.o) are
// assumed to be the same on every host: the destination checks their size and
// mtime before anything is frozen. Files in the job's own /tmp and /dev/shm
// (job-mounts.ts) move with it: CRIU carries those mounts' contents.
import { statSync } from 'node:fs';
import { run } from '../common/run.js';
import { namespaceOf } from '../common/process-ns.js';
import type { ProcReader } from './proc-reader.js';
import { inOwnDirs } from './job-mounts.js';

export interface Offender { pid: number; fd: string; path: string; why: string }
export interface SystemFile { path: string; size: number; mtimeMs: number }
/** `mounts`: the host's mount points in the job's namespace, which the destination must have too. */
export interface Inspection { offenders: Offender[]; systemFiles: SystemFile[]; mounts: string[] }

/** Devices every host has, which CRIU reopens by path. */
const COMMON_DEVICES = new Set(['/dev/null', '/dev/zero', '/dev/full', '/dev/random', '/dev/urandom']);
const KERNEL_OBJECTS = /^anon_inode:(\[?(eventfd|eventpoll|timerfd|signalfd|inotify|pidfd)\]?)$/;

interface Sockets {
  /** TCP sockets by inode: state, and the inode at the other end of a connection made in this namespace. */
  tcp: Map<number, { state: string; peer?: number }>;
  /** Unix sockets by inode: the peer's inode (0: none). */
  unixPeer: Map<number, number>;
}

/**
 * The sockets of the network namespace of `pid` (ss: State Recv-Q Send-Q Local Peer ino:N…;
 * unix: Netid State Recv-Q Send-Q * Ino * PeerIno).
 */
async function sockets(pid: number): Promise<Sockets> {
  const ss = (args: string[]) => run('nsenter', [`--net=/proc/${pid}/ns/net`, 'ss', ...args], { allowFail: true });
  const byEnds = new Map<string, number>();
  const rows: Array<{ ino: number; state: string; local: string; remote: string }> = [];
  for (const line of (await ss(['-Htane'])).stdout.split('\n')) {
    const f = line.trim().split(/\s+/);
    const ino = /\bino:(\d+)/.exec(line);
    if (!ino || f.length < 5) continue;
    rows.push({ ino: Number(ino[1]), state: f[0], local: f[3], remote: f[4] });
    byEnds.set(`${f[3]} ${f[4]}`, Number(ino[1]));
  }
  const tcp = new Map(rows.map((r) => [r.ino, { state: r.state, peer: byEnds.get(`${r.remote} ${r.local}`) }]));
  const unixPeer = new Map<number, number>();
  for (const line of (await ss(['-Hxan'])).stdout.split('\n')) {
    const f = line.trim().split(/\s+/);
    if (f.length >= 8) unixPeer.set(Number(f[5]), Number(f[7]));
  }
  return { tcp, unixPeer };
}

/** What keeps the job whose first process is `initPid` from moving, and the system files it maps. */
export async function inspectJob(initPid: number, pjMount: string, procs: ProcReader): Promise<Inspection> {
  const { own, external } = await procs.run('jobMounts', initPid);
  const processes = await procs.run('jobFiles', initPid, own);
  const offenders: Offender[] = [];
  const systemFiles = new Map<string, SystemFile>();
  const socks = await sockets(initPid);
  // In a network namespace of its own, the init's links to this host are the net-layer's, closed before the dump.
  const ownNet = namespaceOf(initPid, 'net') !== namespaceOf(process.pid, 'net');
  const jobSockets = new Set<number>();
  const found: Array<{ pid: number; fd: string; ino: number }> = [];
  const underPj = (p: string) => p.startsWith(pjMount + '/');
  /** A file outside /pj that the job only reads: it moves if the destination has the same one (size and mtime). */
  const systemFile = (pid: number, fd: string, path: string) => {
    if (systemFiles.has(path)) return;
    try {
      const st = statSync(path);
      systemFiles.set(path, { path, size: st.size, mtimeMs: st.mtimeMs });
    } catch {
      offenders.push({ pid, fd, path, why: 'a file this host cannot stat' });
    }
  };

  for (const { pid, fds, maps } of processes) {
    for (const { fd, target, readOnly, own } of fds) {
      const sock = /^socket:\[(\d+)\]$/.exec(target);
      if (sock) {
        jobSockets.add(Number(sock[1]));
        if (!(ownNet && pid === initPid)) found.push({ pid, fd, ino: Number(sock[1]) });
      } else if (own) continue; // deleted or not: CRIU keeps an unlinked file's contents too
      else if (MEMFD.test(target)) continue; // memory with a descriptor: CRIU carries its contents
      else if (target.endsWith(' (deleted)')) offenders.push({ pid, fd, path: target, why: 'an open file that was deleted' });
      else if (/^pipe:\[\d+\]$/.test(target) || KERNEL_OBJECTS.test(target) || COMMON_DEVICES.has(target) || underPj(target)) continue;
      else if (target.startsWith('/dev/')) offenders.push({ pid, fd, path: target, why: 'a device not under /pj' });
      else if (target.startsWith('/') && readOnly) systemFile(pid, fd, target); // a linker reading crt1.o, a program its config: there too?
      else if (target.startsWith('/')) offenders.push({ pid, fd, path: target, why: 'a file outside /pj' });
      else offenders.push({ pid, fd, path: target, why: 'a kind of file CRIU cannot move' });
    }
    // Shared anonymous memory shows as a deleted /dev/zero, a SysV segment or, once CRIU restored it, a memfd: memory CRIU carries, not a file.
    for (const path of new Set(maps.filter((p) => !SHARED_ANONYMOUS.test(p) && !inOwnDirs(p)))) {
      if (path.endsWith(' (deleted)')) offenders.push({ pid, fd: 'mmap', path, why: 'a mapped file that was deleted' });
      else if (!underPj(path)) systemFile(pid, 'mmap', path);
    }
  }
  for (const { pid, fd, ino } of found) {
    const tcp = socks.tcp.get(ino);
    const unixPeer = socks.unixPeer.get(ino);
    const path = `socket:[${ino}]`;
    if (tcp) {
      // In its own namespace a connection's other end is the job's too, or gone (half-closed: CRIU keeps the state).
      if (ownNet || tcp.state === 'LISTEN' || (tcp.peer !== undefined && jobSockets.has(tcp.peer))) continue;
      offenders.push({ pid, fd, path, why: `a TCP socket (${tcp.state}) connected to outside the job` });
    } else if (unixPeer !== undefined) {
      if (unixPeer === 0 || jobSockets.has(unixPeer)) continue;
      offenders.push({ pid, fd, path, why: 'a unix socket connected to outside the job' });
    } else if (!ownNet) offenders.push({ pid, fd, path, why: 'a socket that is neither TCP nor unix (UDP, netlink…)' });
    // In its own namespace, any other socket is the job's alone (UDP, or TCP closed by a reset, which
    // ss does not list): CRIU takes it, or refuses, and the job runs on.
  }
  return { offenders, systemFiles: [...systemFiles.values()], mounts: external };
}

const SHARED_ANONYMOUS = /^\/(dev\/zero|SYSV[0-9a-f]{8}|memfd:.*) \(deleted\)$/;
const MEMFD = /^\/memfd:.* \(deleted\)$/;

/** On the destination: which of the source's system files differ here (size or mtime), or are missing. */
export function differingSystemFiles(files: SystemFile[]): string[] {
  const out: string[] = [];
  for (const f of files) {
    try {
      const st = statSync(f.path);
      if (st.size !== f.size || Math.abs(st.mtimeMs - f.mtimeMs) > 1) out.push(`${f.path}: size ${st.size} here, ${f.size} there; mtime ${new Date(st.mtimeMs).toISOString()} here, ${new Date(f.mtimeMs).toISOString()} there`);
    } catch (e) {
      out.push(`${f.path}: ${(e as NodeJS.ErrnoException).code ?? 'missing'} here`);
    }
  }
  return out;
}
