// A move never loses a job: the destination's manager, or the whole
// destination host (manager and job), or both the source's and the
// destination's managers die during the lazy phase of a 1 GiB move, at the
// commit (hybrid) or once pages are coming (post-copy). Afterwards exactly one copy runs and its
// memory is intact: the destination's, whose pager the restarted manager
// adopted from its keeper, when only managers died; the source's frozen copy,
// taken back, when the destination host died.
import t, { type Test } from 'tap';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { paths } from '../../manager/sim-cluster/layout.js';
import { helperProgram } from '../../common/repo-root.js';
import { deviceAt } from '../../migrator/job-mounts.js';
import type { JobView } from '../../migrator/index.js';
import type { LedgerRow } from '../../migrator/ledger.js';
import { memorySums as sumsOf } from '../helpers/memory-sums.js';
import { copies, runningCopies } from '../helpers/copies.js';
import { startCluster, waitFor } from '../helpers/cluster.js';

const MIB = 1 << 20;
const c = await startCluster(t, { hosts: 3 });
const lines = async (id: string) => (await c.pj(['logs', id])).stdout.split('\n').filter(Boolean);
const jobOf = async (id: string) => (JSON.parse((await c.pj(['ps', '--json'])).stdout) as JobView[]).find((j) => j.id === id)!;

/** The md5s of a memory-job.py's memory (main and child). */
const memorySums = (id: string) => sumsOf(c, id, 60_000);

/** Bytes of memory h3 fetched from h1 (h3's ledger, mem layer). */
const fetchedFromH1 = async () => (JSON.parse((await c.pj(['ledger', '--json', '--host', 'h3'])).stdout) as LedgerRow[])
  .filter((r) => r.layer === 'mem' && r.target === 'h1').reduce((n, r) => n + r.bytes, 0);
/** The copies of a job that run on h3: whose /pj is h3's. */
async function onH3(id: string): Promise<Array<{ pid: number }>> {
  // From h3's mount table: with its manager dead, a stat of its /pj waits for the next one.
  const h3 = (await c.exec('h3', ['awk', '$5 == "/pj" { print $3 }', '/proc/self/mountinfo'])).stdout.trim().split('\n').at(-1);
  return copies(id).filter((x) => deviceAt(x.pid, '/pj') === h3);
}

async function crash(t: Test, what: 'manager' | 'host' | 'both managers', when: 'at the commit' | 'once pages come'): Promise<void> {
  const r = await c.pj(['run', '--on', 'h1', '--policy', 'pin', '--', 'python3', helperProgram('memory-job.py'), '1024']);
  const id = r.stdout.trim();
  await waitFor(async () => /main ready/.test((await lines(id)).join('\n')) && /child ready/.test((await lines(id)).join('\n')), 120_000, 200);
  const first = await memorySums(id);
  const fetchedBefore = await fetchedFromH1();
  // Post-copy once pages come: every page comes after the commit, so the lazy phase is long enough to
  // die in. At the commit, hybrid: the pages the pre-copy put in h3's store are being installed.
  const mode = when === 'at the commit' ? 'hybrid' : 'post-copy';
  const moving = c.pj(['mv', id, 'h3', '--mode', mode, '--json'], { timeoutMs: 600_000 });
  let ended: string | undefined;
  void moving.then((m) => (ended = `pj mv ended: ${m.code} ${m.stderr.trim()}`));
  await waitFor(async () => ended !== undefined || (await jobOf(id)).host === 'h3', 300_000, 20);
  if (ended !== undefined && (await jobOf(id)).host !== 'h3') throw new Error(`the move did not commit: ${ended}`);
  if (when === 'once pages come') await waitFor(async () => (await fetchedFromH1()) > fetchedBefore + 64 * MIB, 60_000, 20);
  t.equal((await c.pj(['cluster', 'stop', 'h3', '--signal', 'KILL'])).code, 0, `h3's manager killed ${when} of a ${mode} move`);
  if (what === 'both managers') t.equal((await c.pj(['cluster', 'stop', 'h1', '--signal', 'KILL'])).code, 0, 'and h1\'s, the source\'s, with the move\'s own take-back');
  if (what === 'host') for (const x of await onH3(id)) process.kill(x.pid, 'SIGKILL'); // the copy h3 restored: its PID namespace goes with it
  // Slowly (PJ_FAULT=slow-start): the source asks about its move while the restarted manager is still starting.
  else t.equal((await c.pj(['cluster', 'start', 'h3'], { env: { PJ_FAULT: 'slow-start' } })).code, 0, 'h3\'s manager started again, slowly');
  if (what === 'both managers') t.equal((await c.pj(['cluster', 'start', 'h1'])).code, 0, 'h1\'s manager started again');

  const moved = await moving;
  if (what === 'both managers') t.not(moved.code, 0, `pj mv lost its source's manager: ${moved.stderr.trim()}`);
  else if (what === 'manager') t.equal(moved.code, 0, `pj mv says the job moved ${moved.stderr.trim()}`);
  else t.match(moved.stderr, /runs on h1 again, from its frozen copy/, 'pj mv says the job runs on h1 again');
  await waitFor(async () => copies(id).length === 1 && runningCopies(id).length === 1, 60_000, 200);
  const job = await jobOf(id);
  t.equal(job.state, 'running', `the job runs, on ${job.host}${job.moveReason ? ` (${job.moveReason})` : ''}`);
  if (what === 'host') t.same([job.host, job.takenBackFrom], ['h1', 'h3'], 'taken back to h1, and pj ps says from where');
  else {
    t.equal(job.host, 'h3', 'on h3: the restarted manager took the move over');
    t.match(readFileSync(join(paths(c.dir).hostState('h3'), 'agent.log'), 'utf8'), /adopted a move whose manager died/, 'h3\'s log says it adopted the move');
  }
  t.same(await memorySums(id), first, 'its memory is intact');
  t.equal(copies(id).length, 1, 'exactly one copy');
  await c.pj(['kill', '-s', 'KILL', id]);
  if (what === 'host') t.equal((await c.pj(['cluster', 'start', 'h3'])).code, 0, 'h3 back for the next case');
}

t.test('the destination\'s manager dies at the commit', (t) => crash(t, 'manager', 'at the commit'));
t.test('the destination\'s manager dies once pages come', (t) => crash(t, 'manager', 'once pages come'));
t.test('the whole destination host dies once pages come', (t) => crash(t, 'host', 'once pages come'));
t.test('both managers, the source\'s and the destination\'s, die once pages come', (t) => crash(t, 'both managers', 'once pages come'));
