// Jobs and pj mv on a real 3-host cluster with real CRIU: a counter moved
// around the cluster, 256 MiB of memory in threads and a forked child, an
// SQLite writer moved mid-transaction, refusals, and real faults (a manager
// killed, the images damaged, the link cut) that must leave exactly one copy.
import t, { type Test } from 'tap';
import { execFile, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { repoRoot } from '../../common/repo-root.js';
import { migrationDir, type JobView, type MoveResult } from '../../migrator/index.js';
import { paths } from '../../manager/sim-cluster/layout.js';
import { startCluster, waitFor } from '../helpers/cluster.js';

const c = await startCluster(t, { hosts: 3 });
const helper = (name: string) => join(repoRoot(), 'test', 'helpers', name);

async function run(cmd: string[], on = 'h1', cwd?: string): Promise<string> {
  const r = await c.pj(['run', '--on', on, ...(cwd ? ['--cwd', cwd] : []), '--', ...cmd]);
  if (r.code !== 0) throw new Error(`pj run failed: ${r.stderr}`);
  return r.stdout.trim();
}
/** `via`: the host whose agent answers (h1's by default). */
const ps = async (via = 'h1'): Promise<JobView[]> => JSON.parse((await c.pj(['ps', '--json', '--host', via])).stdout) as JobView[];
const jobOf = async (id: string, via?: string) => (await ps(via)).find((j) => j.id === id)!;
const logs = async (id: string) => (await c.pj(['logs', id])).stdout;
const lines = async (id: string) => (await logs(id)).split('\n').filter(Boolean);
const mv = (id: string, to: string, via = 'h1') => c.pj(['mv', id, to, '--json', '--host', via], { timeoutMs: 300_000 });

/** Every copy of a job on the machine (all hosts share its PID namespace): pj-init as a namespace's pid 1, with its state. */
function copies(id: string): Array<{ pid: number; state: string }> {
  const out: Array<{ pid: number; state: string }> = [];
  for (const d of readdirSync('/proc').filter((x) => /^\d+$/.test(x))) {
    try {
      const argv = readFileSync(`/proc/${d}/cmdline`, 'utf8').split('\0');
      if (!argv[0].endsWith('/pj-init') || !argv[1]?.endsWith(`/${id}`)) continue;
      if (!/^NSpid:\s+\d+\s+1$/m.test(readFileSync(`/proc/${d}/status`, 'utf8'))) continue;
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
      out.push({ pid: Number(d), state: stat.slice(stat.lastIndexOf(')') + 2)[0] });
    } catch { /* gone */ }
  }
  return out;
}
const runningCopies = (id: string) => copies(id).filter((x) => x.state !== 'T' && x.state !== 'Z');

/** The counter's lines: strictly consecutive, and no pause longer than `maxGapMs` between two of them. */
function checkCounter(t: Test, out: string[], maxGapMs: number): void {
  const rows = out.map((l) => l.split(' ').map(Number));
  const broken = rows.findIndex((r, i) => i > 0 && r[0] !== rows[i - 1][0] + 1);
  t.equal(broken, -1, `${rows.length} lines, each one more than the last (no line lost or written twice)${broken > 0 ? `: ${rows[broken - 1][0]} then ${rows[broken][0]}` : ''}`);
  const gap = Math.max(...rows.slice(1).map((r, i) => r[1] - rows[i][1]));
  t.ok(gap <= maxGapMs, `the longest pause between lines was ${gap} ms (bound ${maxGapMs} ms)`);
}

t.test('a counter moved h1 -> h2 -> h3 -> h1 while it prints keeps counting, once', async (t) => {
  const id = await run(['python3', helper('counter-job.py')]);
  await waitFor(async () => (await lines(id)).length > 5, 10_000);
  let worst = 0;
  for (const to of ['h2', 'h3', 'h1']) {
    const from = (await jobOf(id)).host;
    const r = await mv(id, to, from);
    t.equal(r.code, 0, r.stderr);
    const m = JSON.parse(r.stdout) as MoveResult;
    t.same([m.from, m.to, m.mode], [from, to, 'stop-copy']);
    worst = Math.max(worst, m.downtime_ms);
    const j = await jobOf(id);
    t.same([j.host, j.state, j.moves], [to, 'running', ['h2', 'h3', 'h1'].indexOf(to) + 1], `pj ps shows it on ${to}`);
    t.equal(runningCopies(id).length, 1, 'one copy runs on the machine');
    const before = (await lines(id)).length;
    await waitFor(async () => (await lines(id)).length > before + 5, 10_000);
  }
  t.equal((await c.pj(['kill', id])).code, 0);
  const w = await c.pj(['wait', id], { timeoutMs: 30_000 });
  t.same([w.code, w.stdout], [143, 'signal 15\n'], 'pj wait gives the exit status');
  checkCounter(t, await lines(id), worst + 500);
  t.equal(copies(id).length, 0, 'nothing of it is left');
  t.equal((await c.pj(['rm', id])).stdout, `${id}\n`, 'pj rm forgets the ended job');
  t.equal(await jobOf(id), undefined);
  t.match((await c.pj(['rm', id])).stderr, /PJ_ERR_NO_SUCH_JOB/);
});

/** memory-job.py with `mib` MiB in threads and a forked child, once both say they are ready. */
async function startMemoryJob(mib: number): Promise<string> {
  const id = await run(['python3', helper('memory-job.py'), String(mib)]);
  await waitFor(async () => /main ready/.test(await logs(id)) && /child ready/.test(await logs(id)), 60_000, 200);
  return id;
}

/** The md5 of the memory of a memory-job.py, as its main process and its child print them on SIGUSR1. */
async function memorySums(id: string): Promise<Record<string, string>> {
  const before = (await lines(id)).length;
  if ((await c.pj(['kill', '-s', 'USR1', id])).code !== 0) throw new Error(`pj kill -s USR1 ${id} failed`);
  await waitFor(async () => (await lines(id)).slice(before).filter((l) => /^(main|child) /.test(l)).length === 2, 30_000, 200);
  return Object.fromEntries((await lines(id)).slice(before).map((l) => l.split(' ')));
}

t.test('256 MiB of memory in threads and a forked child: the same checksums after every move', async (t) => {
  const id = await startMemoryJob(256);
  const sums = () => memorySums(id);
  const first = await sums();
  t.match(first, { main: /^[0-9a-f]{32}$/, child: /^[0-9a-f]{32}$/ });
  for (const to of ['h2', 'h3']) {
    const r = await mv(id, to, (await jobOf(id)).host);
    t.equal(r.code, 0, r.stderr);
    const m = JSON.parse(r.stdout) as MoveResult;
    t.ok(m.bytes_sent > 256 << 20, `${(m.bytes_sent / 2 ** 20).toFixed(0)} MiB sent; downtime ${m.downtime_ms} ms`);
    const usage = (await jobOf(id)).usage!;
    t.ok(usage.rssBytes > 256 << 20 && usage.processes === 3, `pj ps: ${usage.processes} processes, ${(usage.rssBytes / 2 ** 20).toFixed(0)} MiB`);
    t.same(await sums(), first, `checksums on ${to} are those before the moves`);
  }
  await c.pj(['kill', '-s', 'KILL', id]);
  await waitFor(async () => copies(id).length === 0, 10_000);
});

t.test('post-copy: 256 MiB moved h1 -> h2 -> h1 -> h3 with its memory fetched after the resume: the same checksums', async (t) => {
  const id = await startMemoryJob(256);
  const sums = () => memorySums(id);
  const first = await sums();
  for (const to of ['h2', 'h1', 'h3']) {
    const from = (await jobOf(id)).host;
    const r = await c.pj(['mv', id, to, '--mode', 'post-copy', '--json', '--host', from], { timeoutMs: 300_000 });
    t.equal(r.code, 0, r.stderr);
    const m = JSON.parse(r.stdout) as MoveResult;
    t.equal(m.mode, 'post-copy');
    t.ok(m.bytes_sent < 32 << 20 && m.bytes_lazy! > 256 << 20,
      `${from} -> ${to}: ${(m.bytes_sent / 2 ** 20).toFixed(1)} MiB of images before the resume (downtime ${m.downtime_ms} ms), ${(m.bytes_lazy! / 2 ** 20).toFixed(0)} MiB of pages after it (all here in ${m.all_local_ms} ms)`);
    await waitFor(async () => copies(id).length === 1, 10_000);
    t.same([(await jobOf(id)).host, runningCopies(id).length], [to, 1], `on ${to}, once: the frozen source ended once every page had arrived`);
    t.same(await sums(), first, `checksums on ${to} are those before the moves`);
  }
  await c.pj(['kill', '-s', 'KILL', id]);
  await waitFor(async () => copies(id).length === 0, 10_000);
});

t.test('post-copy: the source dies before every page arrived and no other host holds them: the job ends, PJ_ERR_PAGES_LOST', async (t) => {
  const id = await run(['python3', join(repoRoot(), 'bench', 'peers', 'memory-hog.py'), '1024']);
  await waitFor(async () => /ready/.test(await logs(id)), 60_000, 200);
  const moving = c.pj(['mv', id, 'h2', '--mode', 'post-copy', '--json', '--host', 'h1'], { timeoutMs: 120_000 });
  await waitFor(async () => (await jobOf(id)).host === 'h2', 60_000, 20); // committed; 1 GiB takes seconds to follow
  t.equal((await c.pj(['cluster', 'stop', 'h1', '--signal', 'KILL'])).code, 0, "h1's manager dies while pages are still coming");
  await moving;
  await waitFor(async () => (await jobOf(id, 'h2')).state === 'exited', 30_000, 200);
  t.equal((await jobOf(id, 'h2')).exit, 'PJ_ERR_PAGES_LOST', 'pj ps says why it ended: it did not hang');
  t.match(readFileSync(`${paths(c.dir).hostState('h2')}/agent.log`, 'utf8'), /"code":"PJ_ERR_PAGES_LOST"/);
  t.equal((await c.pj(['cluster', 'start', 'h1'])).code, 0);
  await waitFor(async () => copies(id).length === 0, 15_000, 200);
  t.pass("h1's manager, back, ended the copy CRIU still held: none is left");
});

t.test('an SQLite writer on /pj/h1/data moved mid-transaction to h2 and back loses no committed row', async (t) => {
  // Its working directory is under /pj too, and the database named relative to it.
  const id = await run(['python3', helper('sqlite-job.py'), 'moving.sqlite'], 'h1', '/pj/h1/data');
  const committed = async () => Number((await lines(id)).at(-1)?.split(' ')[1] ?? 0);
  await waitFor(async () => (await committed()) >= 20, 20_000);
  for (const to of ['h2', 'h1']) {
    const r = await mv(id, to, (await jobOf(id)).host);
    t.equal(r.code, 0, r.stderr);
    const at = await committed();
    await waitFor(async () => (await committed()) >= at + 20, 20_000);
  }
  await c.pj(['kill', id]);
  await c.pj(['wait', id], { timeoutMs: 30_000 });
  const last = await committed();
  const check = await c.exec('h1', ['sqlite3', '/srv/data/moving.sqlite', 'PRAGMA integrity_check; SELECT count(*) FROM t WHERE id <= ' + last + ';']);
  t.equal(check.stdout, `ok\n${last}\n`, `integrity_check ok; all ${last} committed rows are there`);
});

t.test('a job holding a file outside /pj is refused before anything is frozen, and runs on', async (t) => {
  const id = await run(['python3', '-c', "import time; f = open('/tmp/pj-outside-' + str(time.time()), 'w'); [print(i, flush=True) or time.sleep(0.05) for i in range(10**9)]"]);
  await waitFor(async () => (await lines(id)).length > 3, 10_000);
  const r = await mv(id, 'h2');
  t.equal(r.code, 1);
  t.match(r.stderr, /PJ_ERR_NOT_MIGRATABLE: .*fd 3 \/tmp\/pj-outside-[\d.]+ \(a file outside \/pj\)/, 'the error names the fd and the path');
  const n = (await lines(id)).length;
  await waitFor(async () => (await lines(id)).length > n + 3, 5000);
  t.same([(await jobOf(id)).host, runningCopies(id).length], ['h1', 1], 'still on h1, running');
  t.match((await c.pj(['rm', id])).stderr, /PJ_ERR_JOB_BUSY: job \w+ is still running/, 'pj rm leaves a running job alone');
  const notJob = await c.pj(['mv', 'nosuchjob', 'h2']);
  t.match(notJob.stderr, /PJ_ERR_NO_SUCH_JOB/);
  await c.pj(['kill', '-s', 'KILL', id]);
});

t.test('files a job maps from outside /pj must be the same on the destination: checked before the freeze', async (t) => {
  // /srv is each host's own: a file mapped from there is a "system file" that h2 may lack or hold otherwise.
  await c.exec('h1', ['sh', '-c', 'head -c 1048576 /dev/urandom > /srv/data/mapped.bin']);
  // mmap(2) through ctypes: Python's mmap module would keep a descriptor of the file open.
  const id = await run(['python3', '-c', [
    'import ctypes, os, time', 'libc = ctypes.CDLL(None)', 'libc.mmap.restype = ctypes.c_void_p',
    'libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]',
    "fd = os.open('/srv/data/mapped.bin', os.O_RDONLY)", 'm = (ctypes.c_char * 4096).from_address(libc.mmap(None, 1 << 20, 1, 2, fd, 0))', 'os.close(fd)',
    'i = 0', 'while True:', '    print(i, m[i % 1000][0], flush=True); i += 1; time.sleep(0.05)'].join('\n')]);
  await waitFor(async () => (await lines(id)).length > 3, 10_000);
  const missing = await mv(id, 'h2');
  t.match(missing.stderr, /PJ_ERR_NOT_MIGRATABLE: files the job maps differ on h2: \/srv\/data\/mapped\.bin: ENOENT here/, 'a file h2 lacks is named');
  await c.exec('h2', ['sh', '-c', 'head -c 1048576 /dev/zero > /srv/data/mapped.bin']);
  const differs = await mv(id, 'h2');
  t.match(differs.stderr, /\/srv\/data\/mapped\.bin: size 1048576 here, 1048576 there; mtime .* here, .* there/, 'a file that differs (mtime) is named');
  t.same([(await jobOf(id)).host, runningCopies(id).length], ['h1', 1], 'the job runs on, on h1');
  await c.exec('h2', ['sh', '-c', 'cp /pj/h1/data/mapped.bin /srv/data/mapped.bin && touch -r /pj/h1/data/mapped.bin /srv/data/mapped.bin']);
  const same = await mv(id, 'h2');
  t.equal(same.code, 0, `the same file on h2: the move goes ahead ${same.stderr}`);
  const n = (await lines(id)).length;
  await waitFor(async () => (await lines(id)).length > n + 3, 10_000);
  await c.pj(['kill', '-s', 'KILL', id]);
});

t.test('pj-mv takes the pid of any process of a job, and refuses one that is not in a job', async (t) => {
  const id = await run(['python3', helper('counter-job.py')]);
  await waitFor(async () => (await lines(id)).length > 3, 10_000);
  const program = copies(id).map((x) => readFileSync(`/proc/${x.pid}/task/${x.pid}/children`, 'utf8').trim())[0];
  const pjMv = (args: string[]) => new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
    execFile(process.execPath, [join(repoRoot(), 'dist', 'cli', 'pj-mv.js'), ...args], { env: { ...process.env, PJ_SOCKET: paths(c.dir).controlSocket('h1') } },
      (err, stdout, stderr) => resolve({ code: err ? Number(err.code ?? 1) : 0, stdout, stderr }));
  });
  const r = await pjMv([program, 'h2', '--json']);
  t.equal(r.code, 0, r.stderr);
  t.equal((JSON.parse(r.stdout) as MoveResult).to, 'h2');
  t.equal((await jobOf(id)).host, 'h2');
  const refused = await pjMv([String(process.pid), 'h3']);
  t.match(refused.stderr, /PJ_ERR_NOT_A_JOB: .*pj run/, 'a process outside any job: PJ_ERR_NOT_A_JOB with a hint');
  await c.pj(['kill', '-s', 'KILL', id]);
});

/** A counter job on h1 and a fault; afterwards exactly one copy runs, where the job table says, and it goes on counting. */
async function survives(t: Test, expectHost: string, id: string): Promise<void> {
  await waitFor(async () => copies(id).length === 1 && runningCopies(id).length === 1, 30_000, 200);
  const j = await jobOf(id);
  t.equal(j.host, expectHost, `the job table places it on ${expectHost}`);
  t.equal(runningCopies(id).length, 1, 'exactly one copy on the machine, running');
  const n = (await lines(id)).length;
  await waitFor(async () => (await lines(id)).length > n + 10, 10_000);
  await c.pj(['kill', '-s', 'KILL', id]);
  await waitFor(async () => copies(id).length === 0, 10_000);
  const rows = (await lines(id)).map((l) => Number(l.split(' ')[0]));
  t.ok(rows.every((r, i) => i === 0 || r === rows[i - 1] + 1), `its ${rows.length} lines count on with no gap or repeat`);
}

t.test("faults: the destination's manager killed during the transfer", async (t) => {
  const id = await startMemoryJob(192);
  const counter = await run(['python3', helper('counter-job.py')]);
  const incoming = join(migrationDir('h2', paths(c.dir).hostState('h2')), 'incoming');
  const moving = mv(id, 'h2');
  await waitFor(async () => existsSync(incoming) && readdirSync(incoming).some((k) => readdirSync(join(incoming, k)).length > 0), 60_000, 10);
  t.equal((await c.pj(['cluster', 'stop', 'h2', '--signal', 'KILL'])).code, 0);
  const r = await moving;
  t.match(r.stderr, /PJ_ERR_MIGRATION_ABORTED: .*h2/, 'pj mv says the move was aborted, and why');
  t.equal((await c.pj(['cluster', 'start', 'h2'])).code, 0);
  await waitFor(async () => runningCopies(id).length === 1, 10_000);
  t.equal((await jobOf(id)).host, 'h1');
  await c.pj(['kill', '-s', 'KILL', id]);
  // The counter was never moved: it is only here to show the manager's death harmed nothing else.
  await survives(t, 'h1', counter);
});

/** Restarts a host's manager with a fault armed (PJ_FAULT, common/fault.ts), or with none. */
async function restartWith(t: Test, host: string, fault?: string): Promise<void> {
  await c.pj(['cluster', 'stop', host]);
  const { code } = await c.pj(['cluster', 'start', host], { env: fault ? { PJ_FAULT: fault } : {} });
  t.equal(code, 0, `${host}'s manager restarted${fault ? ` with PJ_FAULT=${fault}` : ''}`);
}

t.test('faults: CRIU killed on the source in the middle of the dump', async (t) => {
  const id = await startMemoryJob(192);
  const init = (await jobOf(id)).pid;
  const counter = await run(['python3', helper('counter-job.py')]);
  const moving = mv(id, 'h2');
  let criu = 0;
  await waitFor(async () => {
    criu = Number(spawnSync('pgrep', ['-f', `criu dump -t ${init} `]).stdout.toString().trim().split('\n')[0] || 0);
    return criu > 0;
  }, 30_000, 5);
  process.kill(criu, 'SIGKILL');
  const r = await moving;
  t.match(r.stderr, /PJ_ERR_MIGRATION_ABORTED: job \w+ stays on h1: criu dump failed/, 'pj mv says CRIU failed on the source');
  await waitFor(async () => runningCopies(id).length === 1, 10_000);
  t.same([(await jobOf(id)).host, copies(id).length], ['h1', 1], 'the job runs on h1, once');
  await c.pj(['kill', '-s', 'KILL', id]);
  await survives(t, 'h1', counter);
});

t.test("faults: the destination's manager killed as it restores", async (t) => {
  await restartWith(t, 'h2', 'destination-before-restore');
  const id = await run(['python3', helper('counter-job.py')]);
  await waitFor(async () => (await lines(id)).length > 5, 10_000);
  const r = await mv(id, 'h2');
  t.match(r.stderr, /PJ_ERR_MIGRATION_ABORTED: job \w+ stays on h1: .*h2/, r.stderr);
  await restartWith(t, 'h2');
  await survives(t, 'h1', id);
});

t.test("faults: damaged images make the destination's CRIU fail; the job resumes on the source", async (t) => {
  await restartWith(t, 'h3', 'corrupt-images');
  const id = await run(['python3', helper('counter-job.py')]);
  await waitFor(async () => (await lines(id)).length > 5, 10_000);
  const r = await mv(id, 'h3');
  t.match(r.stderr, /PJ_ERR_MIGRATION_ABORTED: .*criu restore failed/, r.stderr);
  await survives(t, 'h1', id);
  await restartWith(t, 'h3');
});

t.test('faults: the link to the destination cut during the transfer', async (t) => {
  const id = await startMemoryJob(192);
  const incoming = join(migrationDir('h3', paths(c.dir).hostState('h3')), 'incoming');
  const moving = mv(id, 'h3');
  await waitFor(async () => existsSync(incoming) && readdirSync(incoming).some((k) => readdirSync(join(incoming, k)).length > 0), 60_000, 10);
  const link = (state: string) => spawnSync('ip', ['-n', `${c.name}-h3`, 'link', 'set', 'eth0', state]).status;
  t.equal(link('down'), 0, "h3's link is down");
  const r = await moving;
  t.equal(link('up'), 0, "h3's link is up again");
  t.match(r.stderr, /PJ_ERR_MIGRATION_ABORTED: job \w+ stays on h1: .*h3/, 'pj mv gives up and says why');
  await waitFor(async () => copies(id).length === 1 && runningCopies(id).length === 1, 30_000, 200);
  t.equal((await jobOf(id)).host, 'h1', 'the job runs on h1, once');
  await c.pj(['kill', '-s', 'KILL', id]);
});

t.test("faults: the source's manager killed right after the commit", async (t) => {
  await restartWith(t, 'h1', 'source-after-commit');
  const id = await run(['python3', helper('counter-job.py')]);
  await waitFor(async () => (await lines(id)).length > 5, 10_000);
  const r = await mv(id, 'h2', 'h3');
  t.equal(r.code, 0, r.stderr);
  t.match(JSON.parse(r.stdout), { committed: true, to: 'h2' }, 'pj mv (asked through h3) reports the move that committed');
  await restartWith(t, 'h1');
  await survives(t, 'h2', id);
});
