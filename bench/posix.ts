// The POSIX benchmark: pjdfstest, the public conformance suite, from h1 of a
// 2-host simulated cluster on h1's own disk (native, the baseline), on
// /pj/h1/data (local) and on /pj/h2/data (remote), in one run. Prints the
// assertions ok and failed per path and every one whose result differs from
// native. --quick runs a third of it, the syscalls programs meet most (the
// fs test runs that on the remote path); --remote-only leaves out the local path.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { clusterDown } from '../manager/sim-cluster/down.js';
import { clusterUp } from '../manager/sim-cluster/up.js';
import { type Outcomes, QUICK, differences, pjdfstest, runSuite, skippedFiles } from './pjdfstest.js';
import { writeResult } from './report.js';

interface PosixResult { path: string; ok: number; failed: number; differs: string[]; skipped: string[] }

export async function posixBench(argv: string[]): Promise<void> {
  const quick = argv.includes('--quick');
  const json = argv.includes('--json');
  const log = (s: string) => { if (!json) process.stdout.write(s + '\n'); };
  const dirs = quick ? QUICK : [];
  const suite = await pjdfstest();
  const dir = mkdtempSync(join(tmpdir(), 'pj-bench-posix-'));
  try {
    log(`bringing up a 2-host cluster in ${dir} ...`);
    await clusterUp({ dir, name: 'benchposix', hosts: 2, exports: [] });
    const targets = [['native', '/srv/data/pjdfstest'], ...(argv.includes('--remote-only') ? [] : [['local', '/pj/h1/data/pjdfstest']]), ['remote', '/pj/h2/data/pjdfstest']];
    const outcomes = new Map<string, Outcomes>();
    for (const [name, path] of targets) {
      const t0 = Date.now();
      outcomes.set(name, await runSuite(dir, 'h1', path, suite, dirs));
      log(`${name} (${path}): ${Math.round((Date.now() - t0) / 1000)} s`);
    }
    const native = outcomes.get('native')!;
    const results: PosixResult[] = targets.map(([name, path]) => {
      const o = [...outcomes.get(name)!.values()];
      return { path: `${name} ${path}`, ok: o.filter((x) => x.ok).length, failed: o.filter((x) => !x.ok).length, differs: name === 'native' ? [] : differences(native, outcomes.get(name)!), skipped: name === 'native' ? [] : skippedFiles(native, outcomes.get(name)!) };
    });
    for (const r of results) {
      log(`\n${r.path}: ${r.ok} ok, ${r.failed} failed${r.differs.length ? `; ${r.differs.length} pass natively and not here:` : ''}`);
      for (const d of r.differs) log(`  ${d}`);
      if (r.skipped.length) log(`  not run here (pjdfstest asks them of ext4 only): ${r.skipped.join(', ')}`);
    }
    writeResult('posix', { quick, suite: dirs.length ? dirs : 'all', results }, json);
  } finally {
    await clusterDown(dir).catch(() => {});
    rmSync(dir, { recursive: true, force: true });
  }
}
