// Tears a simulated cluster down: every process inside its namespaces, the
// mount namespaces, the network namespaces (their veths go with them). Works
// from whatever is left (agents or etcd killed with SIGKILL, a half-made
// cluster) and is safe to run twice.
import { existsSync, readdirSync, rmSync, statSync } from 'node:fs';
import { migrationDir } from '../../migrator/index.js';
import { join } from 'node:path';
import { namespaceOf } from '../../common/process-ns.js';
import { deviceAt } from '../../migrator/job-mounts.js';
import { jobInitDir } from '../../migrator/job-processes.js';
import { run, sleep } from '../../common/run.js';
import { processAlive } from './agents.js';
import { PJ_MOUNT, paths, readClusterFile, type ClusterFile } from './layout.js';
import { isMountpoint, listNetns, netnsPath } from './namespaces.js';

export interface DownReport { cluster: string | null; killed: number[]; namespaces: string[] }

function nsInode(path: string): number | undefined {
  try {
    return statSync(path).ino;
  } catch {
    return undefined;
  }
}

/**
 * Pids of every process that lives in one of the given namespaces (by nsfs inode), and the first
 * processes of the jobs whose /pj is one of those hosts' (a job has mount and network namespaces of
 * its own; ending its first process ends the job).
 */
function processesIn(netInodes: Set<number>, mntInodes: Set<number>): number[] {
  const pids: number[] = [];
  const inits: number[] = [];
  const hostPj = new Set<string>();
  for (const entry of readdirSync('/proc')) {
    const pid = Number(entry);
    if (!Number.isInteger(pid) || pid === process.pid) continue;
    const net = namespaceOf(pid, 'net');
    const mnt = namespaceOf(pid, 'mnt');
    if (mnt !== undefined && mntInodes.has(mnt)) {
      const dev = deviceAt(pid, PJ_MOUNT);
      if (dev) hostPj.add(dev);
    }
    if ((net !== undefined && netInodes.has(net)) || (mnt !== undefined && mntInodes.has(mnt))) pids.push(pid);
    else if (jobInitDir(pid) !== undefined) inits.push(pid);
  }
  return [...pids, ...inits.filter((pid) => hostPj.has(deviceAt(pid, PJ_MOUNT) ?? ''))];
}


export function clusterNetns(c: ClusterFile): string[] {
  return [c.switchNetns, c.etcd.netns, ...c.hosts.map((h) => h.netns)];
}

export async function clusterDown(dir: string): Promise<DownReport> {
  const p = paths(dir);
  if (!existsSync(p.file)) return { cluster: null, killed: [], namespaces: [] };
  const c = readClusterFile(dir);
  const present = new Set(await listNetns());
  const netns = clusterNetns(c).filter((ns) => present.has(ns));
  const mountFiles = c.hosts.map((h) => p.mountNs(h.name));
  const mountedNs: string[] = [];
  for (const f of mountFiles) if (existsSync(f) && (await isMountpoint(f))) mountedNs.push(f);

  const netInodes = new Set(netns.map((ns) => nsInode(netnsPath(ns))).filter((x): x is number => x !== undefined));
  const mntInodes = new Set(mountedNs.map(nsInode).filter((x): x is number => x !== undefined));
  const victims = processesIn(netInodes, mntInodes);
  for (const pid of victims) try { process.kill(pid, 'SIGTERM'); } catch { /* already gone */ }
  for (let i = 0; i < 30 && victims.some(processAlive); i++) await sleep(100);
  for (const pid of victims.filter(processAlive)) try { process.kill(pid, 'SIGKILL'); } catch { /* already gone */ }
  for (let i = 0; i < 50 && victims.some(processAlive); i++) await sleep(100);

  for (const f of mountedNs) await run('umount', ['-l', f], { allowFail: true });
  if (await isMountpoint(p.nsDir)) await run('umount', ['-l', p.nsDir], { allowFail: true });
  rmSync(p.nsDir, { recursive: true, force: true });
  for (const ns of netns) await run('ip', ['netns', 'del', ns], { allowFail: true });
  rmSync(p.file, { force: true });
  rmSync(join(dir, 'etcd'), { recursive: true, force: true });
  for (const h of c.hosts) rmSync(migrationDir(h.name, p.hostState(h.name)), { recursive: true, force: true }); // images of moves cut short, in memory
  return { cluster: c.name, killed: victims, namespaces: netns };
}
