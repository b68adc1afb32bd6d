// `pj cluster down` leaves nothing behind: no namespace, mount, veth or
// process, also after agents and etcd were killed with SIGKILL; twice is fine.
import t from 'tap';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { namespaceOf } from '../../common/process-ns.js';
import { processAlive } from '../../manager/sim-cluster/agents.js';
import { clusterNetns } from '../../manager/sim-cluster/down.js';
import { paths } from '../../manager/sim-cluster/layout.js';
import { netnsPath } from '../../manager/sim-cluster/namespaces.js';
import { netnsWithPrefix, startCluster } from '../helpers/cluster.js';
import { copies } from '../helpers/copies.js';

function pidsInNamespaces(inodes: Set<number>): number[] {
  return readdirSync('/proc').filter((p) => /^\d+$/.test(p)).map(Number)
    .filter((pid) => (['net', 'mnt'] as const).some((ns) => inodes.has(namespaceOf(pid, ns) ?? -1)));
}

t.test('down after kill -9 of an agent and of etcd removes everything', async (t) => {
  const machineLinks = readdirSync('/sys/class/net').sort();
  const c = await startCluster(t, { hosts: 2 });
  const f = c.file();
  const p = paths(c.dir);
  const inodes = new Set([...clusterNetns(f).map((ns) => statSync(netnsPath(ns)).ino), ...f.hosts.map((h) => statSync(p.mountNs(h.name)).ino)]);
  const workload = await c.exec('h1', ['sh', '-c', 'setsid sleep 600 </dev/null >/dev/null 2>&1 & echo $!']);
  const sleeper = Number(workload.stdout.trim());
  t.ok(processAlive(sleeper), 'a process started inside h1 runs');
  const job = await c.pj(['run', '--on', 'h2', '--', 'sleep', '600']); // a job: namespaces of its own, /pj of h2's
  t.equal(job.code, 0, 'a job runs on h2');
  t.equal(copies(job.stdout.trim()).length, 1);
  t.ok(pidsInNamespaces(inodes).length >= 4, 'etcd, two agents and the sleeper live in the namespaces');

  process.kill(f.hosts[0].agentPid!, 'SIGKILL');
  process.kill(f.etcd.pid!, 'SIGKILL');
  const down = await c.down();
  t.equal(down.code, 0, down.stderr);
  t.match(down.stdout, new RegExp(`cluster ${c.name} down: \\d+ processes stopped, 4 namespaces removed`));

  t.same(netnsWithPrefix(c.name), [], 'no network namespace left');
  t.same(pidsInNamespaces(inodes), [], 'no process left in any of its namespaces');
  t.notOk(processAlive(sleeper), 'the process started inside h1 is gone');
  t.same(copies(job.stdout.trim()), [], 'the job is gone');
  for (const h of f.hosts) t.notOk(processAlive(h.agentPid), `agent of ${h.name} gone`);
  t.notOk(processAlive(f.etcd.pid), 'etcd gone');
  const mounts = readFileSync('/proc/self/mountinfo', 'utf8');
  t.notMatch(mounts, c.dir, 'no mount under the cluster dir');
  t.same(readdirSync('/sys/class/net').sort(), machineLinks, 'the machine namespace has the links it had before the cluster: no veth or bridge left');

  const again = await c.down();
  t.equal(again.code, 0, 'a second down succeeds');
  t.equal(again.stdout, 'no cluster is up\n');
});

t.test('up refuses to build over a cluster that is already up', async (t) => {
  const c = await startCluster(t, { hosts: 1 });
  const r = await c.pj(['cluster', 'up', '--hosts', '1', '--name', c.name]);
  t.equal(r.code, 1);
  t.match(r.stderr, /^pj: PJ_ERR_CLUSTER: a cluster is already up in /);
  t.equal((await c.pj(['hosts'])).code, 0, 'the existing cluster still answers');
});
