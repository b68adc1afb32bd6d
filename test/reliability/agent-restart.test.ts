// An agent's restart is invisible to jobs: each agent in turn is killed with
// SIGKILL and started again while jobs write. A job's output on its own host
// (passthrough), a job's output on another host (remote writes, sent behind),
// and an open /pj file of a third host written by a job each keep every line,
// once and in order; the /pj mount is the same one throughout; and each job
// moves afterwards (its descriptors still name /pj).
import t, { type Test } from 'tap';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { helperProgram } from '../../common/repo-root.js';
import { paths } from '../../manager/sim-cluster/layout.js';
import { startCluster, waitFor } from '../helpers/cluster.js';

const c = await startCluster(t, { hosts: 3 });
const counter = helperProgram('counter-job.py');

async function run(on: string, cmd: string[]): Promise<string> {
  const r = await c.pj(['run', '--on', on, '--policy', 'pin', '--', ...cmd]);
  if (r.code !== 0) throw new Error(`pj run failed: ${r.stderr}`);
  return r.stdout.trim();
}
async function move(id: string, to: string): Promise<void> {
  const r = await c.pj(['mv', id, to]);
  if (r.code !== 0) throw new Error(`pj mv ${id} ${to} failed: ${r.stderr}`);
}
/** The counters a job printed: from its output (pj logs), or from a file. */
const numbers = (text: string) => text.split('\n').filter(Boolean).map((l) => Number(l.split(' ')[0]));
const printed = async (id: string) => numbers((await c.pj(['logs', id])).stdout);
const fileLines = async () => numbers((await c.exec('h2', ['cat', '/pj/h2/data/restart-log'])).stdout);
/** Where a sequence is not 0, 1, 2, ...: every gap and repeat. */
const breaks = (xs: number[]) => xs.flatMap((x, i) => (x === i ? [] : [`at line ${i}: ${x}`])).slice(0, 5);
const counts = async () => ({ a: (await printed(a)).length, b: (await printed(b)).length, c: (await fileLines()).length });
/** Waits until each job wrote `more` lines after `before`; says how far each got if not. */
async function writesOn(t: Test, before: Awaited<ReturnType<typeof counts>>, more: number, after: string): Promise<void> {
  const on = async () => { const n = await counts(); return n.a > before.a + more && n.b > before.b + more && n.c > before.c + more; };
  await waitFor(on, 60_000, 200).catch(async (e: Error) => {
    t.fail(`the jobs did not write on after ${after}: from ${JSON.stringify(before)} to ${JSON.stringify(await counts())}`);
    throw e;
  });
}

// A: started on h3, runs on h1 (its output stays on h3). B: started on h1, runs on h3.
// C: runs on h1, its output on h1, and it appends to an open file of h2's export.
const a = await run('h3', ['python3', counter]);
const b = await run('h1', ['python3', counter]);
const cJob = await run('h1', ['python3', '-c', `
import time
f = open('/pj/h2/data/restart-log', 'a')
i = 0
while True:
    f.write(f'{i} {int(time.time() * 1000)}\\n'); f.flush(); print(i, flush=True)
    i += 1
    time.sleep(0.005)`]);
await move(a, 'h1');
await move(b, 'h3');
const mountId = async (h: string) => (await c.exec(h, ['sh', '-c', "awk '$5 == \"/pj\" { print $3 }' /proc/self/mountinfo"])).stdout.trim();
const mounts = Object.fromEntries(await Promise.all(['h1', 'h2', 'h3'].map(async (h) => [h, await mountId(h)])));

t.test('each agent killed and started again while jobs write', async (t) => {
  for (const h of ['h1', 'h2', 'h3', 'h1']) {
    const before = await counts();
    t.equal((await c.pj(['cluster', 'stop', h, '--signal', 'KILL'])).code, 0, `${h}'s agent killed`);
    t.equal((await c.pj(['cluster', 'start', h])).code, 0, `${h}'s agent started again`);
    await writesOn(t, before, 25, `${h}'s restart`);
    t.equal(await mountId(h), mounts[h], `${h}'s /pj is the mount it was (taken back from its keeper, not mounted afresh)`);
    // Every line once, in order, after each restart (which one broke a sequence is named).
    for (const [name, id] of [['A', a], ['B', b], ['C', cJob]] as const) t.same(breaks(await printed(id)), [], `${name}'s output after ${h}'s restart: no line lost or repeated`);
    t.same(breaks(await fileLines()), [], `C's open file on h2 after ${h}'s restart: no line lost or repeated`);
  }
  const log = readFileSync(join(paths(c.dir).hostState('h1'), 'agent.log'), 'utf8');
  t.match(log, /took back \/pj from its keeper/, 'h1\'s agent says it took the connection back');

  // Then each job moves.
  await move(a, 'h2');
  await move(b, 'h2');
  await move(cJob, 'h3');
  await writesOn(t, await counts(), 10, 'the moves');
  for (const [name, id] of [['A', a], ['B', b], ['C', cJob]] as const) t.same(breaks(await printed(id)), [], `${name} moved after the restarts and writes on`);
  t.same(breaks(await fileLines()), [], 'C\'s file after its move: in order');
});
