// The net-layer on a real 3-host cluster: servers (redis-server, an HTTP server)
// that listen only inside h2, reached by jobs on h1 through routes by address
// and by name; a published port used from h3 while its job moves; connections
// in both directions kept across two moves with every byte checked; a route to
// a host that is down, malformed DNS, and what is refused.
import t from 'tap';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { appendFileSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { helperProgram } from '../../common/repo-root.js';
import type { JobView, LedgerRow } from '../../migrator/index.js';
import { paths } from '../../manager/sim-cluster/layout.js';
import { startCluster, waitFor } from '../helpers/cluster.js';

const SERVER = '10.77.0.2'; // an address only h2 has
const DOWN = '10.78.0.5'; // routed to h3, whose manager the last test stops
const STAFF_UID = 4701; // the one user the route to staff.internal is for
const c = await startCluster(t, { hosts: 3, routes: ['10.77.0.0/16=h2', 'db.internal=h2', `${DOWN}/32=h3`, `staff.internal=h2:users=${STAFF_UID}`] });
const netns = (h: string) => `/run/netns/${c.file().hosts.find((x) => x.name === h)!.netns}`;
const helper = helperProgram;

// The servers: inside h2's network namespace only, on an address of its own; its own /etc/hosts names it.
const www = mkdtempSync(join(tmpdir(), 'pj-www-'));
t.teardown(() => rmSync(www, { recursive: true, force: true }));
writeFileSync(join(www, 'hello.txt'), 'hello from h2\n');
await c.exec('h2', ['ip', 'addr', 'add', `${SERVER}/32`, 'dev', 'lo']);
appendFileSync(paths(c.dir).hostEtcHosts('h2'), `${SERVER} db.internal\n${SERVER} staff.internal\n`);
const servers: ChildProcess[] = [
  spawn('nsenter', [`--net=${netns('h2')}`, 'redis-server', '--bind', SERVER, '--port', '6379', '--save', '', '--protected-mode', 'no'], { stdio: 'ignore' }),
  spawn('nsenter', [`--net=${netns('h2')}`, 'python3', '-m', 'http.server', '8080', '--bind', SERVER, '--directory', www], { stdio: 'ignore' }),
];
t.teardown(() => { for (const s of servers) s.kill('SIGKILL'); });
await waitFor(async () => (await c.exec('h2', ['redis-cli', '-h', SERVER, 'ping'])).stdout.trim() === 'PONG', 10_000);

async function run(cmd: string[], on = 'h1', extra: string[] = []): Promise<string> {
  // These tests place jobs by hand: pinned, so that the policy does not move them too.
  const r = await c.pj(['run', '--on', on, '--policy', 'pin', ...extra, '--', ...cmd]);
  if (r.code !== 0) throw new Error(`pj run failed: ${r.stderr}`);
  return r.stdout.trim();
}
const jobOf = async (id: string) => (JSON.parse((await c.pj(['ps', '--json'])).stdout) as JobView[]).find((j) => j.id === id)!;
const logs = async (id: string) => (await c.pj(['logs', id])).stdout;
const ended = async (id: string, timeoutMs = 30_000) => { await waitFor(async () => (await jobOf(id)).state === 'exited', timeoutMs, 100); return logs(id); };
const mv = async (id: string, to: string) => {
  const r = await c.pj(['mv', id, to, '--json'], { timeoutMs: 120_000 });
  if (r.code !== 0) throw new Error(`pj mv ${to}: ${r.stderr}`);
};
interface Client {
  /** Its last line, "ok N failures F", and every failure before it. */
  result: Promise<string>;
  /** Resolves once it has had `n` answers (a multiple of 10). */
  answered(n: number): Promise<void>;
}
/** A client inside `host` (its namespace only), running in the background. */
function client(host: string, args: string[]): Client {
  const p = spawn('nsenter', [`--net=${netns(host)}`, 'python3', helper('net-client.py'), ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let closed = false;
  const watchers = new Set<() => void>();
  const grew = (d: Buffer) => { out += d; watchers.forEach((w) => w()); };
  p.stdout.on('data', grew);
  p.stderr.on('data', grew);
  const result = new Promise<string>((resolve) => p.on('close', () => {
    closed = true;
    watchers.forEach((w) => w());
    resolve(out.replace(/^answered \d+\n/gm, ''));
  }));
  const answered = (n: number) => new Promise<void>((resolve, reject) => {
    const check = () => {
      if (new RegExp(`^answered ${n}$`, 'm').test(out)) resolve();
      else if (closed) reject(new Error(`the client ended before ${n} answers: ${out}`));
      else return;
      watchers.delete(check);
    };
    watchers.add(check);
    check();
  });
  return { result, answered };
}

t.test('a job on h1 reaches servers that only h2 can reach, by address and by name: curl, python3, redis-cli', async (t) => {
  const direct = await c.exec('h1', ['curl', '-sS', '-m', '2', `http://${SERVER}:8080/hello.txt`]);
  t.not(direct.code, 0, 'h1 itself cannot reach the server');
  const id = await run(['sh', '-c', [
    `curl -sS -m 5 http://${SERVER}:8080/hello.txt`,
    `python3 -c "import urllib.request; print(urllib.request.urlopen('http://db.internal:8080/hello.txt', timeout=5).read().decode().strip(), 'by name')"`,
    'redis-cli -h db.internal set pj-key stored-through-h2',
    `redis-cli -h ${SERVER} get pj-key`,
    'getent hosts db.internal',
  ].join('; ')]);
  const out = await ended(id);
  t.match(out, /^hello from h2\nhello from h2 by name\nOK\nstored-through-h2\n100\.\d+\.\d+\.\d+\s+db\.internal\n$/, `curl, python3 and redis-cli got through; the name has a synthetic address\n${out}`);
  t.equal((await c.exec('h2', ['redis-cli', '-h', SERVER, 'get', 'pj-key'])).stdout.trim(), 'stored-through-h2', 'the write reached the real server');
  const ledger = JSON.parse((await c.pj(['ledger', '--json', '--host', 'h1'])).stdout) as LedgerRow[];
  t.ok(ledger.some((r) => r.layer === 'net' && r.target === 'h2' && r.bytes > 0), 'pj ledger counts the bytes against h2');
});

t.test('a route for some users only: their jobs reach it through it, another user\'s job is refused at once', async (t) => {
  const users: Array<[string, number]> = [['pj-staff', STAFF_UID], ['pj-guest', STAFF_UID + 1]];
  for (const [u, uid] of users) spawnSync('useradd', ['-M', '-u', String(uid), '-s', '/usr/sbin/nologin', u]);
  t.teardown(() => { for (const [u] of users) spawnSync('userdel', [u]); });
  const fetch = `import socket
try:
    s = socket.create_connection(('staff.internal', 8080), timeout=10); s.sendall(b'GET /hello.txt HTTP/1.0\\r\\n\\r\\n')
    print('got:', s.makefile().read().splitlines()[-1])
except OSError as e: print('refused:', type(e).__name__)`;
  const as = async (u: string) => {
    const r = await c.exec('h1', ['setpriv', '--reuid', u, '--regid', u, '--init-groups', 'env', '-u', 'NODE_OPTIONS', 'pj', 'run', '--policy', 'pin', '--', 'python3', '-c', fetch]);
    if (r.code !== 0) throw new Error(`pj run as ${u}: ${r.stderr}`);
    return ended(r.stdout.trim());
  };
  t.equal(await as('pj-staff'), 'got: hello from h2\n', 'the route\'s user reaches the server only h2 reaches');
  t.match(await as('pj-guest'), /^refused: (ConnectionResetError|ConnectionRefusedError)\n$/, 'another user\'s job is refused');
  t.match((await c.pj(['routes'])).stdout, new RegExp(`staff\\.internal\\s+h2\\s+users=${STAFF_UID}`), 'pj routes says whom the route is for');
});

/** A server job on h1 publishing `port`, and a client on h3 making a new connection to it every 50 ms for `seconds`, once it had 10 answers. */
async function servedFromH3(port: number, seconds: number): Promise<{ id: string; using: Client }> {
  const id = await run(['python3', helper('net-job.py'), 'serve', '9000'], 'h1', ['--publish', `${port}:9000`]);
  const h1 = c.file().hosts.find((h) => h.name === 'h1')!.address;
  await waitFor(async () => /^ok [1-9]/.test(await client('h3', ['fresh', h1, String(port), '0.2']).result), 10_000, 200);
  const using = client('h3', ['fresh', h1, String(port), String(seconds)]);
  await using.answered(10);
  return { id, using };
}

t.test('a client on h3 keeps using a published port while the job moves h1 -> h2 -> h3', async (t) => {
  const { id, using } = await servedFromH3(9100, 8);
  await mv(id, 'h2');
  await using.answered(20); // answered from h2 too, before the next move
  await mv(id, 'h3');
  const out = await using.result;
  t.match(out, /^ok (\d+) failures 0\n$/, `every connection was answered: ${out}`);
  t.ok(Number(/ok (\d+)/.exec(out)?.[1]) > 40, 'and there were many');
  await c.pj(['kill', '-s', 'KILL', id]);
});

t.test("a published port's agent killed: clients that connect meanwhile wait in the holder's listening socket and are answered by the next agent", async (t) => {
  const { id, using } = await servedFromH3(9500, 6);
  t.equal((await c.pj(['cluster', 'stop', 'h1', '--signal', 'KILL'])).code, 0, "h1's agent killed");
  // The client's next connection is in the port's accept queue, with no one to take it.
  const queued = async () => Number(/LISTEN\s+(\d+)/.exec((await c.exec('h1', ['ss', '-Hltn', 'sport = :9500'])).stdout)?.[1] ?? 0);
  await waitFor(async () => (await queued()) > 0, 10_000, 50);
  t.pass('a client connected while h1 has no agent');
  t.equal((await c.pj(['cluster', 'start', 'h1'])).code, 0, "h1's agent started again");
  t.match(readFileSync(join(paths(c.dir).hostState('h1'), 'agent.log'), 'utf8'), /port published again with the listening socket the holder kept/, 'the new agent listens with the socket the holder kept');
  const out = await using.result;
  t.match(out, /^ok (\d+) failures 0\n$/, `every connection was answered: ${out}`);
  await c.pj(['kill', '-s', 'KILL', id]);
});

t.test('--publish-on all opens the port on every host; a client of each host reaches the job, also after it moves', async (t) => {
  const id = await run(['python3', helper('net-job.py'), 'serve', '9000'], 'h1', ['--publish', '9400:9000', '--publish-on', 'all']);
  const answered = async (host: string) => /^ok 1 failures 0\n$/.test(await client('h1', ['burst', c.file().hosts.find((h) => h.name === host)!.address, '9400', '1']).result);
  for (const host of ['h1', 'h2', 'h3']) {
    await waitFor(() => answered(host), 10_000, 200);
    t.pass(`port 9400 of ${host} reaches the job on h1`);
  }
  await mv(id, 'h3');
  for (const host of ['h1', 'h2', 'h3']) t.ok(await answered(host), `after the move to h3, ${host}'s port still reaches it`);
  await c.pj(['kill', '-s', 'KILL', id]);
});

t.test('a connection to redis on h2 and one from a client on h3 stay open through two moves: no byte lost or repeated', async (t) => {
  const before = Number((await c.exec('h2', ['redis-cli', '-h', SERVER, 'get', 'pj-seq'])).stdout.trim() || 0);
  const id = await run(['python3', helper('net-job.py'), 'both', '9000', 'db.internal', '6379'], 'h1', ['--publish', '9200:9000']);
  await waitFor(async () => /incr \d+/.test(await logs(id)), 10_000);
  const h1 = c.file().hosts.find((h) => h.name === 'h1')!.address;
  await waitFor(async () => /^ok [1-9]/.test(await client('h3', ['fresh', h1, '9200', '0.2']).result), 10_000, 200); // published within a second
  const streaming = client('h3', ['stream', h1, '9200', '7']);
  await streaming.answered(50);
  await mv(id, 'h2'); // the redis connection becomes local to its holder, the client's goes through a tunnel to h1
  await streaming.answered(100);
  await mv(id, 'h3'); // both through tunnels now
  const out = await streaming.result;
  t.match(out, /^ok \d+ failures 0\n$/, `the client's stream went on, every answer in sequence: ${out.trim()}`);
  await c.pj(['kill', '-s', 'KILL', id]);
  await waitFor(async () => (await jobOf(id)).state === 'exited', 10_000);
  const lines = (await logs(id)).split('\n').filter(Boolean);
  t.notOk(lines.some((l) => l.startsWith('GAP')), 'the job saw every client line in order');
  const incrs = lines.filter((l) => l.startsWith('incr ')).map((l) => Number(l.slice(5)));
  t.same(incrs, incrs.map((_, i) => incrs[0] + i), `${incrs.length} INCRs answered in sequence over one connection`);
  t.ok(incrs[0] === before + 1, 'starting right after the value before');
  const server = Number((await c.exec('h2', ['redis-cli', '-h', SERVER, 'get', 'pj-seq'])).stdout.trim());
  t.ok(server - incrs.at(-1)! <= 1, `redis counted what the job saw (${server} vs ${incrs.at(-1)}; one INCR may have been in flight at the kill)`);
  t.equal((await jobOf(id)).moves, 2);
});

/**
 * A job on h1 whose every tick asks redis on h2 (the route's holder) to count it, over one connection
 * (a lost connection ends the job); `ticks()`: each tick's number and redis's count so far.
 */
async function tickingJob(counter: string): Promise<{ id: string; ticks: () => Promise<number[][]> }> {
  const id = await run(['python3', '-c', `import socket, time
redis = socket.create_connection(('${SERVER}', 6379))
replies = redis.makefile('rb')
for i in range(10**9):
    redis.sendall(b'INCR ${counter}\\r\\n')
    print('tick', i, int(replies.readline()[1:]), flush=True)
    time.sleep(0.05)`]);
  const ticks = async () => (await logs(id)).split('\n').filter((l) => l.startsWith('tick ')).map((l) => l.split(' ').slice(1).map(Number));
  await waitFor(async () => (await ticks()).length > 5, 10_000);
  return { id, ticks };
}
/** Whether redis counted each tick once: its count and the tick's number always the same distance apart. */
const countedOnce = (all: number[][]) => all.every(([i, counted]) => counted - i === all[0][1] - all[0][0]);

t.test('a holder slow to end a tunnel (its manager stopped 8 s) delays the move; one slower than the job waits (20 s) makes it give the move up; the connection is kept', async (t) => {
  const { id, ticks } = await tickingJob('slow-holder');
  const log = join(paths(c.dir).hostState('h1'), 'agent.log');
  const detaches = () => readFileSync(log, 'utf8').split('\n').filter((l) => l.includes('"op":"net-detach"') && l.includes('detaching')).length;
  const before = detaches();
  const h2 = c.file().hosts.find((h) => h.name === 'h2')!.agentPid!;
  process.kill(h2, 'SIGSTOP');
  let moving: ReturnType<typeof c.pj> | undefined;
  try {
    moving = c.pj(['mv', id, 'h3', '--mode', 'stop-copy'], { timeoutMs: 120_000 });
    await waitFor(async () => detaches() > before, 30_000, 100);
    await new Promise((r) => setTimeout(r, 8000)); // the fault: longer than the 5 s the job's init once waited
  } finally {
    process.kill(h2, 'SIGCONT');
  }
  const r = await moving;
  t.equal(r.code, 0, `the move went on once h2 answered: ${r.stdout}${r.stderr}`);
  const n = (await ticks()).length;
  await waitFor(async () => (await ticks()).length > n + 10, 30_000);
  const all = await ticks();
  const j = await jobOf(id);
  t.same([j.state, j.host], ['running', 'h3'], 'the job runs on h3');
  t.ok(countedOnce(all), `redis counted every tick once, over the same connection (${all.length} ticks)`);

  // Longer than the job's init waits for its tunnels (20 s): the init keeps the tunnel and the move is given up.
  process.kill(h2, 'SIGSTOP');
  let given: Awaited<ReturnType<typeof c.pj>>;
  try {
    given = await c.pj(['mv', id, 'h1', '--mode', 'stop-copy'], { timeoutMs: 120_000 });
  } finally {
    process.kill(h2, 'SIGCONT');
  }
  t.not(given.code, 0, 'the move was given up');
  t.match(given.stderr, /PJ_ERR_MIGRATION_ABORTED: job \w+ stays on h3: the holders of 1 of its connections did not end their tunnels within 20 s/, given.stderr.trim());
  const k = (await ticks()).length;
  await waitFor(async () => (await ticks()).length > k + 20, 30_000); // on through h2's late pause, which makes the init ask for its tunnel again
  const after = await ticks();
  t.same([(await jobOf(id)).state, (await jobOf(id)).host], ['running', 'h3'], 'the job runs on h3 still');
  t.ok(countedOnce(after), `redis counted every tick once, over the same connection (${after.length} ticks)`);
  await c.pj(['kill', '-s', 'KILL', id]);
});

/** The pid of a host's connection holder, from its log (the last one started). */
const holderPid = (h: string) => Number([...readFileSync(join(paths(c.dir).hostState(h), 'holder.log'), 'utf8').matchAll(/\(pid (\d+)\)/g)].at(-1)![1]);

t.test('the route holder\'s agent killed: the job\'s connection through it lives on; the restarted agent takes the holder over and the job moves with it', async (t) => {
  const { id, ticks } = await tickingJob('agent-killed');
  const holder = holderPid('h2');
  t.equal((await c.pj(['cluster', 'stop', 'h2', '--signal', 'KILL'])).code, 0, 'h2\'s agent killed');
  const n = (await ticks()).length;
  await waitFor(async () => (await ticks()).length > n + 40, 30_000);
  t.pass('redis answers the job through h2 while h2 has no agent');
  t.equal((await c.pj(['cluster', 'start', 'h2'])).code, 0, 'h2\'s agent started again');
  t.equal(holderPid('h2'), holder, 'the same holder holds h2\'s connections');
  t.match(readFileSync(join(paths(c.dir).hostState('h2'), 'agent.log'), 'utf8'), /took over the connection holder/, 'the new agent took it over');
  const doctor = JSON.parse((await c.pj(['doctor', '--json', '--host', 'h2'])).stdout) as Array<{ name: string; status: string; detail: string }>;
  const held = doctor.find((d) => d.name === 'pj-holder');
  t.ok(held?.status === 'ok' && /holds [1-9]\d* connections of jobs, [1-9]\d* through tunnels/.test(held.detail), `pj doctor: ${held?.detail}`);
  await mv(id, 'h3'); // the new agent pauses the tunnel for the move
  const m = (await ticks()).length;
  await waitFor(async () => (await ticks()).length > m + 10, 30_000);
  const all = await ticks();
  t.same([(await jobOf(id)).host, (await jobOf(id)).state], ['h3', 'running'], 'the job runs on h3');
  t.ok(countedOnce(all), `redis counted every tick once, over the same connection (${all.length} ticks)`);
  await c.pj(['kill', '-s', 'KILL', id]);
});

/** Open descriptors of a process (0 once it is gone). */
const fds = (pid: number) => { try { return readdirSync(`/proc/${pid}/fd`).length; } catch { return 0; } };
/** Descriptors an epoll instance of `pid` watches. */
const watched = (pid: number) => readdirSync(`/proc/${pid}/fdinfo`).reduce((n, fd) => {
  try { return n + (readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8').match(/^tfd:/gm)?.length ?? 0); } catch { return n; }
}, 0);
const rssMiB = (pid: number) => Number(/^VmRSS:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) / 1024;

t.test('connections leak nothing: descriptors, sockets and epoll entries return to where they were; the job still moves', async (t) => {
  const PUBLISHED = Number(process.env.PJ_LEAK_CONNECTIONS ?? 3000);
  const ROUTED = Number(process.env.PJ_LEAK_ROUTED ?? 1000);
  // The agents and the connection holders: the holders own the connections' outside ends.
  const agents = c.file().hosts.flatMap((h) => [{ name: `${h.name}'s agent`, pid: h.agentPid! }, { name: `${h.name}'s holder`, pid: holderPid(h.name) }]);
  const id = await run(['python3', helper('net-job.py'), 'answer', '9000'], 'h1', ['--publish', '9200:9000']);
  const h1 = c.file().hosts.find((h) => h.name === 'h1')!.address;
  const burst = async (n: number) => {
    const out = await client('h3', ['burst', h1, '9200', String(n)]).result;
    t.match(out, new RegExp(`^ok ${n} failures 0\\n$`), `${n} connections to the published port answered: ${out.trim()}`);
  };
  await waitFor(async () => /^ok 1 /.test(await client('h3', ['burst', h1, '9200', '1']).result), 10_000, 200);
  await burst(50); // warm: what the first connections make once (tunnel server, buffers)
  const init = async () => (await jobOf(id)).pid;
  const start = { agents: agents.map((a) => fds(a.pid)), rss: agents.map((a) => rssMiB(a.pid)), relay: fds(await init()), epoll: watched(await init()) };
  /** Waits until every count is back where it started (a closed connection takes a moment to be let go everywhere). */
  const settled = async (what: string) => {
    const now = async () => ({ agents: agents.map((a) => fds(a.pid)), relay: fds(await init()), epoll: watched(await init()) });
    try {
      await waitFor(async () => { const n = await now(); return n.relay <= start.relay && n.epoll <= start.epoll && n.agents.every((f, i) => f <= start.agents[i] + 2); }, 15_000, 250);
      t.pass(`${what}: descriptors back (agents and holders ${JSON.stringify((await now()).agents)} from ${JSON.stringify(start.agents)}, relay ${start.relay}, its epoll ${start.epoll})`);
    } catch {
      t.fail(`${what}: descriptors did not come back: ${JSON.stringify(await now())} from ${JSON.stringify(start)}`);
    }
  };
  await burst(PUBLISHED);
  await settled(`${PUBLISHED} connections, the job on the publishing host`);
  await mv(id, 'h2');
  await burst(50); // what the move and the first tunnels make once (the init's channel on h2, mesh connections)
  Object.assign(start, { agents: agents.map((a) => fds(a.pid)), relay: fds(await init()), epoll: watched(await init()) });
  await burst(PUBLISHED);
  await settled(`${PUBLISHED} connections, the job elsewhere (through a tunnel)`);
  const routed = await run(['python3', '-c', `
import urllib.request
for i in range(${ROUTED}): urllib.request.urlopen('http://${SERVER}:8080/hello.txt', timeout=10).read()
print('fetched', ${ROUTED})`]);
  t.match(await ended(routed, Math.max(30_000, ROUTED * 30)), new RegExp(`fetched ${ROUTED}`), `${ROUTED} routed connections from a job on h1 through h2`);
  await settled(`${ROUTED} routed connections`);
  const h2 = agents.find((a) => a.name === 'h2\'s agent')!;
  const closeWait = (await c.exec('h2', ['ss', '-Htan', 'state', 'close-wait'])).stdout.split('\n').filter(Boolean).length;
  t.ok(closeWait <= 2, `h2 holds ${closeWait} sockets in CLOSE-WAIT`);
  // A leak as the one this test was written for (~65 KiB a connection: 917 MB at 14,000) would add
  // hundreds of MiB here; V8's heap alone moves by tens (seen: +24 to +83 MiB after these connections).
  agents.forEach((a, i) => t.ok(rssMiB(a.pid) < start.rss[i] + 128, `${a.name}: ${Math.round(rssMiB(a.pid))} MiB resident, from ${Math.round(start.rss[i])}`));
  t.ok(fds(h2.pid) > 0, 'h2\'s agent lives');
  await mv(id, 'h3');
  await burst(10);
  t.pass('the job moved on and answers');
  await c.pj(['kill', '-s', 'KILL', id]);
});

t.test('refusals: a route to a host that is down ends the connection at once, malformed DNS leaves the resolver serving, UDP is refused', async (t) => {
  t.equal((await c.pj(['cluster', 'stop', 'h3'])).code, 0, "h3's manager is down");
  t.teardown(async () => { await c.pj(['cluster', 'start', 'h3']); });
  const id = await run(['python3', '-c', `
import socket, time, os
t0 = time.time()
try:
    s = socket.create_connection(('${DOWN}', 80), timeout=30); s.sendall(b'x'); print('read', s.recv(10))
except OSError as e: print('down:', type(e).__name__, round(time.time() - t0, 1))
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.settimeout(1)
for junk in [b'', b'\\x00', os.urandom(11), os.urandom(300), b'\\x12\\x34\\x01\\x00\\x00\\x01' + b'\\xff' * 40]:
    u.sendto(junk, ('10.255.255.53', 53))
print('resolves:', socket.gethostbyname('db.internal').startswith('100.'))
try: u.sendto(b'x', ('8.8.8.8', 123)); print('udp sent')
except OSError as e: print('udp:', e.strerror)
`]);
  const out = await ended(id);
  const m = /down: (ConnectionResetError|ConnectionRefusedError) ([\d.]+)/.exec(out);
  t.ok(m, `the connection through h3 failed with a reset or refusal: ${out}`);
  t.ok(Number(m?.[2]) < 10, `within the deadline (${m?.[2]} s)`);
  t.match(out, /resolves: True/, 'the resolver still answers after malformed packets');
  t.match(out, /udp: Operation not permitted/, 'UDP to anything but DNS is refused with EPERM');
});
