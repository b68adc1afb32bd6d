// `npm run chaos -- [--minutes N | --count N] [--seed S] [--faults a,b,...] [--every S] [--json]`: a soak under
// faults. A 3-host cluster runs real work (a counter, an SQLite writer on another host's export, a
// client of a redis-server only h3 reaches, a job that forks and execs in a loop, a web server on a
// published port under an outside client's requests), moves them in a loop in every mode, and
// injects a fault chosen by the seed every few seconds. At the end it checks what must hold
// whatever happened, and prints the faults survived and every violation (with the seed, to replay).
// Faults: stop-agent (SIGSTOP for a few seconds), kill-agent (SIGKILL, started again), etcd
// (stopped for a few seconds), link (a host's link cut for a few seconds), criu (a CRIU process
// killed while it works), fill-state (h3's jobs folder, a 64 MiB disk of its own, filled for a few seconds).
import { spawn, spawnSync } from 'node:child_process';
import { appendFileSync, copyFileSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { helperProgram, pjCli, repoRoot } from '../common/repo-root.js';
import { paths, readClusterFile } from '../manager/sim-cluster/layout.js';
import { migrationDir } from '../migrator/index.js';
import { clusterNetns } from '../manager/sim-cluster/down.js';

const cmdline = (pid: number) => { try { return readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' '); } catch { return ''; } };

const FAULTS = ['stop-agent', 'kill-agent', 'etcd', 'link', 'criu', 'fill-state'] as const;
const RPC_TIMEOUT_MS = 15_000;
type Fault = (typeof FAULTS)[number];

const arg = (name: string, dflt: string) => { const i = process.argv.indexOf(`--${name}`); return i > 0 ? process.argv[i + 1] : dflt; };
const minutes = Number(arg('minutes', '30'));
/** With --count, the run ends after that many faults, however long they take (a busy machine slows them). */
const count = Number(arg('count', '0'));
const seed = Number(arg('seed', String(Date.now() % 100000)));
const every = Number(arg('every', '10')) * 1000;
const faults = arg('faults', FAULTS.join(',')).split(',') as Fault[];
const json = process.argv.includes('--json');
for (const f of faults) if (!FAULTS.includes(f)) throw new Error(`--faults: no fault '${f}' (${FAULTS.join(', ')})`);

/** mulberry32: the same seed gives the same faults, hosts and moves. */
let state = seed >>> 0;
const random = () => { state = (state + 0x6d2b79f5) >>> 0; let x = state; x = Math.imul(x ^ (x >>> 15), x | 1); x ^= x + Math.imul(x ^ (x >>> 7), x | 61); return ((x ^ (x >>> 14)) >>> 0) / 2 ** 32; };
const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)];

const dir = mkdtempSync(join(tmpdir(), 'pj-chaos-'));
const env = { ...process.env, PJ_CLUSTER_DIR: dir };
const helper = helperProgram;
const say = (line: string) => { if (!json) console.log(`${new Date().toISOString().slice(11, 19)} ${line}`); };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function pj(args: string[], timeoutMs = 120_000): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [pjCli(), ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => (stdout += d));
    p.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => p.kill('SIGKILL'), timeoutMs);
    p.on('close', (code) => { clearTimeout(timer); resolve({ code: code ?? 1, stdout, stderr }); });
  });
}
const cluster = () => readClusterFile(dir);
const hostNames = ['h1', 'h2', 'h3'];
const netns = (h: string) => `/run/netns/${cluster().hosts.find((x) => x.name === h)!.netns}`;
const inHost = (h: string, cmd: string[]) => spawnSync('nsenter', [`--net=${netns(h)}`, ...cmd], { encoding: 'utf8' });
const inHostMounts = (h: string, cmd: string[]) => spawnSync(process.execPath, [pjCli(), 'cluster', 'exec', h, '--', ...cmd], { encoding: 'utf8', env });
/** h3's jobs folder, a small disk of its own, so that filling it fills no other host's (nor this machine's). */
const SMALL_DISK = join(dir, 'hosts', 'h3', 'state', 'jobs');
const fdsOf = (pid: number) => { try { return readdirSync(`/proc/${pid}/fd`).length; } catch { return 0; } };
const rssMiB = (pid: number) => { try { return Number(/^VmRSS:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) / 1024; } catch { return 0; } };

/**
 * What did not hold, by kind: agents (one died, hangs or holds too much), hang (a move or the client did
 * not end), copies (not exactly one of a job), jobs (a job ended), data (a line, row or value lost or
 * repeated), cleanup (namespaces or mounts left), harness (a fault could not be made).
 */
type Kind = 'agents' | 'hang' | 'copies' | 'jobs' | 'data' | 'cleanup' | 'harness';
const violations: Array<{ kind: Kind; what: string }> = [];
const violate = (kind: Kind, what: string) => violations.push({ kind, what });
const survived: Record<string, number> = {};
const moves = { made: 0, refused: 0, why: {} as Record<string, number> };

async function run(on: string, cmd: string[], extra: string[] = []): Promise<string> {
  const r = await pj(['run', '--on', on, '--policy', 'pin', ...extra, '--', ...cmd]);
  if (r.code !== 0) throw new Error(`pj run failed: ${r.stderr}`);
  return r.stdout.trim();
}

/** One fault, held for a few seconds where it is a state, then undone. */
async function inject(f: Fault): Promise<void> {
  const h = pick(hostNames);
  const agent = () => cluster().hosts.find((x) => x.name === h)!.agentPid!;
  const hold = 2000 + Math.floor(random() * 4000);
  say(`fault: ${f} on ${f === 'etcd' ? 'etcd' : h} for ${hold} ms`);
  switch (f) {
    case 'stop-agent': process.kill(agent(), 'SIGSTOP'); await sleep(hold); process.kill(agent(), 'SIGCONT'); break;
    case 'kill-agent': await pj(['cluster', 'stop', h, '--signal', 'KILL']); await sleep(hold); await pj(['cluster', 'start', h]); break;
    case 'etcd': process.kill(cluster().etcd.pid!, 'SIGSTOP'); await sleep(hold); process.kill(cluster().etcd.pid!, 'SIGCONT'); break;
    case 'link': inHost(h, ['ip', 'link', 'set', 'eth0', 'down']); await sleep(hold); inHost(h, ['ip', 'link', 'set', 'eth0', 'up']); break;
    case 'criu': {
      // Waits (up to the hold) for a CRIU at work for this cluster (its images in one of our agents' folders), then kills it.
      const ours = cluster().hosts.map((x) => migrationDir(x.name, paths(dir).hostState(x.name)) + '/');
      const until = Date.now() + hold;
      while (Date.now() < until) {
        const r = spawnSync('pgrep', ['-f', 'criu (dump|restore|lazy-pages)'], { encoding: 'utf8' });
        const pid = r.stdout.split('\n').map(Number).find((p) => p > 0 && ours.some((d) => cmdline(p).includes(d)));
        if (pid) { try { process.kill(pid, 'SIGKILL'); } catch { /* ended meanwhile */ } break; }
        await sleep(50);
      }
      break;
    }
    case 'fill-state': {
      // h3's jobs folder is a disk of its own (a tmpfs: see main), filled to the last 64 KiB.
      const file = join(SMALL_DISK, 'chaos-fill');
      inHostMounts('h3', ['sh', '-c', `fallocate -l $(( $(stat -f -c '%a*%S' ${SMALL_DISK}) - 65536 )) ${file}`]);
      await sleep(hold);
      inHostMounts('h3', ['rm', '-f', file]);
      break;
    }
  }
  survived[f] = (survived[f] ?? 0) + 1;
}

/** Copies each host's agent and holder logs to a folder of their own under /var/tmp: its path. */
function keepLogs(): string {
  const to = mkdtempSync(join('/var/tmp', `pj-chaos-${seed}-`));
  for (const h of cluster().hosts) {
    for (const name of ['agent.log', 'holder.log']) {
      try { copyFileSync(join(paths(dir).hostState(h.name), name), join(to, `${h.name}-${name}`)); } catch { /* not written */ }
    }
  }
  return to;
}

async function mover(jobs: string[], going: () => boolean): Promise<void> {
  const modes = ['hybrid', 'stop-copy', 'pre-copy', 'post-copy'];
  while (going()) {
    const id = pick(jobs);
    const to = pick(hostNames);
    const r = await pj(['mv', id, to, '--mode', pick(modes), '--json'], 180_000);
    if (r.code !== 0 && /timed out|did not answer/.test(r.stderr)) say(`move of ${id} to ${to}: ${r.stderr.trim()}`);
    if (r.code === 0) moves.made++;
    else {
      moves.refused++;
      const code = /PJ_ERR_[A-Z_]+/.exec(r.stderr)?.[0] ?? 'other';
      moves.why[code] = (moves.why[code] ?? 0) + 1;
    }
    await sleep(1000 + random() * 2000);
  }
}

async function logs(id: string): Promise<string> { return (await pj(['logs', id])).stdout; }

async function main(): Promise<void> {
  // /pj is a soft mount: a request to a host that does not answer within --rpc-timeout fails (as NFS's
  // 'soft' does). Links are cut here for up to 6 s: the deadline is set longer than that.
  const up = await pj(['cluster', 'up', '--hosts', '3', '--name', `chaos${process.pid % 1000}`, '--route', '10.77.0.0/16=h3', `--agent-option=--rpc-timeout=${RPC_TIMEOUT_MS}`]);
  if (up.code !== 0) throw new Error(`pj cluster up failed: ${up.stderr}`);
  say('cluster up');
  inHost('h3', ['ip', 'addr', 'add', '10.77.0.3/32', 'dev', 'lo']);
  await pj(['cluster', 'stop', 'h3']);
  inHostMounts('h3', ['mount', '-t', 'tmpfs', '-o', 'size=64m', 'pj-chaos-jobs', SMALL_DISK]);
  await pj(['cluster', 'start', 'h3']);
  say('h3 has a jobs disk of its own');
  await pj(['cluster', 'exec', 'h1', '--', 'touch', '/srv/data/.keep']);
  const redis = spawn('nsenter', [`--net=${netns('h3')}`, 'redis-server', '--bind', '10.77.0.3', '--save', '', '--protected-mode', 'no'], { stdio: 'ignore' });
  await sleep(500);
  const start = { agents: cluster().hosts.map((h) => fdsOf(h.agentPid!)), netns: clusterNetns(cluster()) };
  const counter = await run('h1', ['python3', helper('counter-job.py')]);
  const sqlite = await run('h2', ['python3', helper('sqlite-job.py'), 'chaos.sqlite'], ['--cwd', '/pj/h3/data']);
  const incr = await run('h1', ['python3', helper('net-job.py'), 'incr', '10.77.0.3', '6379']);
  const forker = await run('h2', ['python3', helper('fork-exec-job.py'), '100000000', '/pj/h1/data/.keep']);
  const web = await run('h3', ['python3', helper('net-job.py'), 'answer', '9000'], ['--publish', '9300:9000']);
  const jobs = [counter, sqlite, incr, forker, web];
  say('jobs started');
  const names: Record<string, string> = { [counter]: 'counter', [sqlite]: 'sqlite writer', [incr]: 'redis client', [forker]: 'fork+exec loop', [web]: 'web server' };
  const h3 = cluster().hosts.find((h) => h.name === 'h3')!.address;
  const until = Date.now() + minutes * 60_000;
  let injected = 0;
  const going = () => (count ? injected < count : Date.now() < until);
  // The client runs until the faults are over (SIGTERM: it prints its summary and ends).
  const client = spawn('nsenter', [`--net=${netns('h1')}`, 'python3', helper('net-client.py'), 'fresh', h3, '9300', String(24 * 3600)], { stdio: ['ignore', 'pipe', 'ignore'] });
  let clientOut = '';
  client.stdout.on('data', (d) => (clientOut += d));
  const clientDone = new Promise((r) => client.on('close', r));
  const moving = mover(jobs, going);
  while (going()) {
    await sleep(every * (0.5 + random()));
    if (!going()) break;
    await inject(pick(faults)).catch((e: Error) => violate('harness', `the fault itself failed: ${e.message}`));
    injected++;
  }
  say('faults over: waiting for the last move and the client');
  const bounded = (p: Promise<unknown>, what: string) => Promise.race([p,
    new Promise((r) => setTimeout(r, 200_000).unref()).then(() => violate('hang', `${what} did not end within 200 s`))]);
  await bounded(moving, 'the last move');
  client.kill('SIGTERM');
  await bounded(clientDone, 'the web client');
  client.kill('SIGKILL');
  await sleep(3000); // the last fault's effects settle (a lease, a remount)
  say('checking');

  // Invariants.
  for (const h of cluster().hosts) {
    const r = await pj(['status', '--json', '--host', h.name], 30_000);
    if (r.code !== 0) violate('agents', `${h.name}'s agent does not answer: ${r.stderr.trim()}`);
  }
  const ps = JSON.parse((await pj(['ps', '--json'])).stdout || '[]') as Array<{ id: string; state: string; host: string; exit?: string }>;
  for (const id of jobs) {
    const j = ps.find((x) => x.id === id);
    if (!j || j.state !== 'running') {
      // Its last words: the error lines its program printed (the SQLite writer names the failed operation), else the last lines.
      const err = (await pj(['logs', id])).stderr.trim().split('\n');
      const why = [...new Set([...err.filter((l) => /error/i.test(l)).slice(-3), ...err.slice(-2)])].join(' / ');
      violate('jobs', `job ${id} (${names[id]}) is not running: ${j ? `${j.state} ${j.exit ?? ''}` : 'gone from the table'}: ${why}`);
      continue;
    }
    const copies = spawnSync('sh', ['-c', `for p in $(pgrep -f 'pj-init .*/${id} '); do grep -q 'NSpid:.*\\s1$' /proc/$p/status && awk '{print $3}' /proc/$p/stat; done`], { encoding: 'utf8' }).stdout.split('\n').filter((s) => s && !['T', 't', 'Z'].includes(s));
    if (copies.length !== 1) violate('copies', `job ${id} (${names[id]}): ${copies.length} running copies`);
  }
  // The rest is read once the jobs have ended: their output and redis's count no longer move.
  for (const id of jobs) await pj(['kill', '-s', 'KILL', id]);
  const ended = async () => (JSON.parse((await pj(['ps', '--json'])).stdout || '[]') as Array<{ id: string; state: string }>).every((j) => !jobs.includes(j.id) || j.state === 'exited');
  for (let i = 0; i < 60 && !(await ended()); i++) await sleep(500);
  const rows = (await logs(counter)).split('\n').filter(Boolean).map((l) => Number(l.split(' ')[0]));
  const gap = rows.findIndex((n, i) => i > 0 && n !== rows[i - 1] + 1);
  if (gap > 0) violate('data', `counter: ${rows[gap - 1]} then ${rows[gap]}`);
  const incrs = (await logs(incr)).split('\n').filter((l) => l.startsWith('incr ')).map((l) => Number(l.slice(5)));
  const counted = Number(inHost('h3', ['redis-cli', '-h', '10.77.0.3', 'get', 'pj-seq']).stdout.trim());
  if (incrs.some((n, i) => i > 0 && n !== incrs[i - 1] + 1)) violate('data', 'redis client: a value out of sequence');
  if (counted - (incrs.at(-1) ?? 0) > 1) violate('data', `redis counted ${counted}, the client saw ${incrs.at(-1)}`);
  const committed = Number((await logs(sqlite)).split('\n').filter((l) => l.startsWith('committed')).at(-1)?.split(' ')[1] ?? 0);
  const inDb = Number(spawnSync('sqlite3', [join(dir, 'hosts', 'h3', 'srv', 'data', 'chaos.sqlite'), 'select count(*) from t'], { encoding: 'utf8' }).stdout.trim());
  if (inDb < committed) violate('data', `sqlite: ${committed} rows committed, ${inDb} in the file`);
  if (/^GAP/m.test(await logs(web))) violate('data', 'web server: a request out of sequence');
  const agentsNow = cluster().hosts.map((h) => ({ name: h.name, fds: fdsOf(h.agentPid!), rss: rssMiB(h.agentPid!) }));
  for (const a of agentsNow) {
    if (a.rss > 1024) violate('agents', `${a.name}'s agent holds ${Math.round(a.rss)} MiB`);
  }
  redis.kill('SIGKILL');
  // A run with violations keeps its hosts' logs (the cluster's folder goes with it).
  const kept = violations.length ? keepLogs() : undefined;
  await pj(['cluster', 'down']);
  const present = new Set(spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' }).stdout.split('\n').map((l) => l.split(' ')[0]));
  const left = start.netns.filter((ns) => present.has(ns));
  if (left.length) violate('cleanup', `network namespaces of the cluster left after cluster down: ${left.join(', ')}`);
  if (spawnSync('grep', ['-c', dir, '/proc/mounts'], { encoding: 'utf8' }).stdout.trim() !== '0') violate('cleanup', 'mounts of the cluster left after cluster down');
  const webClient = clientOut.replace(/^answered \d+\n/gm, '').trim(); // its failures and summary
  const report = {
    seed, ...(count ? { count } : { minutes }), faults: survived, moves, violations, counterLines: rows.length, sqliteRows: inDb, redis: counted,
    web: webClient, agents: agentsNow, agentFdsAtStart: start.agents, ...(kept ? { logs: kept } : {}),
  };
  if (json) console.log(JSON.stringify(report));
  else {
    say(`seed ${seed}: ${Object.entries(survived).map(([k, v]) => `${v} ${k}`).join(', ') || 'no'} faults survived; ${moves.made} moves made, ${moves.refused} refused (${Object.entries(moves.why).map(([k, v]) => `${v} ${k}`).join(", ")})`);
    say(`counter ${rows.length} lines, sqlite ${inDb} rows, redis ${counted}, web client: ${webClient}`);
    for (const v of violations) say(`VIOLATION (${v.kind}): ${v.what}`);
    if (kept) say(`the hosts' logs are kept in ${kept}`);
    say(`${violations.length === 0 ? 'no violation' : `${violations.length} violations (replay with --seed ${seed})`}`);
  }
  mkdirSync(join(repoRoot(), 'bench', 'results'), { recursive: true });
  appendFileSync(join(repoRoot(), 'bench', 'results', 'chaos.jsonl'), JSON.stringify({ at: new Date().toISOString(), ...report }) + '\n');
  process.exitCode = violations.length ? 1 : 0;
}

process.on('SIGINT', () => { spawnSync(process.execPath, [pjCli(), 'cluster', 'down'], { env }); process.exit(130); });
main().catch(async (e: Error) => {
  console.error(`chaos: ${e.message}`);
  await pj(['cluster', 'down']);
  process.exitCode = 2;
}).finally(() => rmSync(dir, { recursive: true, force: true }));
