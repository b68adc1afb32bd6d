// The pj commands the move tests use, on one cluster: jobs started pinned (the tests place them by
// hand, the policy must not move them too), their records, output and moves; and a job holding
// memory whose checksums the tests compare across moves.
import type { JobView } from '../../migrator/index.js';
import { helperProgram } from '../../common/repo-root.js';
import { memorySums } from './memory-sums.js';
import { waitFor, type TestCluster } from './cluster.js';

export function pinnedJobs(c: TestCluster) {
  const run = async (cmd: string[], on = 'h1', cwd?: string): Promise<string> => {
    const r = await c.pj(['run', '--on', on, '--policy', 'pin', ...(cwd ? ['--cwd', cwd] : []), '--', ...cmd]);
    if (r.code !== 0) throw new Error(`pj run failed: ${r.stderr}`);
    return r.stdout.trim();
  };
  /** `via`: the host whose agent answers (h1's by default). */
  const ps = async (via = 'h1'): Promise<JobView[]> => JSON.parse((await c.pj(['ps', '--json', '--host', via])).stdout) as JobView[];
  const jobOf = async (id: string, via?: string) => (await ps(via)).find((j) => j.id === id)!;
  const logs = async (id: string) => (await c.pj(['logs', id])).stdout;
  const lines = async (id: string) => (await logs(id)).split('\n').filter(Boolean);
  const mv = (id: string, to: string, via = 'h1') => c.pj(['mv', id, to, '--json', '--host', via], { timeoutMs: 300_000 });
  /** memory-job.py holding `mib` MiB in its main process and a forked child, once both are ready. */
  const startMemoryJob = async (mib: number): Promise<string> => {
    const id = await run(['python3', helperProgram('memory-job.py'), String(mib)]);
    await waitFor(async () => /main ready/.test(await logs(id)) && /child ready/.test(await logs(id)), 60_000, 200);
    return id;
  };
  /** The md5s of a memory-job.py's memory (main and child). */
  const sums = (id: string) => memorySums(c, id, 30_000);
  return { run, ps, jobOf, logs, lines, mv, startMemoryJob, memorySums: sums };
}
