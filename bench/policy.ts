// The policy benchmark, on a 3-host simulated cluster whose hosts each export
// a 32 MiB file, read by jobs at 20 MiB/s (test/helpers/traffic-job.py):
//   - converge: a job reads h2's file on h2, then switches to h3's (and back,
//     every 12 s): the time from each switch to the job running on h3 (h2),
//     against a `pj mv` of the same job by hand measured in the same run;
//   - flapping: a job on h2 whose reads switch between h2 and h3 every 0.5 s,
//     for a minute: its moves per minute (every one of them a flap: neither
//     host is better), against the switches per minute;
//   - a two-phase workload (h2's file, then h3's) started on h1 under follow and
//     under pin: the bytes it moved with other hosts (the ledgers of every host,
//     /pj and connections), follow against pin.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { helperProgram, pjCli } from '../common/repo-root.js';
import { sleep } from '../common/run.js';
import { callControl } from '../manager/control-socket.js';
import { clusterDown } from '../manager/sim-cluster/down.js';
import { nsenterFor } from '../manager/sim-cluster/exec.js';
import { paths } from '../manager/sim-cluster/layout.js';
import { DEFAULT_EXPORT, clusterUp } from '../manager/sim-cluster/up.js';
import type { JobRecord, LedgerRow, MoveResult } from '../migrator/index.js';
import { exec } from './timed-exec.js';
import { percentile, printRows, writeResult } from './report.js';

const RATE_MIB = 20;
const HOSTS = ['h1', 'h2', 'h3'];

export async function policyBench(argv: string[]): Promise<void> {
  const quick = argv.includes('--quick');
  const json = argv.includes('--json');
  const shifts = quick ? 2 : 4;
  const flapS = quick ? 20 : 60;
  const phaseS = quick ? 10 : 20;
  const log = (s: string) => { if (!json) process.stdout.write(s + '\n'); };
  const dir = mkdtempSync(join(tmpdir(), 'pj-bench-policy-'));
  const ask = (op: string, args: Record<string, unknown> = {}, host = 'h1') => callControl(paths(dir).controlSocket(host), op, args, 120_000);
  const pj = async (args: string[]) => {
    const r = await exec(process.execPath, [pjCli(), ...args], { PJ_CLUSTER_DIR: dir });
    if (r.code !== 0) throw new Error(`pj ${args.join(' ')}: ${r.stderr.trim()}`);
    return r.stdout;
  };
  const job = async (id: string) => (await ask('job', { id })) as JobRecord;
  const reader = (on: string, policy: string, phase: number, cycles: number, ...hosts: string[]) =>
    ask('run', { on, policy, cwd: '/', env: { PATH: process.env.PATH ?? '/usr/bin:/bin' },
      cmd: ['python3', helperProgram('traffic-job.py'), String(RATE_MIB), String(phase), String(cycles), ...hosts.map((h) => `/pj/${h}/data/blob`)] }) as Promise<JobRecord>;
  /** The job's phase starts as it printed them: [phase index, epoch ms]. */
  const phases = async (id: string) => [...(await pj(['logs', id])).matchAll(/^phase (\d+) \S+ (\d+)$/gm)].map((m) => [Number(m[1]), Number(m[2])]);
  const kill = async (id: string) => {
    for (let i = 0; i < 120 && (await job(id)).state === 'running'; i++) {
      await ask('kill', { id, signal: 'SIGKILL' }).catch(() => {});
      await sleep(250);
    }
  };
  try {
    log(`bringing up a 3-host cluster in ${dir} ...`);
    await clusterUp({ dir, name: 'benchpol', hosts: 3, exports: [DEFAULT_EXPORT] });
    for (const h of HOSTS) await exec('nsenter', [...nsenterFor(dir, h), 'sh', '-c', 'head -c 32M /dev/urandom > /srv/data/blob']);

    log(`converge: a job on h2 reading h2's file switches to h3's and back every 14 s, ${shifts} times; then the same job moved by hand`);
    const conv = await reader('h2', 'follow', 14, 0, 'h2', 'h3');
    const converge: number[] = [];
    while ((await phases(conv.id)).length < 1) await sleep(50);
    for (let n = 1; n <= shifts; n++) {
      // Phase n reads h3's file when n is odd, h2's when even: wait for it to start, then for the job to be there.
      const want = n % 2 ? 'h3' : 'h2';
      let start: number | undefined;
      while (!(start = (await phases(conv.id))[n]?.[1])) await sleep(50);
      while ((await job(conv.id)).host !== want) await sleep(50);
      converge.push((Date.now() - start) / 1000);
      log(`  switch ${n}: on ${want} ${converge.at(-1)!.toFixed(2)} s after its reads went there`);
    }
    await ask('policy', { id: conv.id, policy: 'pin' });
    // By hand, once the policy's last move has finished (its pages all moved).
    let byHand: MoveResult | undefined;
    let handS = 0;
    while (!byHand) {
      const here = (await job(conv.id)).host;
      const t0 = performance.now();
      byHand = (await ask('mv', { id: conv.id, to: here === 'h2' ? 'h3' : 'h2' }, here).catch((e: { code?: string }) => {
        if (e.code !== 'PJ_ERR_JOB_BUSY') throw e;
      })) as MoveResult | undefined;
      handS = (performance.now() - t0) / 1000;
      if (!byHand) await sleep(250);
    }
    log(`  by hand: pj mv took ${handS.toFixed(2)} s (downtime ${byHand.downtime_ms} ms)`);
    await kill(conv.id);

    log(`flapping: a job on h2 whose reads switch between h2 and h3 every 0.5 s, for ${flapS} s`);
    const flap = await reader('h2', 'follow', 0.5, 0, 'h2', 'h3');
    await sleep(flapS * 1000);
    const flapMoves = (await job(flap.id)).moves;
    const movesPerMin = (flapMoves * 60) / flapS;
    log(`  ${flapMoves} moves in ${flapS} s`);
    await kill(flap.id);

    log(`two phases: a job on h1 reads h2's file for ${phaseS} s, then h3's, under follow and under pin`);
    const remote: Record<string, { remote: number; moves: number; moved: number }> = {};
    for (const policy of ['follow', 'pin']) {
      const j = await reader('h1', policy, phaseS, 1, 'h2', 'h3');
      while ((await job(j.id)).state === 'running') await sleep(250);
      let bytes = 0;
      let moved = 0;
      for (const h of HOSTS) {
        for (const r of (await ask('ledger', {}, h)) as LedgerRow[]) {
          if (r.id !== j.id || r.target === h) continue;
          if (r.layer === 'fs' || r.layer === 'net') bytes += r.bytes;
          if (r.layer === 'mem') moved += r.bytes;
        }
      }
      remote[policy] = { remote: bytes, moves: (await job(j.id)).moves, moved };
      log(`  ${policy}: ${(bytes / 2 ** 20).toFixed(1)} MiB with other hosts, ${remote[policy].moves} moves (pages fetched after them: ${(moved / 2 ** 20).toFixed(1)} MiB)`);
    }

    const results = {
      converge_s: percentile(converge, 50), converge_max_s: Math.max(...converge), converge_each_s: converge, pj_mv_by_hand_s: handS,
      moves_per_min_alternating: movesPerMin, switches_per_min_alternating: 120,
      remote_bytes_follow: remote.follow.remote, remote_bytes_pin: remote.pin.remote, moves_follow: remote.follow.moves, page_bytes_fetched_follow: remote.follow.moved,
    };
    const ratios = {
      converge_vs_pj_mv_by_hand: results.converge_s / handS,
      moves_vs_switches_alternating: movesPerMin / 120,
      remote_bytes_follow_vs_pin: remote.follow.remote / remote.pin.remote,
    };
    const goals = { converge_s: '<= 3', moves_per_min_alternating: '<= 1', remote_bytes_follow_vs_pin: '<= 0.3' };
    if (!json) {
      printRows('the policy: convergence, flapping, remote bytes (baselines measured in this run)', [
        { figure: 'traffic shift to job on the right host', ours: results.converge_s, baseline: handS, unit: 's', ratio: ratios.converge_vs_pj_mv_by_hand, goal: '<= 3 s' },
        { figure: 'moves/min, reads alternating every 0.5 s', ours: movesPerMin, baseline: 120, unit: '/min', ratio: ratios.moves_vs_switches_alternating, goal: '<= 1 /min' },
        { figure: 'remote MiB of a two-phase job, follow vs pin', ours: remote.follow.remote / 2 ** 20, baseline: remote.pin.remote / 2 ** 20, unit: 'MiB', ratio: ratios.remote_bytes_follow_vs_pin, goal: '<= 0.3x' },
      ]);
    }
    writeResult('policy', { bench: 'policy', quick, rate_mib_s: RATE_MIB, results, ratios, goals }, json);
  } finally {
    await clusterDown(dir).catch(() => {});
    rmSync(dir, { recursive: true, force: true });
  }
}
