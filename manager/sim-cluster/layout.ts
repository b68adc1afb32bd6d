// Where a simulated cluster keeps its pieces. Each host hN is a network
// namespace "<name>-hN" plus a mount namespace bound at <dir>/ns/hN.mnt; a
// switch namespace "<name>-sw" holds the bridge; etcd runs in "<name>-etcd".
// Nothing lives in the machine's own network namespace.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PjError, codes } from '../../common/errors.js';

export const DEFAULT_CLUSTER_DIR = '/var/lib/picojump/cluster';
export const SUBNET_PREFIX = '10.66.0';
export const AGENT_PORT = 7070;
/** Where each host mounts /pj, in its own mount namespace. */
export const PJ_MOUNT = '/pj';
export const ETCD_ADDRESS = `${SUBNET_PREFIX}.2`;

export interface SimHost { name: string; address: string; netns: string; agentPid?: number }

export interface ClusterFile {
  name: string;
  dir: string;
  hosts: SimHost[];
  etcd: { netns: string; address: string; pid?: number };
  switchNetns: string;
  exports: string[];
  devices: string[];
  /** More options for every host's `pj agent` (e.g. --page-store-size=512M). */
  agentOptions?: string[];
  /** Options for one host's agent only (--host-option h3:--price=0.5), by host. */
  hostOptions?: Record<string, string[]>;
  createdAt: string;
}

export function clusterDir(opt?: string): string {
  return opt ?? process.env.PJ_CLUSTER_DIR ?? DEFAULT_CLUSTER_DIR;
}

export const paths = (dir: string) => ({
  file: join(dir, 'cluster.json'),
  secret: join(dir, 'secret'),
  nsDir: join(dir, 'ns'),
  etcdData: join(dir, 'etcd', 'data'),
  etcdLog: join(dir, 'etcd', 'etcd.log'),
  hostRoot: (h: string) => join(dir, 'hosts', h),
  hostSrv: (h: string) => join(dir, 'hosts', h, 'srv'),
  hostRun: (h: string) => join(dir, 'hosts', h, 'run'),
  /** The host's own /etc/hosts (names only it resolves). */
  hostEtcHosts: (h: string) => join(dir, 'hosts', h, 'etc-hosts'),
  hostState: (h: string) => join(dir, 'hosts', h, 'state'),
  hostLog: (h: string) => join(dir, 'hosts', h, 'agent.out'),
  mountNs: (h: string) => join(dir, 'ns', `${h}.mnt`),
  /** The host's control socket as seen from outside the host. */
  controlSocket: (h: string) => join(dir, 'hosts', h, 'run', 'agent.sock'),
});

export function hostAddress(index: number): string {
  return `${SUBNET_PREFIX}.${10 + index}`;
}

export function readClusterFile(dir: string): ClusterFile {
  const file = paths(dir).file;
  if (!existsSync(file)) throw new PjError(codes.CLUSTER, `no cluster is up in ${dir} (pj cluster up)`);
  return JSON.parse(readFileSync(file, 'utf8')) as ClusterFile;
}

export function writeClusterFile(c: ClusterFile): void {
  writeFileSync(paths(c.dir).file, JSON.stringify(c, null, 2) + '\n');
}

export function findHost(c: ClusterFile, name: string): SimHost {
  const h = c.hosts.find((x) => x.name === name);
  if (!h) throw new PjError(codes.NO_SUCH_HOST, `no host ${name} in cluster ${c.name} (hosts: ${c.hosts.map((x) => x.name).join(', ')})`, { host: name });
  return h;
}
