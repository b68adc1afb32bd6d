// Ordinary programs move: `make -j2` of a 60-file C project on /pj, its
// compilers coming and going and writing their temporary files in /tmp, moved
// 20 times in a row in every mode while it builds again and again; every move
// succeeds and the binary is the one a native build makes. And programs that
// keep their state in SysV and POSIX shared memory and /tmp move with it, and
// so does one that forks, mremaps and drops memory while its pages still come.
import t, { type Test } from 'tap';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pjCli, repoRoot } from '../../common/repo-root.js';
import type { JobView } from '../../migrator/index.js';
import type { MoveResult } from '../../migrator/move-types.js';
import { startCluster, waitFor } from '../helpers/cluster.js';
import { runningCopies } from '../helpers/copies.js';

const MOVES = 20;
const MODES = ['hybrid', 'stop-copy', 'pre-copy', 'post-copy'];
// No -pipe: gcc's temporary files are in the job's own /tmp, which moves with it.
const CFLAGS = '-O2';
const project = join(repoRoot(), 'test', 'helpers', 'c-project.sh');
const sha = (file: string) => createHash('sha256').update(readFileSync(file)).digest('hex');

const c = await startCluster(t, { hosts: 3 });

/** Builds test/helpers/NAME.c onto h1's export; its path there, as jobs see it. */
function buildOnH1(t: Test, name: string): string {
  const cc = spawnSync('gcc', ['-O2', '-o', join(c.dir, 'hosts', 'h1', 'srv', 'data', name), join(repoRoot(), 'test', 'helpers', `${name}.c`)], { encoding: 'utf8' });
  t.equal(cc.status, 0, `${name}, built on h1's export ${cc.stderr}`);
  return `/pj/h1/data/${name}`;
}

t.test(`make -j2 moves ${MOVES} times in a row, in every mode`, async (t) => {
  const native = mkdtempSync(join(tmpdir(), 'pj-native-'));
  t.teardown(() => rmSync(native, { recursive: true, force: true }));
  t.equal(spawnSync('sh', [project, native]).status, 0, 'the project, written for a native build');
  t.equal(spawnSync('make', ['-s', '-j2', '-C', native, `CFLAGS=${CFLAGS}`]).status, 0, 'built natively');

  t.equal((await c.exec('h1', ['sh', project, '/pj/h1/data/proj'])).code, 0, 'the project, written on h1\'s export');
  const build = `cd /pj/h1/data/proj; n=0; while [ ! -e stop ]; do make -s clean; make -s -j2 CFLAGS='${CFLAGS}' || exit 1; n=$((n + 1)); done; echo "built $n"`;
  const r = await c.pj(['run', '--on', 'h1', '--policy', 'pin', '--', 'sh', '-c', build]);
  t.equal(r.code, 0, 'the build runs as a job');
  const id = r.stdout.trim();

  const failures: string[] = [];
  for (let i = 0; i < MOVES; i++) {
    const to = ['h2', 'h3', 'h1'][i % 3];
    const mode = MODES[i % MODES.length];
    const m = await c.pj(['mv', id, to, '--mode', mode]);
    if (m.code !== 0) failures.push(`move ${i + 1} (${mode} to ${to}): ${m.stderr.trim()}`);
  }
  t.same(failures, [], `${MOVES} moves in a row, every mode, while make builds`);

  t.equal((await c.exec('h1', ['touch', '/pj/h1/data/proj/stop'])).code, 0, 'the build told to stop after its current round');
  const job = async () => (JSON.parse((await c.pj(['ps', '--json'])).stdout) as JobView[]).find((j) => j.id === id)!;
  await waitFor(async () => (await job()).state === 'exited', 120_000, 500);
  const out = (await c.pj(['logs', id])).stdout;
  t.match(out, /^built [1-9]\d*$/m, `the builds went on through the moves (${out.trim()})`);
  t.equal((await job()).exit, 'exit 0', 'make never failed');
  t.equal(sha(join(c.dir, 'hosts', 'h1', 'srv', 'data', 'proj', 'prog')), sha(join(native, 'prog')), 'the binary is the one a native build makes');
});

t.test('SysV and POSIX shared memory and files in /tmp move with their job, in every mode; each job has its own', async (t) => {
  const bin = buildOnH1(t, 'shared-memory');
  // Two jobs with the same SysV key, /tmp file and /dev/shm name: they would spoil each other's counts if they shared any.
  const ids: string[] = [];
  for (let i = 0; i < 2; i++) {
    const r = await c.pj(['run', '--on', 'h1', '--policy', 'pin', '--', bin]);
    t.equal(r.code, 0, 'started');
    ids.push(r.stdout.trim());
  }
  const counts = async (id: string) => (await c.pj(['logs', id])).stdout.split('\n').filter(Boolean);
  for (const id of ids) await waitFor(async () => (await counts(id)).length > 5, 10_000);
  t.not((await c.exec('h1', ['test', '-e', '/dev/shm/pj-shm'])).code, 0, 'the host\'s /dev/shm does not see the jobs\'');
  t.not((await c.exec('h1', ['test', '-e', '/tmp/pj-count'])).code, 0, 'nor its /tmp');

  const failures: string[] = [];
  for (let i = 0; i < 8; i++) {
    const to = ['h2', 'h3', 'h1'][i % 3];
    const mode = MODES[i % MODES.length];
    for (const id of ids) {
      const before = (await counts(id)).length;
      const m = await c.pj(['mv', id, to, '--mode', mode]);
      if (m.code !== 0) failures.push(`${id} move ${i + 1} (${mode} to ${to}): ${m.stderr.trim()}`);
      await waitFor(async () => (await counts(id)).length > before + 2, 10_000);
    }
  }
  t.same(failures, [], '8 moves of each job, every mode');
  for (const id of ids) {
    const lines = await counts(id);
    const broken = lines.findIndex((l, i) => l !== String(i + 1));
    t.equal(broken, -1, `${id}: ${lines.length} rounds, each found what the one before wrote${broken >= 0 ? `; then: ${lines[broken]}` : ''}`);
    t.equal(runningCopies(id).length, 1, `${id}: one copy runs`);
    await c.pj(['kill', '-s', 'KILL', id]);
  }
});

t.test('eventfd, epoll, signalfd, timerfd, inotify, a memfd and a pipe holding unread bytes move in every mode, each as it was; pj logs -f follows across the moves', async (t) => {
  const bin = buildOnH1(t, 'kernel-objects');
  const r = await c.pj(['run', '--on', 'h1', '--policy', 'pin', '--', bin]);
  t.equal(r.code, 0, r.stderr);
  const id = r.stdout.trim();
  const out = async () => (await c.pj(['logs', id])).stdout;
  await waitFor(async () => (await out()).startsWith('ready\n'), 10_000);
  const follow = c.start('h3', [process.execPath, pjCli(), 'logs', '-f', id], { timeoutMs: 300_000 });
  await follow.printed('ready');
  for (const [i, mode] of MODES.entries()) {
    const to = ['h2', 'h3', 'h1', 'h2'][i];
    const m = await c.pj(['mv', id, to, '--mode', mode]);
    t.equal(m.code, 0, `${mode} to ${to} ${m.stderr}`);
    t.equal((await c.pj(['kill', '-s', 'USR1', id])).code, 0);
    const check = `check ${i + 1} `;
    await waitFor(async () => (await out()).includes(check), 10_000);
    const line = (await out()).split('\n').find((l) => l.startsWith(check));
    t.equal(line, `${check}eventfd=7 pipe=unread-bytes memfd=memfd-contents inotify=f${i + 1} ticks=yes`, `after ${mode} to ${to}, each object as it was`);
  }
  t.equal(runningCopies(id).length, 1, 'one copy runs');
  await c.pj(['kill', '-s', 'KILL', id]);
  const followed = await follow.result;
  t.equal(followed.code, 0, `pj logs -f ended with the job ${followed.stderr}`);
  t.equal(followed.stdout, await out(), 'pj logs -f on h3 printed the whole output once, across four moves');
});

t.test('a program that forks, mremaps and drops memory while its pages come moves in every mode, every page right', async (t) => {
  const r = await c.pj(['run', '--on', 'h1', '--policy', 'pin', '--', buildOnH1(t, 'memory-reshaper'), '128']);
  t.equal(r.code, 0, 'started');
  const id = r.stdout.trim();
  const rounds = async () => (await c.pj(['logs', id])).stdout.split('\n').filter((l) => l.startsWith('round')).length;
  await waitFor(async () => (await rounds()) > 0, 30_000);

  const failures: string[] = [];
  const changes = { forks: 0, remaps: 0, drops: 0 };
  for (let i = 0; i < 8; i++) {
    const to = ['h2', 'h3', 'h1'][i % 3];
    const mode = MODES[i % MODES.length];
    const before = await rounds();
    const m = await c.pj(['mv', id, to, '--mode', mode, '--json']);
    if (m.code !== 0) failures.push(`move ${i + 1} (${mode} to ${to}): ${m.stderr.trim()}`);
    else for (const [k, n] of Object.entries((JSON.parse(m.stdout) as MoveResult).memory_changes ?? {})) changes[k as keyof typeof changes] += n;
    await waitFor(async () => (await rounds()) > before, 60_000);
  }
  t.same(failures, [], '8 moves, every mode');
  t.ok(changes.forks > 0 && changes.remaps > 0 && changes.drops > 0, `the pager followed forks, mremaps and drops while pages came (${JSON.stringify(changes)})`);
  const out = (await c.pj(['logs', id])).stdout;
  t.notMatch(out, /BAD/, 'every page the children, the moved chunks and the dropped pages read was right');
  t.equal(runningCopies(id).length, 1, 'one copy runs');
  await c.pj(['kill', '-s', 'KILL', id]);
});

t.test('PostgreSQL, running as its own user with its data on h1\'s export, moves in every mode while pgbench runs from another host: no transaction lost, also after a SIGKILL and a restart on a third host', async (t) => {
  const pgbin = join('/usr/lib/postgresql', readdirSync('/usr/lib/postgresql').sort((a, b) => Number(b) - Number(a))[0], 'bin');
  const data = '/pj/h1/data/pg';
  t.equal((await c.exec('h1', ['install', '-d', '-o', 'postgres', '-g', 'postgres', '-m', '700', '/srv/data/pg'])).code, 0);
  const postgres = (on: string, port: number, first: string) => c.pj(['run', '--on', on, '--policy', 'pin', '--publish', `${port}:5432`, '--cwd', '/', '--', 'setpriv', '--reuid', 'postgres', '--regid', 'postgres', '--init-groups',
    'sh', '-c', `${first}exec ${pgbin}/postgres -D ${data} -c listen_addresses=127.0.0.1 -k /tmp`]);
  const ready = (id: string) => waitFor(async () => { const l = await c.pj(['logs', id]); return /ready to accept connections/.test(l.stderr + l.stdout); }, 60_000);
  const r = await postgres('h1', 15432, `${pgbin}/initdb -D ${data} -A trust > /tmp/initdb.log 2>&1 || { cat /tmp/initdb.log; exit 1; }; `);
  t.equal(r.code, 0, `started ${r.stderr}`);
  const id = r.stdout.trim();
  await ready(id);
  const [h1, , h3] = c.file().hosts.map((h) => h.address);
  const db = (address: string, port: number) => ['-h', address, '-p', String(port), '-U', 'postgres', 'postgres'];
  t.equal((await c.exec('h2', [`${pgbin}/pgbench`, '-i', '-s', '1', '-q', ...db(h1, 15432)])).code, 0, 'pgbench -i from h2, through h1\'s published port');
  const bench = c.start('h2', [`${pgbin}/pgbench`, '-c', '2', '-T', '40', ...db(h1, 15432)], { timeoutMs: 120_000 });

  const failures: string[] = [];
  for (const [i, mode] of MODES.entries()) {
    const to = ['h2', 'h3', 'h1', 'h2'][i];
    const m = await c.pj(['mv', id, to, '--mode', mode]);
    if (m.code !== 0) failures.push(`${mode} to ${to}: ${m.stderr.trim()}`);
  }
  t.same(failures, [], 'moved in every mode while pgbench ran');
  const done = await bench.result;
  t.equal(done.code, 0, `pgbench ended well: ${done.stderr.trim().split('\n').slice(-3).join(' ')}`);
  const processed = Number(/number of transactions actually processed: (\d+)/.exec(done.stdout)?.[1]);
  t.match(done.stdout, /number of failed transactions: 0 /, 'no transaction failed');
  const count = async (address: string, port: number) => Number((await c.exec('h2', [`${pgbin}/psql`, '-At', '-c', 'SELECT count(*) FROM pgbench_history', ...db(address, port)])).stdout.trim());
  t.equal(await count(h1, 15432), processed, `every one of the ${processed} transactions pgbench saw committed is in the database`);
  t.equal(runningCopies(id).length, 1, 'one copy runs');
  t.equal((await c.exec('h1', ['stat', '-c', '%U %a', '/srv/data/pg/PG_VERSION'])).stdout, 'postgres 600\n', 'on h1\'s disk its files are postgres\'s');

  // What reached the disk is what a crash leaves: killed, then recovered from the same folder elsewhere.
  await c.pj(['kill', '-s', 'KILL', id]);
  await c.pj(['wait', id], { timeoutMs: 30_000 });
  const again = await postgres('h3', 15433, '');
  t.equal(again.code, 0, `started again on h3 ${again.stderr}`);
  await ready(again.stdout.trim());
  t.equal(await count(h3, 15433), processed, 'after the SIGKILL, recovery on h3 finds every committed transaction');
  await c.pj(['kill', '-s', 'KILL', again.stdout.trim()]);
});
