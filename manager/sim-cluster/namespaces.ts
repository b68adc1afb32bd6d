// Network and mount namespaces of a simulated cluster, made with iproute2 and
// util-linux. A host's mount namespace is kept alive by a bind mount of its
// nsfs file on a private mount, as `ip netns` does for network namespaces.
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { run } from '../../common/run.js';

export const netnsPath = (ns: string) => `/run/netns/${ns}`;

export async function listNetns(): Promise<string[]> {
  const { stdout } = await run('ip', ['netns', 'list'], { allowFail: true });
  return stdout.split('\n').map((l) => l.split(' ')[0]).filter(Boolean);
}

export async function addNetns(ns: string): Promise<void> {
  await run('ip', ['netns', 'add', ns]);
  await run('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
}

export async function addBridge(ns: string): Promise<void> {
  await run('ip', ['-n', ns, 'link', 'add', 'br0', 'type', 'bridge']);
  await run('ip', ['-n', ns, 'link', 'set', 'br0', 'up']);
}

/** Wires `ns` to the bridge in `switchNs` with a veth pair and gives it `address`/24. */
export async function plugIn(ns: string, switchNs: string, port: string, address: string): Promise<void> {
  await run('ip', ['link', 'add', 'eth0', 'netns', ns, 'type', 'veth', 'peer', 'name', port, 'netns', switchNs]);
  await run('ip', ['-n', switchNs, 'link', 'set', port, 'master', 'br0', 'up']);
  await run('ip', ['-n', ns, 'addr', 'add', `${address}/24`, 'dev', 'eth0']);
  await run('ip', ['-n', ns, 'link', 'set', 'eth0', 'up']);
}

export async function isMountpoint(path: string): Promise<boolean> {
  return (await run('mountpoint', ['-q', path], { allowFail: true })).code === 0;
}

/** Makes `dir` a private bind mount so that nsfs files bound under it stay put. */
export async function makePrivateMount(dir: string): Promise<void> {
  mkdirSync(dir, { recursive: true });
  if (!(await isMountpoint(dir))) await run('mount', ['--bind', dir, dir]);
  await run('mount', ['--make-private', dir]);
}

/** A persistent mount namespace at `nsFile` in which each [source, target] is bind-mounted. */
export async function addMountNs(nsFile: string, binds: Array<[string, string]>): Promise<void> {
  if (!existsSync(nsFile)) writeFileSync(nsFile, '');
  const script = binds.map(([src, dst]) => `mount --bind '${src}' '${dst}'`).join(' && ');
  await run('unshare', [`--mount=${nsFile}`, '--propagation', 'private', '--', 'sh', '-c', script]);
}

export function nsenterArgs(netns: string, mountNs?: string): string[] {
  return [`--net=${netnsPath(netns)}`, ...(mountNs ? [`--mount=${mountNs}`] : []), '--'];
}
