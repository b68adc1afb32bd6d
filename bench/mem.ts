// The mem benchmark: in a 2-host simulated cluster, jobs moved h1 -> h2 with
// `pj mv` in every mode (stop-copy, pre-copy, post-copy, hybrid): idle jobs of
// 64, 256 and 1024 MiB and a 256 MiB job rewriting 10 MiB/s; a job reading all
// its memory right after the resume (fault service times); a return trip
// h1 -> h2 -> h1 after 32 MiB changed; and, as the post-copy baseline measured
// in the same run, plain CRIU: `criu dump --lazy-pages` on h1, `criu
// lazy-pages` and `criu restore --lazy-pages` on h2.
import { spawn } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pjCli, repoRoot } from '../common/repo-root.js';
import { sleep } from '../common/run.js';
import { clusterDown } from '../manager/sim-cluster/down.js';
import { nsenterFor } from '../manager/sim-cluster/exec.js';
import { paths, readClusterFile } from '../manager/sim-cluster/layout.js';
import { clusterUp } from '../manager/sim-cluster/up.js';
import { CRIU_OPTIONS } from '../migrator/criu.js';
import { migrationDir, type MoveResult } from '../migrator/index.js';
import { startFloorProcess } from './floor-process.js';
import { printRows, writeResult } from './report.js';

const MODES = ['stop-copy', 'pre-copy', 'post-copy', 'hybrid'] as const;
const MiB = 2 ** 20;
const PAGE_SERVER_PORT = 27100;

interface Run { code: number; stdout: string; stderr: string; ms: number }

function exec(cmd: string, args: string[], env: Record<string, string> = {}, statusFd = false): { done: Promise<Run>; status: Promise<void> } {
  const t0 = performance.now();
  const p = spawn(cmd, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe', ...(statusFd ? ['pipe' as const] : [])] });
  let stdout = '';
  let stderr = '';
  p.stdout!.on('data', (d) => (stdout += d));
  p.stderr!.on('data', (d) => (stderr += d));
  const status = statusFd ? new Promise<void>((resolve) => p.stdio[3]!.once('data', () => resolve())) : Promise.resolve();
  return { done: new Promise((resolve) => p.on('close', (code) => resolve({ code: code ?? 1, stdout, stderr, ms: performance.now() - t0 }))), status };
}

/** Bytes a move carried between hosts. */
const carried = (m: MoveResult): number => (m.bytes_precopy ?? 0) + (m.bytes_frozen ?? m.bytes_sent) + (m.bytes_lazy ?? 0);

export async function memBench(argv: string[]): Promise<void> {
  const quick = argv.includes('--quick');
  const json = argv.includes('--json');
  const sizes = quick ? [64, 256] : [64, 256, 1024];
  const log = (s: string) => { if (!json) process.stdout.write(s + '\n'); };
  const dir = mkdtempSync(join(tmpdir(), 'pj-bench-mem-'));
  const pj = async (args: string[]): Promise<Run> => {
    const r = await exec(process.execPath, [pjCli(), ...args], { PJ_CLUSTER_DIR: dir }).done;
    if (r.code !== 0) throw new Error(`pj ${args.join(' ')}: ${r.stderr.trim()}`);
    return r;
  };
  const onHost = (host: string, cmd: string[], statusFd = false) => exec('nsenter', [...nsenterFor(dir, host), ...cmd], {}, statusFd);
  /** A memory-hog.py job on h1 holding `mib` MiB, once it holds them. */
  const startJob = async (mib: number, opts: string[] = []): Promise<string> => {
    const id = (await pj(['run', '--on', 'h1', '--policy', 'pin', '--', 'python3', join(repoRoot(), 'bench', 'peers', 'memory-hog.py'), String(mib), ...opts])).stdout.trim();
    while (!(await pj(['logs', id])).stdout.includes('ready')) await sleep(100);
    return id;
  };
  const move = async (id: string, to: string, mode: string): Promise<MoveResult & { total_ms: number }> => {
    const r = await pj(['mv', id, to, '--mode', mode, '--json']);
    const m = JSON.parse(r.stdout) as MoveResult;
    log(`  downtime ${m.downtime_ms} ms, whole move ${Math.round(r.ms)} ms, ${(carried(m) / MiB).toFixed(1)} MiB carried${m.all_local_ms !== undefined ? `, every page here ${m.all_local_ms} ms after the resume` : ''}`);
    return { ...m, total_ms: Math.round(r.ms) };
  };
  const end = (id: string) => pj(['kill', '-s', 'KILL', id]);
  try {
    log(`bringing up a 2-host cluster in ${dir} ...`);
    await clusterUp({ dir, name: 'benchmem', hosts: 2, exports: [] });
    // The baseline first: a failure there costs no figure of ours.
    log('baseline: plain CRIU, dump --lazy-pages on h1, lazy-pages + restore --lazy-pages on h2 (256 MiB)');
    const criuLazy = await plainCriuLazy(dir, await startFloorProcess(dir, 'h1', 256), onHost);
    log(`  downtime ${criuLazy.downtime_ms} ms, every page on h2 ${criuLazy.all_local_ms} ms after the resume`);
    const workloads = [...sizes.map((s) => ({ name: `idle-${s}m`, mib: s, opts: [] as string[] })), { name: 'dirty-256m-10mibps', mib: 256, opts: ['dirty=10'] }];
    const moves: Record<string, Record<string, MoveResult & { total_ms: number }>> = {};
    for (const w of workloads) {
      for (const mode of MODES) {
        log(`${w.name}: pj mv h1 -> h2 --mode ${mode}`);
        const id = await startJob(w.mib, w.opts);
        (moves[w.name] ??= {})[mode] = await move(id, 'h2', mode);
        await end(id);
      }
    }

    log('faults: a 256 MiB job reading every page, moved hybrid (pages from the store) and post-copy (fetched)');
    const faults: Record<string, MoveResult> = {};
    for (const mode of ['hybrid', 'post-copy']) {
      const id = await startJob(256, ['touch']);
      faults[mode] = await move(id, 'h2', mode);
      await end(id);
    }

    log('return trip: 256 MiB, hybrid h1 -> h2, 32 MiB rewritten, hybrid h2 -> h1');
    const tripJob = await startJob(256);
    const out = await move(tripJob, 'h2', 'hybrid');
    await pj(['kill', '-s', 'USR1', tripJob]);
    while (!(await pj(['logs', tripJob])).stdout.includes('dirtied 32')) await sleep(100);
    const back = await move(tripJob, 'h1', 'hybrid');
    await end(tripJob);


    const idle = (s: number, mode: string) => moves[`idle-${s}m`][mode];
    const first = sizes[0];
    const last = sizes.at(-1)!;
    const results = {
      moves, faults: { hybrid: faults.hybrid, post_copy: faults['post-copy'] }, return_trip: { out, back, dirtied_bytes: 32 * MiB },
      criu_lazy_256m: criuLazy,
      fault_local_p50_us: faults.hybrid.faults!.local_p50_us, fault_local_p99_us: faults.hybrid.faults!.local_p99_us,
      fault_fetched_p50_us: faults['post-copy'].faults!.fetched_p50_us, fault_fetched_p99_us: faults['post-copy'].faults!.fetched_p99_us,
    };
    const growthKey = `hybrid_downtime_growth_${first}m_to_${last === 1024 ? '1g' : `${last}m`}`;
    const ratios: Record<string, number> = {
      hybrid_downtime_vs_stop_copy_256m: idle(256, 'hybrid').downtime_ms / idle(256, 'stop-copy').downtime_ms,
      [growthKey]: idle(last, 'hybrid').downtime_ms / idle(first, 'hybrid').downtime_ms,
      return_trip_bytes_vs_dirtied: carried(back) / (32 * MiB),
      // Post-copy against CRIU's post-copy: the same work; hybrid (pages pre-copied) beside it.
      all_local_time_vs_criu_lazy: idle(256, 'post-copy').all_local_ms! / criuLazy.all_local_ms,
      hybrid_all_local_time_vs_criu_lazy: idle(256, 'hybrid').all_local_ms! / criuLazy.all_local_ms,
      post_copy_downtime_vs_criu_lazy: idle(256, 'post-copy').downtime_ms / criuLazy.downtime_ms,
      dirty_hybrid_downtime_vs_stop_copy_256m: moves['dirty-256m-10mibps'].hybrid.downtime_ms / moves['dirty-256m-10mibps']['stop-copy'].downtime_ms,
    };
    const goals = {
      hybrid_downtime_vs_stop_copy_256m: '<= 0.2', hybrid_downtime_growth_64m_to_1g: '<= 1.2', return_trip_bytes_vs_dirtied: '<= 1.5',
      all_local_time_vs_criu_lazy: '<= 0.5', fault_local_p50_us: '<= 20',
    };
    if (!json) {
      for (const w of workloads) {
        process.stdout.write(`\n${w.name}: mode, downtime, whole pj mv, bytes carried, pre-copy rounds, all pages here after the resume\n`);
        for (const mode of MODES) {
          const m = moves[w.name][mode];
          process.stdout.write(`  ${mode.padEnd(9)} ${String(m.downtime_ms).padStart(6)} ms ${String(m.total_ms).padStart(7)} ms ${(carried(m) / MiB).toFixed(1).padStart(8)} MiB  ${m.precopy_rounds ?? '-'}  ${m.all_local_ms ?? '-'} ms\n`);
        }
      }
      process.stdout.write('\nfaults while a job reads all its memory right after the resume (service time by where the page was):\n');
      for (const [mode, m] of Object.entries(faults)) {
        const f = m.faults!;
        process.stdout.write(`  ${mode.padEnd(9)} in the pager already (given, or its place in the store): ${f.local} faults, p50 ${f.local_p50_us} us, p99 ${f.local_p99_us} us; from this host after the fault: ${f.handed}, p50 ${f.handed_p50_us} us; fetched from the source: ${f.fetched}, p50 ${f.fetched_p50_us} us, p99 ${f.fetched_p99_us} us\n`);
      }
      printRows('goals (each beside its baseline, measured in this run)', [
        { figure: 'hybrid downtime, 256 MiB', ours: idle(256, 'hybrid').downtime_ms, baseline: idle(256, 'stop-copy').downtime_ms, unit: 'ms', ratio: ratios.hybrid_downtime_vs_stop_copy_256m, goal: '<= 0.2x stop-copy' },
        { figure: `hybrid downtime, ${last} MiB vs ${first} MiB`, ours: idle(last, 'hybrid').downtime_ms, baseline: idle(first, 'hybrid').downtime_ms, unit: 'ms', ratio: ratios[growthKey], goal: '<= 1.2x' },
        { figure: 'return trip bytes vs bytes dirtied', ours: carried(back) / MiB, baseline: 32, unit: 'MiB', ratio: ratios.return_trip_bytes_vs_dirtied, goal: '<= 1.5x' },
        { figure: 'all pages here after the resume, post-copy 256 MiB', ours: idle(256, 'post-copy').all_local_ms!, baseline: criuLazy.all_local_ms, unit: 'ms', ratio: ratios.all_local_time_vs_criu_lazy, goal: '<= 0.5x criu lazy-pages' },
        { figure: 'all pages here after the resume, hybrid 256 MiB', ours: idle(256, 'hybrid').all_local_ms!, baseline: criuLazy.all_local_ms, unit: 'ms', ratio: ratios.hybrid_all_local_time_vs_criu_lazy },
        { figure: 'post-copy downtime vs plain criu lazy, 256 MiB', ours: idle(256, 'post-copy').downtime_ms, baseline: criuLazy.downtime_ms, unit: 'ms', ratio: ratios.post_copy_downtime_vs_criu_lazy },
      ]);
      process.stdout.write(`local-hit fault p50: ${results.fault_local_p50_us} us (goal <= 20 us)\n`);
    }
    writeResult('mem', { bench: 'mem', quick, sizes_mib: sizes, results, ratios, goals }, json);
  } finally {
    await clusterDown(dir).catch(() => {});
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * CRIU's own post-copy, h1 -> h2: the dump serves the pages on h1's page server; on h2, `criu lazy-pages`
 * fetches them for `criu restore --lazy-pages`. Downtime: dump until the images are written, plus the
 * restore (the copy of the images between the two, a few MiB, is not counted). All local: from the
 * restore's end until the lazy-pages daemon has every page and exits.
 */
async function plainCriuLazy(dir: string, pid: number, onHost: (host: string, cmd: string[], statusFd?: boolean) => ReturnType<typeof exec>): Promise<{ downtime_ms: number; all_local_ms: number }> {
  const h1 = readClusterFile(dir).hosts[0].address;
  const work = migrationDir('h1', paths(dir).hostState('h1'));
  const dumped = join(work, 'criu-lazy-dump');
  const restored = join(work, 'criu-lazy-restore');
  mkdirSync(dumped, { recursive: true });
  const t0 = performance.now();
  const dump = onHost('h1', ['pj-criu', 'dump', '-t', String(pid), '-D', dumped, '-o', 'dump.log', '--lazy-pages', '--address', h1, '--port', String(PAGE_SERVER_PORT), '--status-fd', '3', ...CRIU_OPTIONS], true);
  await Promise.race([dump.status, dump.done.then((r) => { throw new Error(`criu dump --lazy-pages failed (${r.code}); see ${dumped}/dump.log`); })]);
  const dumpMs = performance.now() - t0;
  cpSync(dumped, restored, { recursive: true });
  const daemon = onHost('h2', ['pj-criu', 'lazy-pages', '--page-server', '--address', h1, '--port', String(PAGE_SERVER_PORT), '-D', restored, '-o', 'lazy.log', '-v4']);
  await sleep(200); // its socket in the images folder, before the restore looks for it
  const r = await onHost('h2', ['pj-criu', 'restore', '-d', '-D', restored, '-o', 'restore.log', '--lazy-pages', '--pidfile', join(restored, 'pid'), ...CRIU_OPTIONS]).done;
  if (r.code !== 0) throw new Error(`criu restore --lazy-pages failed; see ${restored}/restore.log`);
  const resumed = performance.now();
  const d = await daemon.done;
  const allLocal = performance.now() - resumed;
  await dump.done;
  if (d.code !== 0) throw new Error(`criu lazy-pages failed; see ${restored}/lazy.log`);
  process.kill(Number(readFileSync(join(restored, 'pid'), 'utf8')), 'SIGKILL');
  rmSync(dumped, { recursive: true, force: true });
  rmSync(restored, { recursive: true, force: true });
  return { downtime_ms: Math.round(dumpMs + r.ms), all_local_ms: Math.round(allLocal) };
}

