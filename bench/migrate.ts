// The migrate benchmark: in a 2-host simulated cluster, jobs of 64, 256 and
// 1024 MiB of memory moved h1 -> h2 with `pj mv` in each mode, beside the
// floor measured in the same run on the same program: a plain `criu dump`
// followed by `criu restore` on one host (freeze to resume, no network), with
// the options pj mv gives CRIU and its images in the same kind of folder as
// pj mv's (migrationDir). Each figure is printed as it is measured.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pjCli, repoRoot } from '../common/repo-root.js';
import { sleep } from '../common/run.js';
import { nsenterFor } from '../manager/sim-cluster/exec.js';
import { clusterDown } from '../manager/sim-cluster/down.js';
import { clusterUp } from '../manager/sim-cluster/up.js';
import { CRIU_OPTIONS } from '../migrator/criu.js';
import { MODES, migrationDir, type JobView, type MoveResult } from '../migrator/index.js';
import { startFloorProcess } from './floor-process.js';
import { paths } from '../manager/sim-cluster/layout.js';
import { exec } from './timed-exec.js';
import { percentile, printRows, writeResult, type Row } from './report.js';


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
    const downtime: Record<string, Record<number, number[]>> = Object.fromEntries(MODES.map((m) => [m, {}]));
    const total: Record<string, Record<number, number[]>> = Object.fromEntries(MODES.map((m) => [m, {}]));
    const allLocal: Record<string, Record<number, number[]>> = Object.fromEntries(MODES.map((m) => [m, {}]));
    const rss: Record<number, number> = {};
    for (let round = 1; round <= rounds; round++) {
      for (const mib of sizes) {
        const plain = await startFloorProcess(dir, 'h1', mib);
        const images = join(migrationDir('h1', paths(dir).hostState('h1')), `floor-${mib}-${round}`);
        await exec('mkdir', ['-p', images]);
        const d = await inH1(['pj-criu', 'dump', '-t', String(plain), '-D', images, '-o', 'dump.log', ...CRIU_OPTIONS]);
        const r = await inH1(['pj-criu', 'restore', '-d', '-D', images, '-o', 'restore.log', '--pidfile', join(images, 'pid'), ...CRIU_OPTIONS]);
        if (d.code !== 0 || r.code !== 0) throw new Error(`plain criu failed (dump ${d.code}, restore ${r.code}); logs in ${images}`);
        (floor[mib] ??= []).push(d.ms + r.ms);
        process.kill(Number(readFileSync(join(images, 'pid'), 'utf8')), 'SIGKILL');
        rmSync(images, { recursive: true, force: true });
        log(`round ${round}/${rounds}, ${mib} MiB: plain criu dump + restore on h1 ${Math.round(d.ms + r.ms)} ms`);

        for (const mode of MODES) {
          const job = await startJob(mib);
          rss[mib] = job.usage?.rssBytes ?? 0;
          const moved = await pj(['mv', job.id, 'h2', '--mode', mode, '--json']);
          const m = JSON.parse(moved.stdout) as MoveResult;
          (downtime[mode][mib] ??= []).push(m.downtime_ms);
          (total[mode][mib] ??= []).push(moved.ms);
          if (m.all_local_ms !== undefined) (allLocal[mode][mib] ??= []).push(m.all_local_ms);
          log(`round ${round}/${rounds}, ${mib} MiB: pj mv --mode ${mode} h1 -> h2: downtime ${m.downtime_ms} ms, whole move ${Math.round(moved.ms)} ms${m.all_local_ms !== undefined ? `, every page on h2 ${m.all_local_ms} ms after the resume` : ''}`);
          await pj(['kill', '-s', 'KILL', job.id]);
        }
      }
    }
    const med = (xs: Record<number, number[]>) => Object.fromEntries(sizes.filter((s) => xs[s]).map((s) => [s, percentile(xs[s], 50)]));
    const byMode = (xs: Record<string, Record<number, number[]>>) => Object.fromEntries(MODES.map((m) => [m, med(xs[m])]));
    const results = { floor_ms: med(floor), downtime_ms: byMode(downtime), total_ms: byMode(total), all_local_ms: byMode(allLocal), rss_bytes: rss };
    const key = (mode: string) => mode.replace('-', '_');
    const ratios = Object.fromEntries(MODES.flatMap((mode) => sizes.map((s) => [`${key(mode)}_downtime_vs_plain_criu_${s}m`, results.downtime_ms[mode][s] / results.floor_ms[s]])));
    const goals = { stop_copy_downtime_vs_plain_criu_256m: '<= 1.3', hybrid_downtime_vs_stop_copy_256m: '<= 0.2 (the mem benchmark measures it)' };
    if (!json) {
      printRows('pj mv h1 -> h2 in each mode against plain criu dump + restore on one host, measured in this run', sizes.flatMap((s): Row[] => MODES.map((mode) => (
        { figure: `${mode} downtime, ${s} MiB job`, ours: results.downtime_ms[mode][s], baseline: results.floor_ms[s], unit: 'ms', ratio: results.downtime_ms[mode][s] / results.floor_ms[s], goal: s === 256 && mode === 'stop-copy' ? '<= 1.3x' : undefined }))));
    }
    writeResult('migrate', { bench: 'migrate', quick, rounds, sizes_mib: sizes, results, ratios, goals }, json);
  } finally {
    await clusterDown(dir).catch(() => {});
    rmSync(dir, { recursive: true, force: true });
  }
}
