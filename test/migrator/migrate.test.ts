// Jobs and pj mv on a real 3-host cluster with real CRIU: a counter moved
// around the cluster, 256 MiB of memory in threads and a forked child moved in
// every mode and on return trips, jobs whose memory changes as they move, an
// SQLite writer moved mid-transaction, refusals, pj-mv, and the page stores'
// bound. Faults during moves are in move-faults.test.ts.
import t, { type Test } from 'tap';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { helperProgram, repoRoot } from '../../common/repo-root.js';
import type { MoveResult } from '../../migrator/index.js';
import type { PageStoreStats } from '../../mem-layer/index.js';
import { paths } from '../../manager/sim-cluster/layout.js';
import { copies, runningCopies } from '../helpers/copies.js';
import { startCluster, waitFor } from '../helpers/cluster.js';
import { pinnedJobs } from '../helpers/pinned-jobs.js';

const STORE_BYTES = 1280 * 2 ** 20;
const c = await startCluster(t, { hosts: 3, agentOptions: [`--page-store-size=${STORE_BYTES}`] });
const helper = helperProgram;
const { run, jobOf, logs, lines, mv, startMemoryJob, memorySums } = pinnedJobs(c);

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
    t.same([m.from, m.to, m.mode], [from, to, 'hybrid']);
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

const MiB = 2 ** 20;
const mib = (n = 0) => `${(n / MiB).toFixed(1)} MiB`;
/** Bytes a lazy move carried between hosts: pre-copy, images, pages after the freeze. */
const carried = (m: MoveResult) => (m.bytes_precopy ?? 0) + (m.bytes_frozen ?? m.bytes_sent) + (m.bytes_lazy ?? 0);

async function moveAndCheck(t: Test, id: string, to: string, mode: string, sums: () => Promise<Record<string, string>>, first: Record<string, string>): Promise<MoveResult> {
  const from = (await jobOf(id)).host;
  const r = await c.pj(['mv', id, to, '--mode', mode, '--json', '--host', from], { timeoutMs: 300_000 });
  t.equal(r.code, 0, r.stderr);
  const m = JSON.parse(r.stdout) as MoveResult;
  t.equal(m.mode, mode);
  await waitFor(async () => copies(id).length === 1, 10_000);
  t.same([(await jobOf(id)).host, runningCopies(id).length], [to, 1], `${mode} ${from} -> ${to}: downtime ${m.downtime_ms} ms; pre-copy ${mib(m.bytes_precopy)} in ${m.precopy_rounds ?? 0} rounds, images ${mib(m.bytes_frozen ?? m.bytes_sent)}, ${m.pages_from_store ?? 0} pages from the store, ${m.pages_fetched ?? 0} fetched (${mib(m.bytes_lazy)}); on ${to}, once`);
  t.same(await sums(), first, `checksums on ${to} are those before the moves`);
  return m;
}

t.test('each mode moves 256 MiB (threads, a forked child; private, file-backed and shared mappings), then a return trip h1 -> h2 -> h1 -> h3: the same checksums', async (t) => {
  const id = await startMemoryJob(256);
  const sums = () => memorySums(id);
  const first = await sums();
  t.match(first, { main: /^[0-9a-f]{32}$/, child: /^[0-9a-f]{32}$/ });
  const stop = await moveAndCheck(t, id, 'h2', 'stop-copy', sums, first);
  t.ok(stop.bytes_sent > 256 * MiB && stop.bytes_lazy === undefined, 'stop-copy: every page in the images');
  const usage = (await jobOf(id)).usage!;
  t.ok(usage.rssBytes > 256 * MiB && usage.processes === 3, `pj ps: ${usage.processes} processes, ${mib(usage.rssBytes)}`);
  const pre = await moveAndCheck(t, id, 'h3', 'pre-copy', sums, first);
  t.ok(pre.precopy_rounds! >= 1 && pre.bytes_precopy! > 256 * MiB && pre.bytes_frozen! < 32 * MiB, 'pre-copy: the pages went before the freeze');
  t.equal(pre.pages_fetched_after_resume, 0, `pre-copy: no page fetched after the resume (${pre.pages_fetched} during the freeze)`);
  const post = await moveAndCheck(t, id, 'h1', 'post-copy', sums, first);
  t.ok(post.precopy_rounds === 0 && post.bytes_lazy! > 256 * MiB && post.bytes_frozen! < 32 * MiB && post.pages_fetched_after_resume! > 0, 'post-copy: the pages came after the resume');
  // The return trip: h1 -> h2 (both held the job before), h2 -> h1, h1 -> h3.
  for (const to of ['h2', 'h1', 'h3']) {
    const m = await moveAndCheck(t, id, to, 'hybrid', sums, first);
    t.ok(carried(m) < 32 * MiB && m.pages_from_store! > 60_000, `hybrid to ${to}, where it ran before: ${mib(carried(m))} carried, ${m.pages_from_store} pages from its store`);
  }
  await c.pj(['kill', '-s', 'KILL', id]);
  await waitFor(async () => copies(id).length === 0, 10_000);
});

/** busy-memory.py: its own check of every page, on SIGUSR1. */
async function busyCheck(id: string): Promise<string> {
  const before = (await lines(id)).length;
  await c.pj(['kill', '-s', 'USR1', id]);
  await waitFor(async () => (await lines(id)).length > before, 30_000, 200);
  return (await lines(id)).at(-1)!;
}

t.test('a job writing 10 MiB/s while it moves, and one reading every page right after the resume, keep every page', async (t) => {
  const writer = await run(['python3', helper('busy-memory.py'), '128', 'write', '10']);
  const reader = await run(['python3', helper('busy-memory.py'), '128', 'touch']);
  await waitFor(async () => /ready/.test(await logs(writer)) && /ready/.test(await logs(reader)), 60_000, 200);
  for (const to of ['h2', 'h1']) {
    const r = await mv(writer, to, (await jobOf(writer)).host);
    t.equal(r.code, 0, r.stderr);
    const m = JSON.parse(r.stdout) as MoveResult;
    t.ok(m.precopy_rounds! >= 1, `writer to ${to}: ${m.precopy_rounds} pre-copy rounds (${mib(m.bytes_precopy)}), downtime ${m.downtime_ms} ms, ${m.pages_fetched} pages fetched after the resume`);
    t.match(await busyCheck(writer), /^ok \d+ [1-9]\d*$/, 'every page holds the version its table says; it went on writing');
  }
  const r = await mv(reader, 'h3');
  t.equal(r.code, 0, r.stderr);
  const m = JSON.parse(r.stdout) as MoveResult;
  t.match(await busyCheck(reader), /^ok [1-9]\d* 0$/, `the reader checked every page again and again after the move (downtime ${m.downtime_ms} ms, ${m.pages_fetched} pages fetched)`);
  for (const id of [writer, reader]) await c.pj(['kill', '-s', 'KILL', id]);
  await waitFor(async () => copies(writer).length + copies(reader).length === 0, 10_000);
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
    const going = await waitFor(async () => (await committed()) >= at + 20, 20_000).then(() => true, () => false);
    if (!going) { // say why: the job's state and its last error lines
      const j = await jobOf(id);
      const failed = ['h1', 'h2'].map((h) => readFileSync(`${paths(c.dir).hostState(h)}/agent.log`, 'utf8').split('\n').filter((l) => /request failed|"level":50/.test(l)).slice(-4).join('\n'));
      t.fail(`no commit after the move to ${to}: job ${j.state} on ${j.host} (${j.exit ?? ''}); stderr: ${(await c.pj(['logs', id])).stderr.slice(-600)}\nagents: ${failed.join('\n')}`);
      return;
    }
  }
  await c.pj(['kill', id]);
  await c.pj(['wait', id], { timeoutMs: 30_000 });
  const last = await committed();
  const check = await c.exec('h1', ['sqlite3', '/srv/data/moving.sqlite', 'PRAGMA integrity_check; SELECT count(*) FROM t WHERE id <= ' + last + ';']);
  t.equal(check.stdout, `ok\n${last}\n`, `integrity_check ok; all ${last} committed rows are there`);
});

t.test('a job holding a file outside /pj is refused before anything is frozen, and runs on', async (t) => {
  const id = await run(['python3', '-c', "import time; f = open('/srv/pj-outside-' + str(time.time()), 'w'); [print(i, flush=True) or time.sleep(0.05) for i in range(10**9)]"]);
  await waitFor(async () => (await lines(id)).length > 3, 10_000);
  const r = await mv(id, 'h2');
  t.equal(r.code, 1);
  t.match(r.stderr, /PJ_ERR_NOT_MIGRATABLE: .*fd 3 \/srv\/pj-outside-[\d.]+ \(a file outside \/pj\)/, 'the error names the fd and the path');
  const n = (await lines(id)).length;
  await waitFor(async () => (await lines(id)).length > n + 3, 5000);
  t.same([(await jobOf(id)).host, runningCopies(id).length], ['h1', 1], 'still on h1, running');
  t.match((await c.pj(['rm', id])).stderr, /PJ_ERR_JOB_BUSY: job \w+ is still running/, 'pj rm leaves a running job alone');
  const notJob = await c.pj(['mv', 'nosuchjob', 'h2']);
  t.match(notJob.stderr, /PJ_ERR_NO_SUCH_JOB/);
  await c.pj(['kill', '-s', 'KILL', id]);
});

t.test('a deleted file outside /pj, a device outside /pj and a unix socket to outside are each refused by name; the job runs on', async (t) => {
  const listener = c.start('h1', ['python3', '-c', [
    'import os, socket', "s = socket.socket(socket.AF_UNIX); p = '/srv/pj-outside.sock'",
    'os.path.exists(p) and os.unlink(p); s.bind(p); s.listen()', "print('listening', flush=True)", 'c = s.accept()[0]; c.recv(1)'].join('\n')]);
  await listener.printed('listening');
  const id = await run(['python3', '-c', [
    'import os, socket, time', "gone = open('/srv/pj-gone', 'w'); os.unlink('/srv/pj-gone')", "pty = os.open('/dev/ptmx', os.O_RDWR | os.O_NOCTTY)",
    "u = socket.socket(socket.AF_UNIX); u.connect('/srv/pj-outside.sock')", '[print(i, flush=True) or time.sleep(0.05) for i in range(10**9)]'].join('\n')]);
  await waitFor(async () => (await lines(id)).length > 3, 10_000);
  const r = await mv(id, 'h2');
  t.equal(r.code, 1);
  t.match(r.stderr, /PJ_ERR_NOT_MIGRATABLE/);
  t.match(r.stderr, /fd 3 \/srv\/pj-gone \(deleted\) \(an open file that was deleted\)/, 'the deleted file, by fd and path');
  t.match(r.stderr, /fd 4 \/dev\/(ptmx|pts\/ptmx) \(a device not under \/pj\)/, 'the device');
  t.match(r.stderr, /fd 5 socket:\[\d+\] \(a unix socket connected to outside the job\)/, 'the unix socket');
  const n = (await lines(id)).length;
  await waitFor(async () => (await lines(id)).length > n + 3, 10_000);
  t.same([(await jobOf(id)).host, runningCopies(id).length], ['h1', 1], 'still on h1, running, once');
  await c.pj(['kill', '-s', 'KILL', id]);
  await listener.result;
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
t.test("the page stores keep within their bound when a move brings more pages than that", async (t) => {
  // 1 GiB moved h3 -> h1: h1's store takes it in (pinned until the move ends), h3's keeps it, over what both held.
  const id = await run(['python3', join(repoRoot(), 'bench', 'peers', 'memory-hog.py'), '1024'], 'h3');
  await waitFor(async () => /ready/.test(await logs(id)), 60_000, 200);
  const r = await mv(id, 'h1', 'h3');
  t.equal(r.code, 0, r.stderr);
  for (const host of ['h1', 'h3']) {
    const s = (JSON.parse((await c.pj(['cache', '--json', '--host', host])).stdout) as { pageStore: PageStoreStats }).pageStore;
    t.ok(s.bytes <= STORE_BYTES && s.limitBytes === STORE_BYTES && s.evictedSegments > 0,
      `${host}: ${mib(s.bytes)} of ${mib(s.limitBytes)} after the move, ${s.evictedSegments} segments evicted`);
  }
  await c.pj(['kill', '-s', 'KILL', id]);
  await waitFor(async () => copies(id).length === 0, 10_000);
});
