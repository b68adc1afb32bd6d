// Draining a host (pj host drain): the flag in etcd makes the host's policies
// move its jobs away (pinned ones stay) and keeps every job from going to it;
// the caller waits until only pinned jobs are left there, or the time is up.
import { PjError, codes } from '../common/errors.js';
import type { ClusterState } from '../manager/cluster-state.js';
import type { JobRecord } from './jobs.js';

const POLL_MS = 500;

export interface DrainResult { host: string; drained: boolean; moved: string[]; pinned: string[]; remaining: string[] }

/** Drains `host` (on) and waits up to `waitMs` for its movable jobs to leave, or ends the drain (off). */
export async function drainHost(state: ClusterState, host: string, on: boolean, waitMs: number): Promise<DrainResult> {
  await state.liveHost(host).catch((e: PjError) => { if (e.code === codes.NO_SUCH_HOST) throw e; });
  await state.setDrained(host, on);
  const there = async () => (await state.jobs.list<JobRecord>()).map((j) => j.value).filter((r) => r.host === host && r.state === 'running');
  const before = await there();
  const deadline = Date.now() + (on ? waitMs : 0);
  let now = before;
  while (now.some((r) => r.policy !== 'pin') && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, POLL_MS));
    now = await there();
  }
  const left = new Set(now.map((r) => r.id));
  return {
    host, drained: on, moved: before.filter((r) => !left.has(r.id)).map((r) => r.id),
    pinned: now.filter((r) => r.policy === 'pin').map((r) => r.id), remaining: now.filter((r) => r.policy !== 'pin').map((r) => r.id),
  };
}
