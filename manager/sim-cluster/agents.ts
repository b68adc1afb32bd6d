// Starting and stopping the manager of one simulated host: `pj agent` run
// inside the host's network and mount namespaces.
import { existsSync, readFileSync } from 'node:fs';
import { PjError, codes } from '../../common/errors.js';
import { pjCli } from '../../common/repo-root.js';
import { sleep, spawnDaemon } from '../../common/run.js';
import { callControl } from '../control-socket.js';
import { AGENT_PORT, ETCD_ADDRESS, PJ_MOUNT, paths, type ClusterFile, type SimHost } from './layout.js';
import { nsenterArgs } from './namespaces.js';

export function processAlive(pid: number | undefined): boolean {
  if (!pid) return false;
  try {
    process.kill(pid, 0);
    return !readFileSync(`/proc/${pid}/stat`, 'utf8').includes(') Z ');
  } catch {
    return false;
  }
}

export const AGENT_POOL_THREADS = 16;

export function startAgent(c: ClusterFile, host: SimHost): number {
  const p = paths(c.dir);
  const exportFlags = [...c.exports.flatMap((e) => ['--export', e]), ...(c.devices ?? []).flatMap((d) => ['--device', d])];
  const args = [
    ...nsenterArgs(host.netns, p.mountNs(host.name)),
    // Disk I/O for /pj and page reads run on libuv's pool: more threads than its 4, so that slow disks
    // and processes in execve hold some without starving the rest (read by libuv once, at start).
    'env', `UV_THREADPOOL_SIZE=${AGENT_POOL_THREADS}`,
    process.execPath, pjCli(), 'agent',
    '--host', host.name,
    '--listen', `${host.address}:${AGENT_PORT}`,
    '--etcd', `http://${ETCD_ADDRESS}:2379`,
    '--secret-file', p.secret,
    '--state-dir', p.hostState(host.name),
    '--mount', PJ_MOUNT,
    '--control-socket', '/run/pj/agent.sock',
    ...exportFlags,
    ...(c.agentOptions ?? []),
    ...(c.hostOptions?.[host.name] ?? []),
  ];
  return spawnDaemon('nsenter', args, p.hostLog(host.name));
}

/** Waits until the agent answers on its control socket; fails early, with its log, if it died. */
export async function waitAgent(c: ClusterFile, host: SimHost, timeoutMs = 20_000): Promise<void> {
  const sock = paths(c.dir).controlSocket(host.name);
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (existsSync(sock)) {
      try {
        await callControl(sock, 'status', {}, 2000);
        return;
      } catch { /* not ready yet */ }
    }
    if (!processAlive(host.agentPid) || Date.now() > deadline) {
      const log = existsSync(paths(c.dir).hostLog(host.name)) ? readFileSync(paths(c.dir).hostLog(host.name), 'utf8').trim().split('\n').slice(-5).join('\n') : '';
      throw new PjError(codes.CLUSTER, `agent of ${host.name} did not come up${log ? `:\n${log}` : ''}`, { host: host.name });
    }
    await sleep(100);
  }
}

/** Signals a host's agent and waits (up to 5 s) for it to be gone. */
export async function stopAgent(host: SimHost, signal: NodeJS.Signals): Promise<boolean> {
  if (!processAlive(host.agentPid)) return false;
  process.kill(host.agentPid!, signal);
  for (let i = 0; i < 50 && processAlive(host.agentPid); i++) await sleep(100);
  return true;
}
