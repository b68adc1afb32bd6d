// `npm run demo`: brings a 3-host simulated cluster up, shows it, measures the
// mesh, shares a SQLite file through /pj, moves a running program holding 192 MiB
// h1 -> h2 -> h3 -> h1 (hybrid: pre-copy, lazy restore, page stores) while it
// keeps one connection open to a redis-server that only h3 can reach (a route
// sends it there); then a job that reads h2's data and then h3's, which the
// managers move by themselves (pj top shows where and why); and takes
// everything down at the end or on Ctrl-C.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { helperProgram, pjCli } from '../common/repo-root.js';
import { paths } from '../manager/sim-cluster/layout.js';
import type { JobView } from '../migrator/index.js';

const dir = mkdtempSync(join(tmpdir(), 'pj-demo-'));
/** Ticks, each counted by the redis-server on h3 over one connection that stays open through every move. */
const TICKER = `import os, socket, time
held = os.urandom(192 << 20)
redis = socket.create_connection(('10.77.0.3', 6379))
replies = redis.makefile('rb')
for i in range(10**9):
    redis.sendall(b'INCR ticks\\r\\n')
    print('tick', i, time.strftime('%H:%M:%S'), 'redis on h3 counted', int(replies.readline()[1:]), flush=True)
    time.sleep(0.25)`;
const env = { ...process.env, PJ_CLUSTER_DIR: dir };

/** Steps that failed: their hosts' logs are shown before the cluster goes. */
let stepsFailed = 0;
function step(title: string, args: string[], expected = 0): number {
  process.stdout.write(`\n\x1b[1m$ pj ${args.join(' ')}\x1b[0m   # ${title}\n`);
  const r = spawnSync(process.execPath, [pjCli(), ...args], { stdio: 'inherit', env, timeout: 60_000 });
  if (r.status !== expected) stepsFailed++;
  return r.status ?? 1;
}

/** Waits (up to `seconds`) until the job named `name` runs on `host`: the managers move it when its traffic says so. */
function waitUntilOn(name: string, host: string, seconds: number): void {
  const on = () => {
    const r = spawnSync(process.execPath, [pjCli(), 'ps', '--json'], { encoding: 'utf8', env });
    try {
      return (JSON.parse(r.stdout) as JobView[]).find((j) => j.name === name)?.host;
    } catch {
      return undefined;
    }
  };
  for (let i = 0; i < seconds * 2 && on() !== host; i++) spawnSync('sleep', ['0.5']);
}

/** The end of each agent's log, on stderr: what went wrong, before cleanup removes it. */
function showLogs(): void {
  for (const h of ['h1', 'h2', 'h3']) {
    let log = '';
    try {
      log = readFileSync(join(paths(dir).hostState(h), 'agent.log'), 'utf8');
    } catch { continue; }
    process.stderr.write(`--- the last lines of ${h}'s agent.log\n${log.split('\n').slice(-40).join('\n')}\n`);
  }
}

let cleaned = false;
function cleanup(): void {
  if (cleaned) return;
  cleaned = true;
  if (stepsFailed) showLogs();
  step('remove every namespace, mount and process of the cluster', ['cluster', 'down']);
  rmSync(dir, { recursive: true, force: true });
}
process.on('SIGINT', () => { cleanup(); process.exit(130); });
process.on('SIGTERM', () => { cleanup(); process.exit(143); });

let failed = false;
try {
  failed ||= step('three hosts, each a network + mount namespace, one etcd, one agent per host; jobs reach 10.77.0.0/16 through h3',
    ['cluster', 'up', '--hosts', '3', '--name', 'demo', '--route', '10.77.0.0/16=h3']) !== 0;
  if (!failed) {
    step('membership as etcd sees it', ['hosts']);
    step('the cluster from outside: agent pids and lease state', ['cluster', 'status']);
    step('a command on host h2: its own network namespace', ['cluster', 'exec', 'h2', '--', 'ip', '-brief', 'addr', 'show', 'eth0']);
    step('the authenticated mesh from h1 to h3: round trips and a 256 MiB stream', ['ping', 'h3', '--count', '20', '--stream', '256']);
    step('a program on h2 writes a SQLite database on its own disk', ['cluster', 'exec', 'h2', '--', 'sqlite3', '/srv/data/demo.db',
      "CREATE TABLE visits(host TEXT, at TEXT); INSERT INTO visits VALUES ('h2', datetime('now'));"]);
    step('the same tree on every host: h1 sees h2\'s files under /pj/h2/data', ['cluster', 'exec', 'h1', '--', 'ls', '-l', '/pj', '/pj/h2/data']);
    step('sqlite3 on h1 writes to h2\'s database through /pj (locks and all)', ['cluster', 'exec', 'h1', '--', 'sqlite3', '/pj/h2/data/demo.db',
      "INSERT INTO visits VALUES ('h1 via /pj', datetime('now')); SELECT * FROM visits;"]);
    step('h2 reads what h1 wrote, from its own disk', ['cluster', 'exec', 'h2', '--', 'sqlite3', '/srv/data/demo.db', 'SELECT count(*) || \' rows\' FROM visits;']);
    step('h2\'s agent crashes (SIGKILL) ...', ['cluster', 'stop', 'h2', '--signal', 'KILL']);
    spawnSync('sleep', ['3']);
    step('... and its lease has expired: h2 is down', ['hosts']);
    step('h2\'s agent is started again', ['cluster', 'start', 'h2']);
    step('h2 is up again', ['hosts']);
    step('a redis-server on an address only h3 has', ['cluster', 'exec', 'h3', '--', 'sh', '-c',
      'ip addr add 10.77.0.3/32 dev lo && redis-server --bind 10.77.0.3 --save "" --protected-mode no --daemonize yes --logfile /dev/null && echo redis up on 10.77.0.3']);
    step('the routes every host agrees on (kept in etcd)', ['routes']);
    step('a program holding 192 MiB starts on h1 as a job (its own PID and network namespaces, output under /pj/h1/.pj-jobs); it keeps one connection to that redis; pinned: it moves only by hand',
      ['run', '--on', 'h1', '--name', 'ticker', '--policy', 'pin', '--', 'python3', '-c', TICKER]);
    spawnSync('sleep', ['3']);
    step('where it runs, what it uses', ['ps']);
    step('what it printed so far', ['logs', '--tail', '3', 'ticker']);
    step('move it, running, to h2 (hybrid: pages pre-copied into h2\'s page store while it runs, a short freeze, the rest after the resume)', ['mv', 'ticker', 'h2']);
    spawnSync('sleep', ['2']);
    step('it carries on where it was, on h2', ['logs', '--tail', '3', 'ticker']);
    step('and on to h3', ['mv', 'ticker', 'h3']);
    step('and back to h1, which kept its pages when it left: only what changed moves', ['mv', 'ticker', 'h1']);
    step('h1\'s page store', ['cache', '--host', 'h1']);
    spawnSync('sleep', ['2']);
    step('three moves later: no tick lost, none twice, the same redis connection counting them', ['logs', '--tail', '4', 'ticker']);
    step('pj ps: back on h1, moved three times', ['ps']);
    step('stop it', ['kill', 'ticker']);
    step('its exit status', ['wait', 'ticker'], 128 + 15);
    for (const h of ['h2', 'h3']) step(`32 MiB of data on ${h}'s own disk`, ['cluster', 'exec', h, '--', 'sh', '-c', 'head -c 32M /dev/urandom > /srv/data/blob && ls -l /srv/data/blob']);
    step('a job on h1 reads h2\'s data at 20 MiB/s for 10 s, then h3\'s, and so on: policy follow (the default) lets the managers place it',
      ['run', '--on', 'h1', '--name', 'reader', '--', 'python3', helperProgram('traffic-job.py'), '20', '10', '0', '/pj/h2/data/blob', '/pj/h3/data/blob']);
    waitUntilOn('reader', 'h2', 30);
    step('h1\'s manager saw its reads go to h2 and moved it there by itself: its reads are local now', ['top', '-n', '1']);
    waitUntilOn('reader', 'h3', 30);
    step('its reads went to h3: h2\'s manager moved it on to h3', ['top', '-n', '1']);
    step('the hosts: load, price, page-store use', ['hosts']);
    step('stop it', ['kill', 'reader']);
  }
} finally {
  cleanup();
}
process.exitCode = failed ? 1 : 0;
