// Agents never hang or die on what ordinary programs and ordinary faults do:
// a job that forks and execs with its output on /pj while it moves, a slow
// disk under one file, a directory of 120,000 files, a read larger than a
// frame, etcd away for a while, a refused move (logged), a stopped job.
import t from 'tap';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { helperProgram, repoRoot } from '../../common/repo-root.js';
import type { JobView } from '../../migrator/index.js';
import type { PageStoreStats } from '../../mem-layer/index.js';
import { paths } from '../../manager/sim-cluster/layout.js';
import { startCluster, waitFor } from '../helpers/cluster.js';

const STORE_MIB = 64;
const c = await startCluster(t, { hosts: 3, hostOptions: [`h2:--page-store-size=${STORE_MIB}M`] });
const helper = helperProgram;
const sh = (host: string, script: string, timeoutMs = 60_000) => c.exec(host, ['sh', '-c', script], { timeoutMs });
const ps = async (): Promise<JobView[]> => JSON.parse((await c.pj(['ps', '--json'])).stdout) as JobView[];
const jobOf = async (id: string) => (await ps()).find((j) => j.id === id)!;
const logs = async (id: string) => (await c.pj(['logs', id])).stdout;
const agentLog = (h: string) => readFileSync(join(paths(c.dir).hostState(h), 'agent.log'), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);
const agentPids = () => c.file().hosts.map((h) => h.agentPid);
async function run(args: string[]): Promise<string> {
  const r = await c.pj(['run', ...args]);
  if (r.code !== 0) throw new Error(`pj run failed: ${r.stderr}`);
  return r.stdout.trim();
}

/**
 * Stats /pj (its own export and another host's) on every host five times a second until stopped; the
 * longest answer per host. A stat that never returns shows as a probe that never ends.
 */
function probeAll(hosts: string[]): { stop(): Promise<Record<string, number | 'hung'>> } {
  const stopFile = join(c.dir, 'probe-stop');
  const probes = hosts.map((h, i) => {
    const other = hosts[(i + 1) % hosts.length];
    const script = `
import os, time
worst = 0
while not os.path.exists(${JSON.stringify(stopFile)}):
    t0 = time.monotonic()
    os.stat('/pj/${h}/data'); os.stat('/pj/${other}/data'); os.listdir('/pj/${other}/data')
    worst = max(worst, time.monotonic() - t0)
    time.sleep(0.2)
print('worst', round(worst * 1000))`;
    return c.start(h, ['python3', '-c', script], { timeoutMs: 30 * 60_000 });
  });
  return {
    async stop() {
      writeFileSync(stopFile, '');
      const out: Record<string, number | 'hung'> = {};
      await Promise.all(probes.map(async (p, i) => {
        const r = await Promise.race([p.result, new Promise<undefined>((r) => setTimeout(() => r(undefined), 20_000))]);
        const m = r && /worst (\d+)/.exec(r.stdout);
        out[hosts[i]] = m ? Number(m[1]) : 'hung';
      }));
      rmSync(stopFile, { force: true });
      return out;
    },
  };
}

t.test('a job forking and exec-ing 1,000 times with its output on /pj, moved by hand and by the policy, never stalls /pj', async (t) => {
  await sh('h2', 'echo x > /srv/data/closed-on-exec');
  const probe = probeAll(['h1', 'h2', 'h3']);
  const pids = agentPids();
  // Both with the default policy (follow): the managers may move them as well.
  const forker = await run(['--on', 'h1', '--', 'python3', helper('fork-exec-job.py'), '1000', '/pj/h2/data/closed-on-exec']);
  // The gzip loop runs until the test has moved something in every mode and the forker is done.
  const gzips = await run(['--on', 'h1', '--', 'sh', '-c',
    'while [ ! -e /pj/h2/data/stop-gzips ]; do head -c 10M /dev/zero | gzip -1 >/dev/null & head -c 10M /dev/zero | gzip -1 >/dev/null; wait; done; echo done']);
  const modes = ['hybrid', 'stop-copy', 'pre-copy', 'post-copy'];
  let moves = 0;
  let tries = 0;
  const failures = new Set<string>();
  const ended = async (id: string) => (await jobOf(id)).state === 'exited';
  while (!((await ended(forker)) && (await ended(gzips)))) {
    if (moves >= modes.length && (await ended(forker))) await sh('h2', 'touch /srv/data/stop-gzips');
    for (const id of [forker, gzips]) {
      const j = await jobOf(id);
      if (j.state !== 'running') continue;
      const to = ['h1', 'h2', 'h3'].filter((h) => h !== j.host)[tries % 2];
      const r = await c.pj(['mv', id, to, '--mode', modes[tries++ % modes.length], '--json'], { timeoutMs: 120_000 });
      if (r.code === 0) moves++;
      else failures.add((/PJ_ERR_\w+/.exec(r.stderr) ?? [r.stderr.trim()])[0]);
    }
  }
  const worst = await probe.stop();
  for (const [h, ms] of Object.entries(worst)) t.ok(ms !== 'hung' && ms < 5000, `/pj on ${h} answered throughout (slowest stat+list: ${ms} ms)`);
  t.ok(moves > 0, `${moves} of ${tries} moves made (refusals: ${[...failures].join(', ') || 'none'})`);
  for (const f of failures) t.ok(['PJ_ERR_JOB_BUSY', 'PJ_ERR_NO_SUCH_JOB', 'PJ_ERR_USAGE'].includes(f), `a move refused only because the job was busy or had ended (${f})`);
  const out = await logs(forker);
  const rounds = out.split('\n').filter((l) => l.startsWith('round '));
  t.equal(new Set(rounds).size, 1000, 'every round printed once');
  t.equal(rounds.length, 1000, 'no round printed twice');
  t.match(out, /done 1000/);
  t.same([(await jobOf(forker)).exit, (await jobOf(gzips)).exit], ['exit 0', 'exit 0'], 'both jobs ended well');
  t.match(await logs(gzips), /done/);
  t.same(agentPids(), pids, 'no agent died');
});

t.test('an fsync that waits on a slow disk stalls no other request of its owner', async (t) => {
  const release = join(c.dir, 'release-fsync');
  await sh('h2', 'mkdir -p /srv/data/slowdisk && head -c 64M /dev/urandom > /srv/data/big && md5sum < /srv/data/big | cut -c1-32 > /srv/big.md5');
  const disk = c.start('h2', [process.execPath, join(repoRoot(), 'dist', 'test', 'helpers', 'slow-fuse.js'), '/srv/data/slowdisk', release], { timeoutMs: 300_000 });
  t.teardown(async () => {
    writeFileSync(release, '');
    await sh('h2', 'umount -l /srv/data/slowdisk');
    await disk.result;
  });
  await disk.printed('mounted');
  const writer = c.start('h1', ['python3', '-c', `
import os
fd = os.open('/pj/h2/data/slowdisk/file', os.O_WRONLY)
os.write(fd, b'x' * 4096)
print('written', flush=True)
os.fsync(fd)
print('synced', flush=True)`], { timeoutMs: 300_000 });
  await disk.printed('fsync held');
  const read = await sh('h1', 'md5sum < /pj/h2/data/big | cut -c1-32; ls /pj/h2/data | wc -l', 60_000);
  const expected = readFileSync(join(c.dir, 'hosts', 'h2', 'srv', 'big.md5'), 'utf8');
  t.equal(read.stdout.split('\n')[0] + '\n', expected, `another client read 64 MiB of the owner's while the fsync waited (${read.ms} ms)`);
  t.notMatch((await Promise.race([writer.result, Promise.resolve(undefined)]))?.stdout ?? '', /synced/, 'the fsync was still waiting then');
  writeFileSync(release, '');
  t.match((await writer.result).stdout, /synced/, 'the fsync returned once the disk answered');
});

t.test('a directory of 120,000 files lists from another host; a read larger than a frame is an error, not a dead owner', async (t) => {
  const made = await sh('h2', `python3 -c "
import os
os.makedirs('/srv/data/huge')
for i in range(120000): open(f'/srv/data/huge/file-with-a-longish-name-{i:06d}', 'w').close()"`, 300_000);
  t.equal(made.code, 0);
  const pid = agentPids()[1];
  const ls = await sh('h1', 'ls /pj/h2/data/huge | wc -l', 300_000);
  t.equal(ls.stdout.trim(), '120000', `ls on h1 lists all 120,000 (${ls.ms} ms)`);
  // Not ls -l: 120,000 lookups one round trip each took two minutes of the suite, and say nothing more about the listing.
  t.equal((await sh('h1', 'stat -c %s /pj/h2/data/huge/file-with-a-longish-name-119999')).stdout, '0\n', 'its last name is found in it');
  await sh('h2', 'head -c 20M /dev/urandom > /srv/data/twenty');
  const h2 = c.file().hosts.find((h) => h.name === 'h2')!;
  const r = await c.helper('h1', 'big-read', [`${h2.address}:7070`, 'h2', paths(c.dir).secret, 'data', 'twenty', String(20 << 20)]);
  const got = JSON.parse(r.stdout) as { read: { ok?: number; error?: string }; after: { ok?: string } };
  t.ok(got.read.ok !== undefined && got.read.ok > 0 && got.read.ok < 16 << 20, `a 20 MiB read is answered short (${JSON.stringify(got.read)}), as read(2) may`);
  t.same(got.after, { ok: 'served' }, 'the owner serves on');
  t.equal(agentPids()[1], pid, 'h2\'s agent is the same process');
  t.ok(existsSync(`/proc/${pid}`), 'and it is alive');
});

t.test('etcd away for 10 s: jobs run on, /pj serves, commands say PJ_ERR_ETCD_UNAVAILABLE; after, everything goes on', async (t) => {
  const id = await run(['--on', 'h1', '--policy', 'pin', '--', 'python3', helper('counter-job.py')]);
  await sh('h2', 'echo before > /srv/data/during-outage');
  await waitFor(async () => (await logs(id)).split('\n').length > 5, 10_000);
  const pids = agentPids();
  const etcd = c.file().etcd.pid!;
  process.kill(etcd, 'SIGSTOP');
  let resumed = false;
  t.teardown(() => { if (!resumed) process.kill(etcd, 'SIGCONT'); });
  const psDown = await c.pj(['ps']);
  t.match(psDown.stderr, /PJ_ERR_ETCD_UNAVAILABLE/, `pj ps: ${psDown.stderr.trim()} (${psDown.ms} ms)`);
  const mvDown = await c.pj(['mv', id, 'h2']);
  t.match(mvDown.stderr, /PJ_ERR_ETCD_UNAVAILABLE/, 'pj mv starts no move');
  t.equal((await sh('h1', 'cat /pj/h2/data/during-outage')).stdout, 'before\n', 'h1 reads h2\'s file through /pj');
  t.equal((await sh('h3', 'echo during > /pj/h2/data/during-outage; cat /pj/h2/data/during-outage')).stdout, 'during\n', 'h3 writes it');
  t.equal((await sh('h1', `ls /pj/h1/.pj-jobs/${id}`)).code, 0, 'the job\'s output folder is there');
  const before = (await sh('h1', `wc -l < /pj/h1/.pj-jobs/${id}/stdout`)).stdout.trim();
  await new Promise((r) => setTimeout(r, 10_000 - psDown.ms)); // the outage itself: what is asserted is what happens in it
  const during = (await sh('h1', `wc -l < /pj/h1/.pj-jobs/${id}/stdout`)).stdout.trim();
  t.ok(Number(during) > Number(before), `the job wrote on (${before} -> ${during} lines)`);
  process.kill(etcd, 'SIGCONT');
  resumed = true;
  await waitFor(async () => {
    const hosts = JSON.parse((await c.pj(['hosts', '--json'])).stdout || '[]') as Array<{ state: string }>;
    return hosts.length === 3 && hosts.every((h) => h.state === 'up');
  }, 30_000, 200);
  t.pass('every host is up again without a restart');
  t.same(agentPids(), pids, 'no agent died');
  const mv = await c.pj(['mv', id, 'h2', '--json'], { timeoutMs: 120_000 });
  t.equal(mv.code, 0, `a move works again ${mv.stderr}`);
  await c.pj(['kill', id, '-s', 'KILL']);
  await waitFor(async () => (await jobOf(id)).state === 'exited', 10_000);
  const rows = (await logs(id)).split('\n').filter(Boolean).map((l) => Number(l.split(' ')[0]));
  const broken = rows.findIndex((n, i) => i > 0 && n !== rows[i - 1] + 1);
  t.equal(broken, -1, `${rows.length} lines, none lost, repeated or out of order through the outage and the move after it${broken > 0 ? `: ${rows[broken - 1]} then ${rows[broken]}` : ''}`);
});

t.test('a refused move is one line in the owner\'s log, with why', async (t) => {
  const id = await run(['--on', 'h3', '--policy', 'pin', '--', 'python3', '-c', 'import time; f = open("/srv/pj-outside", "w"); print("ready", flush=True); time.sleep(600)']);
  await waitFor(async () => (await logs(id)).includes('ready'), 10_000);
  const r = await c.pj(['mv', id, 'h1']);
  t.match(r.stderr, /PJ_ERR_NOT_MIGRATABLE/);
  const line = agentLog('h3').find((l) => l.op === 'job-move' && l.job === id);
  t.ok(line, 'h3 logged the move');
  t.match(line, { level: 40, outcome: 'not-migratable', code: 'PJ_ERR_NOT_MIGRATABLE', to: 'h1', msg: 'move failed' });
  t.match(String(line?.err), /a file outside \/pj/);
  await c.pj(['kill', id, '-s', 'KILL']);
});

t.test('pj kill -s STOP stops a job until CONT: reconciliation and a move leave it stopped', async (t) => {
  const id = await run(['--on', 'h1', '--policy', 'pin', '--', 'python3', helper('counter-job.py')]);
  const count = async () => (await logs(id)).split('\n').filter(Boolean).length;
  await waitFor(async () => (await count()) > 5, 10_000);
  t.equal((await c.pj(['kill', id, '-s', 'STOP'])).code, 0);
  t.equal((await jobOf(id)).stopped, true, 'pj ps says it is stopped');
  const stoppedAt = await count();
  // Nothing is to happen: three rounds of reconciliation (one a second) get their chance to undo it.
  await new Promise((r) => setTimeout(r, 3000));
  t.equal(await count(), stoppedAt, 'no line in 3 s: reconciliation left it stopped');
  t.equal((await c.pj(['mv', id, 'h2', '--json'], { timeoutMs: 120_000 })).code, 0, 'it moves while stopped');
  await new Promise((r) => setTimeout(r, 2000));
  t.equal(await count(), stoppedAt, 'still no line after the move');
  t.equal((await c.pj(['kill', id, '-s', 'CONT'])).code, 0);
  await waitFor(async () => (await count()) > stoppedAt + 10, 10_000);
  t.notOk((await jobOf(id)).stopped, 'it counts again, and pj ps says it runs');
  await c.pj(['kill', id, '-s', 'KILL']);
});

t.test('a page store is a bound: a 256 MiB hybrid move into a 64 MiB store stays within it, and the job moves whole', async (t) => {
  const id = await run(['--on', 'h1', '--policy', 'pin', '--', 'python3', helper('memory-job.py'), '256']);
  const lines = async () => (await logs(id)).split('\n').filter(Boolean);
  await waitFor(async () => (await lines()).some((l) => l.startsWith('main ready')) && (await lines()).some((l) => l.startsWith('child ready')), 60_000, 200);
  const sums = async () => {
    const before = (await lines()).length;
    await c.pj(['kill', '-s', 'USR1', id]);
    await waitFor(async () => (await lines()).slice(before).filter((l) => /^(main|child) /.test(l)).length === 2, 30_000, 200);
    return Object.fromEntries((await lines()).slice(before).filter((l) => /^(main|child) /.test(l)).map((l) => l.split(' ')));
  };
  const before = await sums();
  const mv = await c.pj(['mv', id, 'h2', '--mode', 'hybrid', '--json'], { timeoutMs: 300_000 });
  t.equal(mv.code, 0, `the move succeeds: ${mv.stderr}${mv.stdout}`);
  const store = (JSON.parse((await c.pj(['cache', '--json', '--host', 'h2'])).stdout) as { pageStore: PageStoreStats }).pageStore;
  t.ok(store.bytes <= STORE_MIB * 2 ** 20, `h2's page store holds ${(store.bytes / 2 ** 20).toFixed(1)} MiB, bound ${STORE_MIB} MiB`);
  t.same(await sums(), before, 'the job\'s memory arrived whole');
  const back = await c.pj(['mv', id, 'h1', '--json'], { timeoutMs: 300_000 });
  t.equal(back.code, 0, 'and moves on');
  await c.pj(['kill', '-s', 'KILL', id]);
});

t.test('a full jobs folder: the job\'s lost output is shown in pj ps and the log, and no job starts there until there is room', async (t) => {
  const jobs = join(paths(c.dir).hostState('h3'), 'jobs');
  t.equal((await c.pj(['cluster', 'stop', 'h3'])).code, 0);
  t.equal((await sh('h3', `mount -t tmpfs -o size=4m pj-small ${jobs}`)).code, 0, 'h3\'s jobs folder is a 4 MiB disk');
  t.teardown(async () => {
    await c.pj(['cluster', 'stop', 'h3']);
    await sh('h3', `umount -l ${jobs}`);
    await c.pj(['cluster', 'start', 'h3']);
  });
  t.equal((await c.pj(['cluster', 'start', 'h3'])).code, 0);
  const id = await run(['--on', 'h3', '--policy', 'pin', '--', 'sh', '-c', 'head -c 8M /dev/zero; echo wrote; sleep 600']);
  await waitFor(async () => Boolean((await jobOf(id)).outputError), 15_000, 200);
  t.match((await c.pj(['ps'])).stdout, /output lost: folder full/, 'pj ps says the job\'s output is being lost');
  t.ok(agentLog('h3').some((l) => l.op === 'job-output' && l.job === id && l.level === 50), 'h3 logged it');
  const refused = await c.pj(['run', '--on', 'h3', '--', 'true']);
  t.match(refused.stderr, /PJ_ERR_JOB_START: no room for a job's output on h3/, 'no job starts there meanwhile');
  await c.pj(['kill', '-s', 'KILL', id]);
  await waitFor(async () => (await jobOf(id)).state === 'exited', 15_000, 200);
  t.match((await jobOf(id)).exit, /signal 9|its status could not be written/, `it ended, saying how: ${(await jobOf(id)).exit}`);
});

t.test('a /pj whose connection is aborted, or that someone unmounts, is found and mounted again by its agent', async (t) => {
  const status = async () => JSON.parse((await c.pj(['status', '--json', '--host', 'h2'])).stdout) as { mount: { state: string; remounts: number } };
  const remounts = (await status()).mount.remounts;
  const minor = Number((await sh('h2', 'stat -c %d /pj')).stdout) & 0xff; // a FUSE connection's number is its device's minor
  await sh('h2', `mountpoint -q /sys/fs/fuse/connections || mount -t fusectl none /sys/fs/fuse/connections; echo 1 > /sys/fs/fuse/connections/${minor}/abort`);
  await waitFor(async () => (await sh('h2', 'cat /pj/h1/data/closed-on-exec 2>/dev/null || ls /pj/h1/data >/dev/null')).code === 0 && (await status()).mount.remounts > remounts, 30_000, 200);
  t.pass('after an abort, /pj on h2 answers again');
  t.ok(agentLog('h2').some((l) => l.op === 'fuse-health' && l.level === 50), 'the agent logged that /pj stopped answering');
  await sh('h2', 'umount -l /pj');
  await waitFor(async () => (await status()).mount.remounts > remounts + 1, 30_000, 200);
  await waitFor(async () => (await sh('h2', 'ls /pj')).stdout === 'h1\nh2\nh3\n', 10_000, 200);
  t.pass('after an unmount too');
  const doctor = JSON.parse((await c.pj(['doctor', '--json', '--host', 'h2'])).stdout) as Array<{ name: string; status: string }>;
  t.equal(doctor.find((d) => d.name === 'pj-mount')?.status, 'ok', 'pj doctor says /pj is well again');
  t.equal((await status()).mount.state, 'ok');
});
