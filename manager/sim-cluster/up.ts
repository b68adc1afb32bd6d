// Builds a simulated cluster on this machine: a switch namespace with a bridge,
// one etcd member in its own namespace, and hosts h1..hN, each a network
// namespace plus a mount namespace (own /srv, /run/pj, /pj) running `pj agent`.
import { randomBytes } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { PjError, codes } from '../../common/errors.js';
import { run, sleep, spawnDaemon } from '../../common/run.js';
import { startAgent, waitAgent } from './agents.js';
import { clusterDown, clusterNetns } from './down.js';
import { parseExportSpec } from '../exports.js';
import { ETCD_ADDRESS, hostAddress, paths, writeClusterFile, type ClusterFile } from './layout.js';
import { addBridge, addMountNs, addNetns, listNetns, makePrivateMount, nsenterArgs, plugIn } from './namespaces.js';

/**
 * The export every simulated host has unless told otherwise. Not root-squashed: jobs run as root (as
 * whoever starts them once jobs run as their users), and the tests and the demo write as root on other hosts.
 */
export const DEFAULT_EXPORT = 'data=/srv/data:rw,no_root_squash';

export interface UpOptions { dir: string; name: string; hosts: number; exports: string[]; devices?: string[]; agentOptions?: string[]; hostOptions?: Record<string, string[]> }

const NAME = /^[a-z][a-z0-9]{0,11}$/;

export async function clusterUp(o: UpOptions): Promise<ClusterFile> {
  if (!NAME.test(o.name)) throw new PjError(codes.USAGE, `cluster name '${o.name}' must be 1-12 lowercase letters or digits, starting with a letter`);
  if (!Number.isInteger(o.hosts) || o.hosts < 1 || o.hosts > 200) throw new PjError(codes.USAGE, `--hosts must be 1..200, not ${o.hosts}`);
  const p = paths(o.dir);
  if (existsSync(p.file)) throw new PjError(codes.CLUSTER, `a cluster is already up in ${o.dir} (pj cluster down first)`);
  const c: ClusterFile = {
    name: o.name,
    dir: o.dir,
    switchNetns: `${o.name}-sw`,
    etcd: { netns: `${o.name}-etcd`, address: ETCD_ADDRESS },
    hosts: Array.from({ length: o.hosts }, (_, i) => ({ name: `h${i + 1}`, address: hostAddress(i + 1), netns: `${o.name}-h${i + 1}` })),
    exports: o.exports.length ? o.exports : [DEFAULT_EXPORT],
    devices: o.devices ?? [],
    agentOptions: o.agentOptions ?? [],
    hostOptions: o.hostOptions ?? {},
    createdAt: new Date().toISOString(),
  };
  const taken = new Set(await listNetns());
  const clash = clusterNetns(c).find((ns) => taken.has(ns));
  if (clash) throw new PjError(codes.CLUSTER, `network namespace ${clash} already exists: another cluster named '${o.name}' is up`);

  mkdirSync(o.dir, { recursive: true });
  writeClusterFile(c); // from here on, `pj cluster down` can undo whatever follows
  try {
    await build(c);
    return c;
  } catch (e) {
    await clusterDown(o.dir).catch(() => {});
    throw e;
  }
}

async function build(c: ClusterFile): Promise<void> {
  const p = paths(c.dir);
  if (!existsSync(p.secret)) writeFileSync(p.secret, randomBytes(32).toString('hex') + '\n', { mode: 0o600 });
  mkdirSync('/run/pj', { recursive: true });
  mkdirSync('/srv', { recursive: true });
  await makePrivateMount(p.nsDir);

  await addNetns(c.switchNetns);
  await addBridge(c.switchNetns);
  await addNetns(c.etcd.netns);
  await plugIn(c.etcd.netns, c.switchNetns, 'etcd', c.etcd.address);
  for (const h of c.hosts) {
    await addNetns(h.netns);
    await plugIn(h.netns, c.switchNetns, h.name, h.address);
    // Exports under /srv are made in the host's own /srv, so that `--export NAME=/srv/…` just works.
    const srvExports = c.exports.map((e) => parseExportSpec(e, 'dir').path).filter((path) => path.startsWith('/srv/'));
    for (const d of [...srvExports.map((path) => p.hostSrv(h.name) + path.slice(4)), p.hostRun(h.name), p.hostState(h.name)]) mkdirSync(d, { recursive: true });
    copyFileSync('/etc/hosts', p.hostEtcHosts(h.name));
    await addMountNs(p.mountNs(h.name), [[p.hostSrv(h.name), '/srv'], [p.hostRun(h.name), '/run/pj'], [p.hostEtcHosts(h.name), '/etc/hosts']]);
  }

  mkdirSync(p.etcdData, { recursive: true, mode: 0o700 });
  const url = `http://${c.etcd.address}:2379`;
  c.etcd.pid = spawnDaemon('nsenter', [...nsenterArgs(c.etcd.netns), 'etcd',
    '--name', c.name, '--data-dir', p.etcdData,
    '--listen-client-urls', url, '--advertise-client-urls', url,
    '--listen-peer-urls', 'http://127.0.0.1:2380', '--initial-advertise-peer-urls', 'http://127.0.0.1:2380',
    '--initial-cluster', `${c.name}=http://127.0.0.1:2380`, '--log-level', 'warn'], p.etcdLog);
  writeClusterFile(c);
  await waitEtcd(c);

  for (const h of c.hosts) h.agentPid = startAgent(c, h);
  writeClusterFile(c);
  await Promise.all(c.hosts.map((h) => waitAgent(c, h)));
}

async function waitEtcd(c: ClusterFile): Promise<void> {
  const url = `http://${c.etcd.address}:2379`;
  const deadline = Date.now() + 15_000;
  while (Date.now() < deadline) {
    const r = await run('nsenter', [...nsenterArgs(c.etcd.netns), 'etcdctl', `--endpoints=${url}`, '--dial-timeout=1s', '--command-timeout=1s', 'endpoint', 'health'], { allowFail: true });
    if (r.code === 0) return;
    await sleep(100);
  }
  throw new PjError(codes.CLUSTER, `etcd did not become healthy; see ${paths(c.dir).etcdLog}`);
}
