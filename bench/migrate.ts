// The migrate benchmark: in a 2-host simulated cluster, jobs of 64, 256 and
// 1024 MiB of memory moved h1 -> h2 with `pj mv` (stop-copy, then post-copy),
// beside the floor measured in the same run on the same kind of job: a plain
// `criu dump` followed by `criu restore` on one host (freeze to resume, no
// network), with its images in the same kind of folder as pj mv's (migrationDir).
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pjCli, repoRoot } from '../common/repo-root.js';
import { sleep } from '../common/run.js';
import { nsenterFor } from '../manager/sim-cluster/exec.js';
import { clusterDown } from '../manager/sim-cluster/down.js';
import { clusterUp } from '../manager/sim-cluster/up.js';
import { migrationDir, type JobView, type MoveResult } from '../migrator/index.js';
import { paths } from '../manager/sim-cluster/layout.js';
import { exec } from './timed-exec.js';
import { percentile, printRows, writeResult, type Row } from './report.js';

/** The same options pj mv gives CRIU (migrator/criu.ts), so that the floor does the same work. */
const CRIU_OPTS = ['--network-lock', 'nftables', '--file-locks', '--tcp-established', '-v4'];

export async function migrateBench(argv: string[]): Promise<void> {
  const quick = argv.includes('--quick');
  const json = argv.includes('--json');
  const sizes = quick ? [64, 256] : [64, 256, 1024];
  const rounds = quick ? 1 : 3;
  const log = (s: string) => { if (!json) process.stdout.write(s + '\n'); };
  const dir = mkdtempSync(join(tmpdir(), 'pj-bench-migrate-'));
  const pj = async (args: string[]) => {
    const r = await exec(process.execPath, [pjCli(), ...args], { PJ_CLUSTER_DIR: dir });
    if (r.code !== 0) throw new Error(`pj ${args.join(' ')}: ${r.stderr.trim()}`);
    return r;
  };
  const inH1 = (cmd: string[]) => exec('nsenter', [...nsenterFor(dir, 'h1'), ...cmd]);
  /** A job holding `mib` MiB on h1, once it holds them. */
  const startJob = async (mib: number): Promise<JobView> => {
    const id = (await pj(['run', '--on', 'h1', '--policy', 'pin', '--', 'python3', join(repoRoot(), 'bench', 'peers', 'memory-hog.py'), String(mib)])).stdout.trim();
    while (!(await pj(['logs', id])).stdout.includes('ready')) await sleep(100);
    return (JSON.parse((await pj(['ps', '--json'])).stdout) as JobView[]).find((j) => j.id === id)!;
  };
  try {
    log(`bringing up a 2-host cluster in ${dir} ...`);
    await clusterUp({ dir, name: 'benchmig', hosts: 2, exports: [] });
    const floor: Record<number, number[]> = {};
    const downtime: Record<number, number[]> = {};
    const total: Record<number, number[]> = {};
    const lazyDowntime: Record<number, number[]> = {};
    const allLocal: Record<number, number[]> = {};
    const rss: Record<number, number> = {};
    for (let round = 1; round <= rounds; round++) {
      for (const mib of sizes) {
        log(`round ${round}/${rounds}, ${mib} MiB: plain criu dump + restore on h1, then pj mv h1 -> h2, stop-copy and post-copy`);
        const plain = await startJob(mib);
        rss[mib] = plain.usage?.rssBytes ?? 0;
        const images = join(migrationDir('h1', paths(dir).hostState('h1')), `floor-${mib}-${round}`);
        await exec('mkdir', ['-p', images]);
        const d = await inH1(['pj-criu', 'dump', '-t', String(plain.pid), '-D', images, '-o', 'dump.log', ...CRIU_OPTS]);
        const r = await inH1(['pj-criu', 'restore', '-d', '-D', images, '-o', 'restore.log', '--pidfile', join(images, 'pid'), ...CRIU_OPTS]);
        if (d.code !== 0 || r.code !== 0) throw new Error(`plain criu failed (dump ${d.code}, restore ${r.code}); logs in ${images}`);
        (floor[mib] ??= []).push(d.ms + r.ms);
        process.kill(Number(readFileSync(join(images, 'pid'), 'utf8')), 'SIGKILL');
        rmSync(images, { recursive: true, force: true });

        const job = await startJob(mib);
        const moved = await pj(['mv', job.id, 'h2', '--json']);
        const m = JSON.parse(moved.stdout) as MoveResult;
        (downtime[mib] ??= []).push(m.downtime_ms);
        (total[mib] ??= []).push(moved.ms);
        await pj(['kill', '-s', 'KILL', job.id]);

        const lazyJob = await startJob(mib);
        const lazy = JSON.parse((await pj(['mv', lazyJob.id, 'h2', '--mode', 'post-copy', '--json'])).stdout) as MoveResult;
        (lazyDowntime[mib] ??= []).push(lazy.downtime_ms);
        (allLocal[mib] ??= []).push(lazy.all_local_ms!);
        await pj(['kill', '-s', 'KILL', lazyJob.id]);
      }
    }
    const med = (xs: Record<number, number[]>) => Object.fromEntries(sizes.map((s) => [s, percentile(xs[s], 50)]));
    const results = {
      floor_ms: med(floor), downtime_ms: med(downtime), total_ms: med(total), rss_bytes: rss,
      post_copy_downtime_ms: med(lazyDowntime), post_copy_all_local_ms: med(allLocal),
    };
    const first = sizes[0];
    const last = sizes.at(-1)!;
    const ratios = {
      ...Object.fromEntries(sizes.map((s) => [`stop_copy_downtime_vs_plain_criu_${s}m`, results.downtime_ms[s] / results.floor_ms[s]])),
      ...Object.fromEntries(sizes.map((s) => [`post_copy_downtime_vs_stop_copy_${s}m`, results.post_copy_downtime_ms[s] / results.downtime_ms[s]])),
      [`post_copy_downtime_growth_${first}m_to_${last}m`]: results.post_copy_downtime_ms[last] / results.post_copy_downtime_ms[first],
    };
    const goals = { stop_copy_downtime_vs_plain_criu_256m: '<= 1.3', post_copy_downtime_vs_stop_copy_256m: '<= 0.2 (issue 6, for hybrid)' };
    if (!json) {
      printRows('pj mv h1 -> h2 (stop-copy, and post-copy) against plain criu dump + restore on one host, measured in this run', sizes.flatMap((s): Row[] => [
        { figure: `downtime, ${s} MiB job`, ours: results.downtime_ms[s], baseline: results.floor_ms[s], unit: 'ms', ratio: results.downtime_ms[s] / results.floor_ms[s], goal: s === 256 ? '<= 1.3x' : undefined },
        { figure: `total pj mv, ${s} MiB job`, ours: results.total_ms[s], baseline: results.floor_ms[s], unit: 'ms', ratio: results.total_ms[s] / results.floor_ms[s] },
        { figure: `post-copy downtime vs stop-copy, ${s} MiB`, ours: results.post_copy_downtime_ms[s], baseline: results.downtime_ms[s], unit: 'ms', ratio: results.post_copy_downtime_ms[s] / results.downtime_ms[s], goal: s === 256 ? '<= 0.2x' : undefined },
      ]));
      process.stdout.write(`post-copy: every page on h2 ${sizes.map((s) => `${results.post_copy_all_local_ms[s]} ms after the resume (${s} MiB)`).join(', ')}; downtime grows ${ratios[`post_copy_downtime_growth_${first}m_to_${last}m`].toFixed(2)}x from ${first} to ${last} MiB\n`);
    }
    writeResult('migrate', { bench: 'migrate', quick, rounds, sizes_mib: sizes, results, ratios, goals }, json);
  } finally {
    await clusterDown(dir).catch(() => {});
    rmSync(dir, { recursive: true, force: true });
  }
}
