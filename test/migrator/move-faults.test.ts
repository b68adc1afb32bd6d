// Faults during moves, on a real 3-host cluster with real CRIU: a source that dies while post-copy
// pages still come (another host holds them, or none does), a manager killed at each step of a move
// (pre-copy, dump, restore, between restore and commit, after the commit), damaged images, a link
// cut, a record changed under the commit. Each must leave exactly one copy, counting on.
import t, { type Test } from 'tap';
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { helperProgram, repoRoot } from '../../common/repo-root.js';
import { migrationDir, type LedgerRow } from '../../migrator/index.js';
import type { PageStoreStats } from '../../mem-layer/index.js';
import { paths } from '../../manager/sim-cluster/layout.js';
import { copies, runningCopies } from '../helpers/copies.js';
import { startCluster, waitFor } from '../helpers/cluster.js';
import { pinnedJobs } from '../helpers/pinned-jobs.js';

const c = await startCluster(t, { hosts: 3 });
const helper = helperProgram;
const { run, jobOf, logs, lines, mv, startMemoryJob, memorySums } = pinnedJobs(c);
const MiB = 2 ** 20;
const mib = (n = 0) => `${(n / MiB).toFixed(1)} MiB`;

t.test('post-copy: the source dies before every page arrived, another host holds them: the job finishes its transfer from there', async (t) => {
  const id = await startMemoryJob(1024);
  const first = await memorySums(id);
  t.equal((await mv(id, 'h2')).code, 0, 'moved h1 -> h2: h1 keeps its pages');
  const moving = c.pj(['mv', id, 'h3', '--mode', 'post-copy', '--json', '--host', 'h2'], { timeoutMs: 120_000 });
  const fetched = async (from: string) => (JSON.parse((await c.pj(['ledger', '--json', '--host', 'h3'])).stdout) as LedgerRow[]).filter((r) => r.layer === 'mem' && r.target === from).reduce((n, r) => n + r.bytes, 0);
  // Committed, and 64 MiB come from h2: h3 has the manifest (the pages' hashes) and the pages only h2 holds, which come
  // first (a page the job changed since it left h1, or one the manifest has no hash for, is lost with h2); 2 GiB take seconds.
  let failed = '';
  void moving.then((r) => { if (r.code !== 0) failed = r.stderr; });
  await waitFor(async () => Boolean(failed) || ((await jobOf(id)).host === 'h3' && (await fetched('h2')) >= 64 * MiB), 60_000, 20);
  t.equal(failed, '', 'the move goes on');
  t.equal((await c.pj(['cluster', 'stop', 'h2', '--signal', 'KILL'])).code, 0, "h2's manager dies while pages are still coming");
  let restarted = false;
  t.teardown(async () => { if (!restarted) await c.pj(['cluster', 'start', 'h2']); }); // whatever happens below
  await moving;
  await waitFor(async () => (await fetched('h1')) > 0, 30_000, 200);
  t.same(await memorySums(id), first, `the job on h3 has every page: ${mib(await fetched('h1'))} came from h1's store (pj ledger)`);
  t.same([(await jobOf(id, 'h3')).state, (await jobOf(id, 'h3')).host], ['running', 'h3']);
  restarted = true;
  t.equal((await c.pj(['cluster', 'start', 'h2'])).code, 0);
  await waitFor(async () => copies(id).length === 1, 15_000, 200);
  await c.pj(['kill', '-s', 'KILL', id]);
  await waitFor(async () => copies(id).length === 0, 10_000);
});

t.test('post-copy: the source dies before every page arrived and no other host holds them: the job ends, PJ_ERR_PAGES_LOST', async (t) => {
  const id = await run(['python3', join(repoRoot(), 'bench', 'peers', 'memory-hog.py'), '1024']);
  await waitFor(async () => /ready/.test(await logs(id)), 60_000, 200);
  const moving = c.pj(['mv', id, 'h2', '--mode', 'post-copy', '--json', '--host', 'h1'], { timeoutMs: 120_000 });
  await waitFor(async () => (await jobOf(id)).host === 'h2', 60_000, 20); // committed; 1 GiB takes seconds to follow
  t.equal((await c.pj(['cluster', 'stop', 'h1', '--signal', 'KILL'])).code, 0, "h1's manager dies while pages are still coming");
  let restarted = false;
  t.teardown(async () => { if (!restarted) await c.pj(['cluster', 'start', 'h1']); }); // whatever happens below
  await moving;
  // Its output lives on h1: its last writes wait out the grace an owner's restart gets (15 s).
  await waitFor(async () => (await jobOf(id, 'h2')).state === 'exited', 60_000, 200);
  t.equal((await jobOf(id, 'h2')).exit, 'PJ_ERR_PAGES_LOST', 'pj ps says why it ended: it did not hang');
  t.match(readFileSync(`${paths(c.dir).hostState('h2')}/agent.log`, 'utf8'), /"code":"PJ_ERR_PAGES_LOST"/);
  restarted = true;
  t.equal((await c.pj(['cluster', 'start', 'h1'])).code, 0);
  await waitFor(async () => copies(id).length === 0, 15_000, 200);
  t.pass("h1's manager, back, ended the copy CRIU still held: none is left");
});

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

/** The bytes of a host's page store on disk. */
/** Bytes a host's page store took in since its manager started (its size stays at its bound once full: it evicts). */
const storeAdded = async (host: string) => (JSON.parse((await c.pj(['cache', '--json', '--host', host])).stdout) as { pageStore: PageStoreStats }).pageStore.addedBytes;

t.test("faults: the destination's manager killed during the pre-copy", async (t) => {
  const id = await startMemoryJob(192);
  const counter = await run(['python3', helper('counter-job.py')]);
  const before = await storeAdded('h2');
  const moving = mv(id, 'h2');
  await waitFor(async () => (await storeAdded('h2')) > before + 16 * MiB, 60_000, 10);
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
  t.match(r.stderr, /PJ_ERR_MIGRATION_ABORTED: .*(criu restore failed|is not a CRIU pagemap image)/, r.stderr);
  await survives(t, 'h1', id);
  await restartWith(t, 'h3');
});

t.test("faults: a restore that does not end is killed at its deadline; the job resumes on the source, no copy stays", async (t) => {
  await restartWith(t, 'h3', 'restore-hangs');
  const id = await run(['python3', helper('counter-job.py')]);
  await waitFor(async () => (await lines(id)).length > 5, 10_000);
  const r = await mv(id, 'h3');
  t.match(r.stderr, /PJ_ERR_MIGRATION_ABORTED: job \w+ stays on h1: .*criu restore failed: did not end within 3 s and was killed/, r.stderr);
  t.equal(spawnSync('pgrep', ['-fx', 'sleep 3600']).status, 1, "the restore's hook went with it");
  await survives(t, 'h1', id);
  await restartWith(t, 'h3');
});

t.test('faults: the link to the destination cut while stop-copy images stream', async (t) => {
  const id = await startMemoryJob(192);
  const incoming = join(migrationDir('h3', paths(c.dir).hostState('h3')), 'incoming');
  const moving = c.pj(['mv', id, 'h3', '--mode', 'stop-copy', '--json'], { timeoutMs: 300_000 });
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

t.test("faults: the source's manager killed after the destination restored, before the commit", async (t) => {
  await restartWith(t, 'h1', 'source-before-commit');
  const id = await run(['python3', helper('counter-job.py')]);
  await waitFor(async () => (await lines(id)).length > 5, 10_000);
  const r = await mv(id, 'h2', 'h3');
  t.not(r.code, 0, `pj mv (asked through h3) does not report a move that never committed: ${r.stderr.trim()}`);
  await restartWith(t, 'h1');
  await survives(t, 'h1', id);
});

t.test('faults: the job record changes between the restore and the commit: the commit loses, the restored copy goes', async (t) => {
  await restartWith(t, 'h1', 'record-changed-before-commit');
  const id = await run(['python3', helper('counter-job.py')]);
  await waitFor(async () => (await lines(id)).length > 5, 10_000);
  const r = await mv(id, 'h2');
  t.match(r.stderr, /PJ_ERR_MIGRATION_ABORTED: .*the job table changed during the move/, r.stderr.trim());
  await survives(t, 'h1', id);
  await restartWith(t, 'h1');
});
