// The process the plain-CRIU floors dump: the same memory-hog.py the jobs run,
// started inside a host in a PID namespace of its own (so that a restore never
// meets its pid taken) but not as a job: a job's link to its manager and its
// own mount namespace are what `pj mv` handles and CRIU alone cannot. Its
// output goes to /dev/null (a file would have to be on the restoring host
// too); it is ready once it holds its memory.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { repoRoot } from '../common/repo-root.js';
import { sleep } from '../common/run.js';
import { nsenterFor } from '../manager/sim-cluster/exec.js';
import { exec } from './timed-exec.js';

const READY_TIMEOUT_MS = 120_000;

function rssKiB(pid: number): number | undefined {
  try {
    return Number(/^VmRSS:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0);
  } catch {
    return undefined;
  }
}

/** Starts memory-hog.py holding `mib` MiB on `host`; resolves with its pid (this machine's) once it holds them. */
export async function startFloorProcess(dir: string, host: string, mib: number): Promise<number> {
  const hog = join(repoRoot(), 'bench', 'peers', 'memory-hog.py');
  const r = await exec('nsenter', [...nsenterFor(dir, host), 'sh', '-c', `unshare --pid --fork setsid python3 ${hog} ${mib} </dev/null >/dev/null 2>&1 & echo $!`]);
  const unshare = Number(r.stdout.trim());
  if (r.code !== 0 || !unshare) throw new Error(`cannot start the floor process on ${host}: ${r.stderr.trim()}`);
  const started = Date.now();
  for (;;) {
    const child = Number(readFileSync(`/proc/${unshare}/task/${unshare}/children`, 'utf8').trim().split(' ')[0]);
    const rss = child ? rssKiB(child) : 0;
    if (child && rss !== undefined && rss >= mib * 1024) return child;
    if (Date.now() - started > READY_TIMEOUT_MS) throw new Error(`the floor process on ${host} did not hold ${mib} MiB within ${READY_TIMEOUT_MS} ms`);
    await sleep(100);
  }
}
