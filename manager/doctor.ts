// `pj doctor`: checks each kernel feature and tool PicoJump needs on this
// machine, and says how to fix each one that fails.
import { accessSync, constants, statSync, readFileSync } from 'node:fs';
import { release } from 'node:os';
import { run } from '../common/run.js';
import { PjError, codes } from '../common/errors.js';
import { uffdProbe } from '../native/loader.js';
import type { MountHealth } from '../fs-layer/index.js';
import { callControl } from './control-socket.js';

export interface Check { name: string; status: 'ok' | 'warn' | 'fail'; detail: string; fix?: string }

// Feature bits of UFFDIO_API (linux/userfaultfd.h; the later ones are newer than Debian 12's headers).
const UFFD_FEATURES: Array<[string, number]> = [
  ['wp', 1 << 0], ['event-fork', 1 << 1], ['event-remap', 1 << 2], ['event-remove', 1 << 3],
  ['event-unmap', 1 << 6], ['minor-shmem', 1 << 10], ['wp-unpopulated', 1 << 13], ['wp-async', 1 << 15], ['move', 1 << 16],
];
const SETUP = 'run scripts/setup (as root)';

const kernelAtLeast = (major: number, minor: number): boolean => {
  const [a, b] = release().split('.').map((x) => parseInt(x, 10));
  return a > major || (a === major && b >= minor);
};

async function tool(cmd: string, args: string[]): Promise<{ ok: boolean; out: string }> {
  try {
    const r = await run(cmd, args, { allowFail: true });
    return { ok: r.code === 0, out: (r.stdout + r.stderr).trim() };
  } catch (e) {
    return { ok: false, out: (e as Error).message };
  }
}

async function checkRoot(): Promise<Check> {
  const root = process.getuid?.() === 0;
  return { name: 'root', status: root ? 'ok' : 'fail', detail: root ? 'running as root' : `running as uid ${process.getuid?.()}`, fix: 'run pj as root: namespaces, FUSE passthrough and CRIU need CAP_SYS_ADMIN' };
}

/** Which path local /pj files take on a running agent: kernel passthrough or served by the daemon. */
async function checkFilePath(agentSocket: string | undefined): Promise<Check[]> {
  if (!agentSocket) return [];
  try {
    const s = (await callControl(agentSocket, 'status', {}, 2000)) as { name: string; capabilities: Record<string, unknown>; mount?: MountHealth };
    if (!s.capabilities.fuse) return [{ name: 'pj-mount', status: 'fail', detail: `agent ${s.name} has not mounted /pj`, fix: 'see its agent.log (op fuse-mount)' }];
    if (s.mount && s.mount.state !== 'ok') {
      return [{ name: 'pj-mount', status: 'fail', detail: `agent ${s.name}: /pj is ${s.mount.state} since ${s.mount.since}${s.mount.detail ? ` (${s.mount.detail})` : ''}`, fix: 'the agent mounts it again by itself; see its agent.log (op fuse-health)' }];
    }
    const pt = s.capabilities.passthrough === true;
    return [{ name: 'pj-mount', status: pt ? 'ok' : 'warn', detail: `agent ${s.name}: local files ${pt ? 'use kernel passthrough' : 'are served by the daemon (no passthrough)'}`, fix: 'passthrough needs kernel >= 6.9 with CONFIG_FUSE_PASSTHROUGH, and root' }];
  } catch {
    return []; // no agent here: nothing to say about its mount
  }
}

/** Whether the running agent's connection holder answers (it owns the outside ends of jobs' connections). */
async function checkHolder(agentSocket: string | undefined): Promise<Check[]> {
  if (!agentSocket) return [];
  let r: { connections: number; tunnels: number };
  try {
    r = (await callControl(agentSocket, 'routes', {}, 5000)) as { connections: number; tunnels: number };
  } catch (e) {
    if ((e as PjError).code === codes.AGENT_UNAVAILABLE) return []; // no agent here
    return [{ name: 'pj-holder', status: 'fail', detail: (e as Error).message, fix: 'see the agent\'s holder.log and agent.log (op net-holder)' }];
  }
  return [{ name: 'pj-holder', status: 'ok', detail: `holds ${r.connections} connections of jobs, ${r.tunnels} through tunnels` }];
}

async function checkFuse(): Promise<Check[]> {
  const checks: Check[] = [];
  try {
    if (!statSync('/dev/fuse').isCharacterDevice()) throw new Error('/dev/fuse is not a character device');
    accessSync('/dev/fuse', constants.R_OK | constants.W_OK);
    checks.push({ name: 'fuse', status: 'ok', detail: '/dev/fuse is present and writable' });
  } catch (e) {
    checks.push({ name: 'fuse', status: 'fail', detail: (e as Error).message, fix: 'modprobe fuse; in a container, pass --device /dev/fuse' });
  }
  const pt = kernelAtLeast(6, 9);
  checks.push({ name: 'fuse-passthrough', status: pt ? 'ok' : 'warn', detail: `kernel ${release()} ${pt ? 'has' : 'lacks'} FUSE passthrough (>= 6.9)`, fix: 'local /pj files will be served by the daemon (slower); upgrade the kernel to >= 6.9' });
  return checks;
}

async function checkUffd(): Promise<Check> {
  try {
    const api = uffdProbe();
    const names = UFFD_FEATURES.filter(([, bit]) => api.features & bit).map(([n]) => n);
    const missing = ['wp', 'wp-async'].filter((n) => !names.includes(n));
    return { name: 'userfaultfd', status: missing.length ? 'warn' : 'ok', detail: `features: ${names.join(', ')}`, fix: missing.length ? `kernel lacks ${missing.join(', ')}: lazy memory falls back to full copies` : undefined };
  } catch (e) {
    return { name: 'userfaultfd', status: 'fail', detail: (e as Error).message, fix: 'enable CONFIG_USERFAULTFD, or sysctl vm.unprivileged_userfaultfd=1 when not root' };
  }
}

async function checkNamespaces(): Promise<Check> {
  const r = await tool('unshare', ['--net', '--pid', '--mount', '--ipc', '--fork', 'true']);
  return { name: 'namespaces', status: r.ok ? 'ok' : 'fail', detail: r.ok ? 'network, PID, mount and IPC namespaces can be made' : r.out, fix: 'run as root on a kernel with CONFIG_NET_NS, CONFIG_PID_NS; in a container, allow unshare (e.g. --privileged)' };
}

async function checkNft(): Promise<Check> {
  const v = await tool('nft', ['--version']);
  if (!v.ok) return { name: 'nftables', status: 'fail', detail: v.out, fix: SETUP };
  const l = await tool('nft', ['list', 'tables']);
  return { name: 'nftables', status: l.ok ? 'ok' : 'fail', detail: l.ok ? v.out : l.out, fix: 'load nf_tables (modprobe nf_tables)' };
}

async function checkCriu(): Promise<Check[]> {
  const v = await tool('pj-criu', ['--version']);
  const version = /Version:\s*([\d.]+)/.exec(v.out)?.[1];
  if (!version) return [{ name: 'criu', status: 'fail', detail: v.out || 'pj-criu not found', fix: `${SETUP}: it installs CRIU >= 4.2 as pj-criu` }];
  const [maj, min] = version.split('.').map(Number);
  const recent = maj > 4 || (maj === 4 && min >= 2);
  const checks: Check[] = [{ name: 'criu', status: recent ? 'ok' : 'fail', detail: `CRIU ${version}`, fix: `CRIU >= 4.2 is needed (4.1 cannot dump TCP sockets on kernels >= 6.16); ${SETUP}` }];
  const c = await tool('pj-criu', ['check']);
  checks.push({ name: 'criu-check', status: c.ok && /Looks good/.test(c.out) ? 'ok' : 'fail', detail: c.out.split('\n').filter((l) => !/kdat cache/.test(l)).slice(-2).join('; '), fix: 'see `pj-criu check --all` for the missing kernel feature' });
  return checks;
}

async function checkPipeSize(): Promise<Check> {
  const size = Number(readFileSync('/proc/sys/fs/pipe-max-size', 'utf8'));
  const ok = size >= 4194304;
  return { name: 'pipe-max-size', status: ok ? 'ok' : 'fail', detail: `fs.pipe-max-size = ${size}`, fix: 'sysctl -w fs.pipe-max-size=4194304 (CRIU lazy pages need it)' };
}

async function checkEtcd(): Promise<Check> {
  const v = await tool('etcd', ['--version']);
  return { name: 'etcd', status: v.ok ? 'ok' : 'fail', detail: v.ok ? v.out.split('\n')[0] : v.out, fix: `${SETUP} (Debian package etcd-server)` };
}

function statusFixes(checks: Check[]): Check[] {
  return checks.map((c) => (c.status === 'ok' ? { name: c.name, status: c.status, detail: c.detail } : c));
}

export async function runDoctor(agentSocket?: string): Promise<Check[]> {
  const groups = await Promise.all([checkRoot(), checkFuse(), checkUffd(), checkNamespaces(), checkNft(), checkCriu(), checkPipeSize(), checkEtcd(), checkFilePath(agentSocket), checkHolder(agentSocket)]);
  return statusFixes(groups.flat());
}
