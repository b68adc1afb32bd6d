// What a simulated cluster looks like now: each host's address, agent pid and
// state as etcd's leases say (asked through any agent that still answers).
import { PjError, codes } from '../../common/errors.js';
import type { HostView } from '../cluster-state.js';
import { callControl } from '../control-socket.js';
import { processAlive } from './agents.js';
import { paths, readClusterFile } from './layout.js';

export interface HostStatus { host: string; address: string; agentPid: number | null; state: 'up' | 'down' }

export async function clusterStatus(dir: string): Promise<{ cluster: string; etcdPid: number | null; hosts: HostStatus[] }> {
  const c = readClusterFile(dir);
  let views: HostView[] | undefined;
  for (const h of c.hosts) {
    if (!processAlive(h.agentPid)) continue;
    try {
      views = (await callControl(paths(dir).controlSocket(h.name), 'hosts', {}, 3000)) as HostView[];
      break;
    } catch { /* try the next agent */ }
  }
  if (!views && processAlive(c.etcd.pid)) {
    views = []; // every agent is gone: nobody holds a lease
  } else if (!views) {
    throw new PjError(codes.CLUSTER, `cluster ${c.name}: neither etcd nor any agent answers (pj cluster down, then up)`);
  }
  const byName = new Map(views.map((v) => [v.name, v]));
  return {
    cluster: c.name,
    etcdPid: processAlive(c.etcd.pid) ? c.etcd.pid! : null,
    hosts: c.hosts.map((h) => ({
      host: h.name,
      address: h.address,
      agentPid: processAlive(h.agentPid) ? h.agentPid! : null,
      state: byName.get(h.name)?.state ?? 'down',
    })),
  };
}
