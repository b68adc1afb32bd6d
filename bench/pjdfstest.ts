// pjdfstest, the public POSIX conformance suite: built once per machine from
// the third-party folder, run in a folder inside a host of a simulated cluster,
// each assertion's outcome compared with a baseline run. Used by the posix
// benchmark and by the fs test.
import { spawn } from 'node:child_process';
import { cpSync, existsSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { repoRoot } from '../common/repo-root.js';
import { run } from '../common/run.js';
import { nsenterFor } from '../manager/sim-cluster/exec.js';

/** Where the suite's source is (read-only): PJDFSTEST_SRC, or the machine's third-party folder. */
const SOURCES = [process.env.PJDFSTEST_SRC, join(repoRoot(), '..', 'shared', 'third-party', 'pjdfstest'), '/work/shared/third-party/pjdfstest'];
/** Where it is built, once per machine. */
const BUILT = '/var/cache/picojump/pjdfstest';
/** The syscalls programs meet most, without the two largest parts (chown, rename): a third of the suite. */
export const QUICK = ['chmod', 'link', 'mkdir', 'mkfifo', 'mknod', 'open', 'rmdir', 'symlink', 'truncate', 'unlink', 'utimensat'];

/** The assertions of one run: `file#n` -> ok (true) or not (false, with what pjdfstest said). */
export type Outcomes = Map<string, { ok: boolean; says: string }>;

/** The suite, built (autoreconf, configure, make) in BUILT the first time. */
export async function pjdfstest(): Promise<string> {
  if (existsSync(join(BUILT, 'pjdfstest'))) return BUILT;
  const src = SOURCES.find((s) => s && existsSync(join(s, 'pjdfstest.c')));
  if (!src) throw new Error(`pjdfstest's source is not on this machine (looked in ${SOURCES.filter(Boolean).join(', ')}; set PJDFSTEST_SRC)`);
  rmSync(BUILT, { recursive: true, force: true });
  cpSync(src, BUILT, { recursive: true });
  for (const [cmd, args] of [['autoreconf', ['-ifs']], ['./configure', []], ['make', ['pjdfstest']]] as const) {
    const r = await new Promise<number>((resolve) => spawn(cmd, [...args], { cwd: BUILT, stdio: 'ignore' }).on('exit', (c) => resolve(c ?? 1)));
    if (r !== 0) throw new Error(`building pjdfstest: ${cmd} failed (${r}); scripts/setup installs autoconf and automake`);
  }
  return BUILT;
}

/**
 * Runs the suite (or `dirs` of it) in `path` inside host `host`; every assertion's outcome. The test
 * files are shared among `jobs` provers at once, each in a folder of its own under `path` (the
 * files are independent: each makes its own randomly named entries).
 */
export async function runSuite(cluster: string, host: string, path: string, suite: string, dirs: string[], jobs = 2): Promise<Outcomes> {
  const roots = dirs.length ? dirs.map((d) => join(suite, 'tests', d)) : [join(suite, 'tests')];
  const files = roots.flatMap((r) => testFiles(r)).sort();
  const groups = Array.from({ length: jobs }, (_, g) => files.filter((_, i) => i % jobs === g)).filter((g) => g.length);
  const outputs = await Promise.all(groups.map((g, i) => {
    const script = `mkdir -p ${path}/${i} && cd ${path}/${i} && prove -v ${g.join(' ')}`;
    return run('nsenter', [...nsenterFor(cluster, host), 'sh', '-c', script], { allowFail: true });
  }));
  const out: Outcomes = new Map();
  for (const r of outputs) {
    let file = '';
    for (const line of r.stdout.split('\n')) {
      const f = /^\S*\/tests\/(\S+\.t) \.+/.exec(line);
      if (f) file = f[1];
      const a = /^(not )?ok (\d+)(.*)$/.exec(line);
      if (a && file && !/# (TODO|SKIP)/i.test(a[3])) out.set(`${file}#${a[2]}`, { ok: !a[1], says: a[3].replace(/^ - /, '') });
    }
  }
  if (out.size === 0) throw new Error(`pjdfstest in ${path} on ${host} ran no test: ${outputs.map((r) => r.stderr.slice(-300)).join(' | ')}`);
  return out;
}

/** The .t files under `dir`, at any depth. */
function testFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = join(dir, e.name);
    return e.isDirectory() ? testFiles(p) : e.name.endsWith('.t') ? [p] : [];
  });
}

const fileOf = (key: string) => key.slice(0, key.indexOf('#'));
const perFile = (o: Outcomes) => [...o.keys()].map(fileOf).reduce((m, f) => m.set(f, (m.get(f) ?? 0) + 1), new Map<string, number>());

/**
 * Test files that ran in the baseline and not here: pjdfstest asks some optional behaviours of ext4
 * only (a rename updating the ctime) and elsewhere passes the file with a lone "ok 1".
 */
export function skippedFiles(baseline: Outcomes, got: Outcomes): string[] {
  const here = perFile(got);
  return [...perFile(baseline)].filter(([f, n]) => n > 1 && (here.get(f) ?? 0) <= 1).map(([f]) => f);
}

/** What differs from the baseline: assertions that pass there and not here (skipped files aside). */
export function differences(baseline: Outcomes, got: Outcomes): string[] {
  const skipped = new Set(skippedFiles(baseline, got));
  const d: string[] = [];
  for (const [k, b] of baseline) {
    const g = got.get(k);
    if (b.ok && !g?.ok && !skipped.has(fileOf(k))) d.push(`${k}: ${g ? g.says : 'not run'}`);
  }
  return d;
}
