// The policy on a real 3-host cluster: jobs that read files of another host or
// talk to a service only another host reaches are moved there by the managers
// themselves; a job whose traffic alternates does not flap; pinned jobs stay;
// balance sheds CPU load, cheap seeks the cheapest host, drain empties a host;
// the metrics endpoint speaks Prometheus's text format and agrees with the ledger.
import t, { type Test } from 'tap';
import { spawn } from 'node:child_process';
import { helperProgram } from '../../common/repo-root.js';
import type { JobView, LedgerRow, PolicyView } from '../../migrator/index.js';
import { LOAD_SLACK } from '../../migrator/policy.js';
import { startCluster, waitFor } from '../helpers/cluster.js';

const SERVICE = '10.77.0.3'; // an address only h3 has
const c = await startCluster(t, {
  hosts: 3, routes: ['10.77.0.0/16=h3'],
  agentOptions: ['--max-load=1', '--metrics=0.0.0.0:9464'], hostOptions: ['h3:--price=0.5'],
});
const helper = helperProgram;
const netns = (h: string) => `/run/netns/${c.file().hosts.find((x) => x.name === h)!.netns}`;
for (const h of ['h1', 'h2', 'h3']) await c.exec(h, ['sh', '-c', 'head -c 32M /dev/urandom > /srv/data/blob']);

const ps = async (): Promise<JobView[]> => JSON.parse((await c.pj(['ps', '--json'])).stdout) as JobView[];
const jobOf = async (id: string) => (await ps()).find((j) => j.id === id)!;
/** Ends jobs and waits until they have (a job that is moving takes signals once it has moved). */
async function kill(ids: string[]): Promise<void> {
  await waitFor(async () => {
    const running = (await ps()).filter((j) => ids.includes(j.id) && j.state === 'running');
    for (const j of running) await c.pj(['kill', j.id, '--signal', 'KILL']);
    return running.length === 0;
  }, 60_000, 500);
}
/** Starts a job; it is ended when the test `t` ends, passed or not. */
async function run(t: Test, cmd: string[], on: string, extra: string[] = []): Promise<string> {
  const r = await c.pj(['run', '--on', on, ...extra, '--', ...cmd]);
  if (r.code !== 0) throw new Error(`pj run failed: ${r.stderr}`);
  const id = r.stdout.trim();
  t.teardown(() => kill([id]));
  return id;
}
const reader = (...targets: string[]) => ['python3', helper('traffic-job.py'), '20', '0.5', '0', ...targets];
/** Where the job is every `stepMs` for `ms`: the hosts seen, in order, and its moves at the end. */
async function watch(id: string, ms: number, stepMs = 250): Promise<{ hosts: string[]; moves: number }> {
  const hosts: string[] = [];
  const end = Date.now() + ms;
  let moves = 0;
  while (Date.now() < end) {
    const j = await jobOf(id);
    if (hosts.at(-1) !== j.host) hosts.push(j.host);
    moves = j.moves;
    await new Promise((r) => setTimeout(r, stepMs));
  }
  return { hosts, moves };
}

// How soon (the goal is 3 s) is measured by `npm run bench -- policy`; a wall-clock bound here failed under load.
t.test('a job on h1 that reads /pj/h2/data heavily moves to h2, then stays', async (t) => {
  const id = await run(t, reader('/pj/h2/data/blob'), 'h1');
  await waitFor(async () => (await jobOf(id)).host === 'h2', 15_000, 100);
  const took = (Date.now() - Date.parse((await jobOf(id)).startedAt)) / 1000;
  t.pass(`on h2 ${took.toFixed(1)} s after it started (goal 3 s, measured by bench policy)`);
  const later = await watch(id, 6000, 500);
  t.same(later, { hosts: ['h2'], moves: 1 }, 'then it stays on h2, moved once');
  const j = await jobOf(id);
  t.equal(j.state, 'running', 'and runs on');
  const top = JSON.parse((await c.pj(['top', '--json'])).stdout) as { jobs: PolicyView[] };
  const v = top.jobs.find((x) => x.id === id);
  t.ok(v && v.host === 'h2' && (v.traffic.h2?.bytesPerS ?? 0) > 2 ** 20, `pj top shows it on h2 with its reads local: ${JSON.stringify(v?.traffic)}`);
  t.match(v?.decision?.detail ?? '', /minimum stay|no host saves/, `and why it stays: ${v?.decision?.detail}`);
});

t.test('a job whose traffic switches between h2 and h3 every 0.5 s moves at most once in 10 s', async (t) => {
  const id = await run(t, reader('/pj/h2/data/blob', '/pj/h3/data/blob'), 'h1');
  const seen = await watch(id, 10_000);
  t.ok(seen.moves <= 1, `moves: ${seen.moves} (hosts ${seen.hosts.join(' -> ')})`);
  t.equal((await jobOf(id)).state, 'running', 'it runs on');
});

t.test('a job talking to a service only h3 reaches moves to h3 and keeps its connection', async (t) => {
  await c.exec('h3', ['ip', 'addr', 'add', `${SERVICE}/32`, 'dev', 'lo']);
  const server = spawn('nsenter', [`--net=${netns('h3')}`, 'python3', helper('data-server.py'), SERVICE, '7000'], { stdio: 'ignore' });
  t.teardown(() => { server.kill('SIGKILL'); });
  await waitFor(async () => (await c.exec('h3', ['python3', '-c', `import socket; socket.create_connection(('${SERVICE}', 7000), timeout=1)`])).code === 0, 10_000, 200);
  // 150 MiB/s: at 20 the move's payback (about 0.5 s of downtime for ~11 ms/s saved once the link's
  // throughput is measured near 1.7 GB/s) is longer than the 30 s horizon, and staying is right; at
  // 60 it was close enough to the horizon that a faster-measured link made staying right too.
  const id = await run(t, ['python3', helper('traffic-job.py'), '150', '0.5', '0', `tcp:${SERVICE}:7000`], 'h1');
  // How soon is the policy bench's to say; a busy machine or a slow first sample of the link can take a while.
  const moved = await waitFor(async () => (await jobOf(id)).host === 'h3', 60_000, 200).catch(() => -1);
  t.ok(moved >= 0, `the job moved to h3${moved < 0 ? `, not so: ${(await c.pj(['policy', id])).stdout}${(await c.pj(['top', '-n', '1'])).stdout}` : ''}`);
  if (moved < 0) return;
  const netRows = async () => (JSON.parse((await c.pj(['ledger', '--json', '--host', 'h3'])).stdout) as LedgerRow[]).filter((r) => r.id === id && r.layer === 'net');
  await waitFor(async () => (await netRows()).some((r) => r.target === 'h3' && r.bytesPerS > 2 ** 20), 20_000, 200);
  t.pass(`on h3 its traffic is local: ${JSON.stringify(await netRows())}`);
  const j = await jobOf(id);
  t.equal(j.state, 'running', `it runs on, its connection kept: ${(await c.pj(['logs', id])).stdout.slice(-200)}`);
});

t.test('a pinned job never moves; pj policy makes it follow', async (t) => {
  const id = await run(t, reader('/pj/h2/data/blob'), 'h1', ['--policy', 'pin']);
  t.same(await watch(id, 6000, 500), { hosts: ['h1'], moves: 0 }, 'pinned: it stays on h1 for 6 s');
  const shown = await c.pj(['policy', id]);
  t.match(shown.stdout, new RegExp(`^${id}: pin; last decision: stay: pinned`), `pj policy says why: ${shown.stdout.trim()}`);
  const changed = await c.pj(['policy', id, 'follow']);
  t.equal(changed.code, 0, `pj policy ${id} follow: ${changed.stderr}`);
  await waitFor(async () => (await jobOf(id)).host === 'h2', 10_000, 200);
  t.pass('following, it moved to h2');
  const bad = await c.pj(['policy', id, 'wander']);
  t.match(bad.stderr, /PJ_ERR_USAGE: the policy must be one of follow, pin, balance, cheap/, 'an unknown policy is refused');
});

t.test('balance sheds jobs from a loaded host to the least loaded', async (t) => {
  const burn = ['python3', '-c', 'while True: pass'];
  const ids = [await run(t, burn, 'h1', ['--policy', 'balance']), await run(t, burn, 'h1', ['--policy', 'balance']), await run(t, burn, 'h1', ['--policy', 'balance'])];
  // Three burners on h1 (max load 1 CPU; the machine's two CPUs shared by three): h1 sheds one, then, still above, another, each to the least loaded host.
  const spread = await waitFor(async () => new Set((await ps()).filter((j) => ids.includes(j.id)).map((j) => j.host)).size === 3, 40_000, 500).catch(() => -1);
  t.ok(spread >= 0, `one burner on each host${spread < 0 ? `, not so:\n${(await c.pj(['top', '-n', '1'])).stdout}` : ''}`);
  const hosts = JSON.parse((await c.pj(['hosts', '--json'])).stdout) as Array<{ name: string; use?: { load: number } }>;
  t.ok(hosts.every((h) => (h.use?.load ?? 0) <= 1 + LOAD_SLACK), `every host within its load: ${hosts.map((h) => `${h.name} ${h.use?.load.toFixed(2)}`).join(', ')}`);
});

t.test('cheap moves an idle job to the cheapest host', async (t) => {
  const id = await run(t, ['sleep', '1000'], 'h1', ['--policy', 'cheap']);
  await waitFor(async () => (await jobOf(id)).host === 'h3', 15_000, 200);
  t.pass('it moved to h3 (price 0.5, the others 1)');
  t.same(await watch(id, 3000, 500), { hosts: ['h3'], moves: 1 }, 'and stays there');
});

t.test('drain empties a host of its movable jobs; pinned ones are listed and stay', async (t) => {
  const movable = [await run(t, ['sleep', '1000'], 'h2'), await run(t, ['python3', helper('counter-job.py')], 'h2')];
  const pinned = await run(t, ['sleep', '1000'], 'h2', ['--policy', 'pin']);
  const r = await c.pj(['host', 'drain', 'h2', '--json'], { timeoutMs: 150_000 });
  t.equal(r.code, 0, `pj host drain h2: ${r.stderr}`);
  const out = JSON.parse(r.stdout) as { moved: string[]; pinned: string[]; remaining: string[] };
  t.same([out.moved.sort(), out.pinned, out.remaining], [[...movable].sort(), [pinned], []], 'the movable jobs left, the pinned one is listed');
  const now = await ps();
  t.ok(movable.every((id) => ['h1', 'h3'].includes(now.find((j) => j.id === id)!.host)), 'they run on h1 and h3');
  t.equal(now.find((j) => j.id === pinned)!.host, 'h2', 'the pinned job still runs on h2');
  const hosts = JSON.parse((await c.pj(['hosts', '--json'])).stdout) as Array<{ name: string; drained: boolean }>;
  t.ok(hosts.find((h) => h.name === 'h2')!.drained, 'pj hosts shows h2 drained');
  t.match((await c.pj(['mv', movable[0], 'h2'])).stderr, /PJ_ERR_USAGE: host h2 is drained/, 'pj mv to a drained host is refused');
  t.match((await c.pj(['run', '--on', 'h2', '--', 'true'])).stderr, /PJ_ERR_USAGE: host h2 is drained/, 'and so is pj run on it');
  // While h2 is drained, a job that reads h2's data stays where it is.
  const wants = await run(t, reader('/pj/h2/data/blob'), 'h1');
  t.same(await watch(wants, 4000, 500), { hosts: ['h1'], moves: 0 }, 'no job moves to a drained host');
  t.equal((await c.pj(['host', 'undrain', 'h2'])).code, 0, 'pj host undrain h2');
  await waitFor(async () => (await jobOf(wants)).host === 'h2', 10_000, 200);
  t.pass('undrained, h2 takes the job that reads its data');
  const gone = await c.pj(['host', 'drain', 'h9']);
  t.match(gone.stderr, /PJ_ERR_NO_SUCH_HOST/, 'draining an unknown host is refused');
});

t.test('drain with --timeout exits 1 and lists the jobs that could not leave in time', async (t) => {
  const stuck = await run(t, ['python3', '-c', "import time; f = open('/srv/pj-stuck', 'w'); print('holding', flush=True); time.sleep(1000)"], 'h3');
  await waitFor(async () => (await c.pj(['logs', stuck])).stdout === 'holding\n', 10_000);
  const r = await c.pj(['host', 'drain', 'h3', '--timeout', '2', '--json'], { timeoutMs: 60_000 });
  t.teardown(() => c.pj(['host', 'undrain', 'h3']));
  t.equal(r.code, 1, `exit 1: a job is left (${r.stderr.trim()})`);
  t.same((JSON.parse(r.stdout) as { remaining: string[] }).remaining, [stuck], 'the job holding a file outside /pj is named as remaining');
  t.equal((await jobOf(stuck)).host, 'h3', 'and runs on where it was');
});

t.test('the metrics endpoint parses as Prometheus text and its counters match the ledger', async (t) => {
  const fetched = await c.exec('h1', ['python3', '-c', "import urllib.request,sys; sys.stdout.write(urllib.request.urlopen('http://127.0.0.1:9464/metrics').read().decode())"]);
  t.equal(fetched.code, 0, `GET /metrics on h1: ${fetched.stderr}`);
  const samples: Array<{ name: string; labels: Record<string, string>; value: number }> = [];
  const typed = new Set<string>();
  const bad: string[] = [];
  for (const line of fetched.stdout.split('\n').filter(Boolean)) {
    const meta = /^# (HELP|TYPE) ([a-zA-Z_:][a-zA-Z0-9_:]*) (.+)$/.exec(line);
    if (meta) { if (meta[1] === 'TYPE') typed.add(meta[2]); continue; }
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{((?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*",?)*)\})? (-?[0-9.e+-]+|\+Inf|-Inf|NaN)$/.exec(line);
    if (!m) { bad.push(line); continue; }
    const labels = Object.fromEntries([...(m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)].map((x) => [x[1], x[2]]));
    samples.push({ name: m[1], labels, value: Number(m[3]) });
  }
  t.same(bad, [], 'every line is a comment or a sample');
  t.ok(samples.every((s) => typed.has(s.name.replace(/_(bucket|sum|count)$/, '')) || typed.has(s.name)), 'every sample has a TYPE');
  for (const name of ['pj_fs_operations_total', 'pj_fs_bytes_total', 'pj_rpc_seconds', 'pj_proxy_bytes_total', 'pj_migrations_total', 'pj_migration_downtime_seconds', 'pj_policy_decisions_total', 'pj_ledger_bytes_total']) {
    t.ok(typed.has(name), `${name} is there`);
  }
  const sum = (name: string, f: (l: Record<string, string>) => boolean) => samples.filter((s) => s.name === name && f(s.labels)).reduce((n, s) => n + s.value, 0);
  const ledger = JSON.parse((await c.pj(['ledger', '--json', '--host', 'h1'])).stdout) as LedgerRow[];
  const ledgerSum = (layer: string) => ledger.filter((r) => r.layer === layer && r.target !== 'h1').reduce((n, r) => n + r.bytes, 0);
  t.ok(ledgerSum('fs') > 0, 'h1 read remote files');
  t.equal(sum('pj_fs_bytes_total', (l) => l.locality === 'remote'), ledgerSum('fs'), 'remote /pj bytes: metrics = ledger');
  t.equal(sum('pj_proxy_bytes_total', (l) => l.via !== 'h1'), ledgerSum('net'), 'proxied bytes to other hosts: metrics = ledger');
  t.ok(sum('pj_migrations_total', (l) => l.outcome === 'moved') >= 1, 'moves made by h1 are counted');
  t.ok(sum('pj_policy_decisions_total', (l) => l.outcome === 'move') >= 1, 'and the policy decisions that made them');
});
