// The pager against a real userfaultfd, handed over the way CRIU's restore
// hands one to its lazy-pages daemon (test/helpers/uffd-task.py): pages held
// until faulted, pages installed in the background, and pages fetched on a
// fault report; every page must hold what was supplied. A pager that dies (its
// process SIGKILLed) leaves the task to its keeper, and the next pager adopts it.
import t, { type Test } from 'tap';
import { spawn } from 'node:child_process';
import { closeSync, existsSync, mkdtempSync, openSync, readdirSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { repoRoot } from '../../common/repo-root.js';
import { PAGE, hashPages } from '../../mem-layer/page-scan.js';
import { PageStore } from '../../mem-layer/page-store.js';
import { Pager } from '../../mem-layer/pager.js';
import { pattern } from '../helpers/page-pattern.js';

const dir = mkdtempSync(join(tmpdir(), 'pj-pager-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const MIB = 16;
const PAGES = (MIB << 20) / PAGE;


/** A task handed to `pager`; `go` has it touch every page and resolves with what it measured. */
async function startTask(t: Test, pager: Pager, cpu?: number) {
  const child = spawn('python3', [join(repoRoot(), 'test', 'helpers', 'uffd-task.py'), pager.socketPath, String(MIB), ...(cpu === undefined ? [] : [String(cpu)])], { stdio: ['pipe', 'pipe', 'inherit'] });
  t.teardown(() => { child.kill('SIGKILL'); });
  const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
  const arrived = new Promise<number>((resolve) => pager.once('task', resolve));
  const { pid, addr } = JSON.parse((await lines.next()).value) as { pid: number; addr: number };
  t.equal(await arrived, pid, 'the pager received the task\'s userfaultfd');
  const go = async () => {
    child.stdin.write('go\n');
    return JSON.parse((await lines.next()).value) as { p50_us: number; p99_us: number; bad: number };
  };
  return { pid, addr, go };
}

const all = Array.from({ length: PAGES }, (_, i) => i);

t.test('pages held until faulted: every first touch is a fault served from what was supplied', async (t) => {
  const pager = Pager.listen(join(dir, 'held.socket'));
  t.teardown(() => pager.stop());
  const task = await startTask(t, pager);
  const p = pattern(task.addr, all);
  pager.supply(task.pid, p.addrs, p.data, false);
  const r = await task.go();
  t.equal(r.bad, 0, `all ${PAGES} pages hold what was supplied`);
  const s = pager.stats();
  t.same([s.faults, s.faultsOnSupplied, s.installed, s.waiting], [PAGES, PAGES, PAGES, 0],
    `every page faulted once and was installed from memory: touch p50 ${r.p50_us} us, p99 ${r.p99_us} us; service p50 ${(s.localP50Ns / 1000).toFixed(1)} us`);
});

t.test('pages supplied in the background are all installed, correctly', async (t) => {
  const pager = Pager.listen(join(dir, 'background.socket'));
  t.teardown(() => pager.stop());
  const task = await startTask(t, pager);
  const p = pattern(task.addr, all);
  pager.supply(task.pid, p.addrs, p.data);
  const r = await task.go();
  t.equal(r.bad, 0);
  const s = pager.stats();
  t.same([s.installed, s.waiting], [PAGES, 0], `${s.faults} of the touches had to wait for their page`);
});

t.test('a fault on a page not supplied is reported; the page supplied then lets the task go on', async (t) => {
  const pager = Pager.listen(join(dir, 'fetch.socket'));
  t.teardown(() => pager.stop());
  const task = await startTask(t, pager);
  const reported: number[] = [];
  pager.on('fault', (pid, addr) => {
    const i = (addr - task.addr) / PAGE;
    reported.push(i);
    const p = pattern(task.addr, [i]);
    pager.supply(pid, p.addrs, p.data);
  });
  const r = await task.go();
  t.equal(r.bad, 0);
  t.equal(reported.length, PAGES, 'each page was asked for once');
  t.ok(reported.every((i, k) => i === k), 'in the order the task touched them');
  t.equal(pager.stats().installed, PAGES, `fetched through JavaScript: touch p50 ${r.p50_us} us, p99 ${r.p99_us} us`);
});

t.test('CPU placement: faults served with the pager on the task\'s CPU, on another, and unpinned', async (t) => {
  const placements = [['same CPU', 0, 0], ['other CPU', 0, 1], ['unpinned', -1, undefined]] as const;
  const seen: string[] = [];
  for (const [name, pagerCpu, taskCpu] of placements) {
    const pager = Pager.listen(join(dir, `cpu-${pagerCpu}-${taskCpu}.socket`), '', pagerCpu);
    const task = await startTask(t, pager, taskCpu);
    const p = pattern(task.addr, all);
    pager.supply(task.pid, p.addrs, p.data, false);
    const r = await task.go();
    const s = pager.stats();
    pager.stop();
    t.equal(r.bad, 0, `${name}: every page holds what was supplied`);
    seen.push(`${name}: service p50 ${(s.localP50Ns / 1000).toFixed(1)} us, p99 ${(s.localP99Ns / 1000).toFixed(1)} us; touch p50 ${r.p50_us} us`);
  }
  t.comment(seen.join('; ')); // figures, not claims: the benchmarks compare them
});

t.test('pages given by their place in the page store: the pager\'s thread reads and checks them; a damaged one is reported', async (t) => {
  const store = new PageStore(join(dir, 'store'), 1 << 30);
  t.teardown(() => store.close());
  const p = pattern(0, all);
  const hashes = hashPages(p.data);
  store.put(hashes, p.data);
  const damaged = 77;
  const fd = openSync(join(dir, 'store', readdirSync(join(dir, 'store'))[0]), 'r+');
  writeSync(fd, Buffer.alloc(16, 0xee), 0, 16, damaged * (PAGE + 16) + 16 + 100); // inside page 77's bytes
  closeSync(fd);
  const pager = Pager.listen(join(dir, 'stored.socket'));
  t.teardown(() => pager.stop());
  const task = await startTask(t, pager);
  const misses: number[] = [];
  pager.on('storeMiss', (pid, addr) => {
    const i = (addr - task.addr) / PAGE;
    misses.push(i);
    const q = pattern(task.addr, [i]);
    pager.supply(pid, q.addrs, q.data, true, true);
  });
  const { found, at } = store.locate(hashes);
  t.equal(found.length, PAGES);
  t.ok(pager.supplyStored(task.pid, BigUint64Array.from(found, (i) => BigInt(task.addr + i * PAGE)), at), 'the task is known: the pager takes them');
  const r = await task.go();
  t.equal(r.bad, 0, `all ${PAGES} pages hold what was stored: touch p50 ${r.p50_us} us, p99 ${r.p99_us} us`);
  t.same(misses, all.filter((i) => i % 251 === damaged), 'the damaged record was reported (for every page of that content: stored once), and the pages fetched instead');
  const s = pager.stats();
  t.same([s.installed, s.waiting], [PAGES, 0], `${s.faults} faults; served from the store p50 ${(s.localP50Ns / 1000).toFixed(1)} us`);
});

t.test('a pager killed with half the pages installed: the task waits in the keeper, and the next pager adopts it', async (t) => {
  const socket = join(dir, 'dying.socket');
  const keeper = join(dir, 'keeper.socket');
  const pager = spawn(process.execPath, [join(repoRoot(), 'dist', 'test', 'helpers', 'dying-pager.js'), socket, keeper], { stdio: ['pipe', 'pipe', 'inherit'] });
  t.teardown(() => { pager.kill('SIGKILL'); });
  const said = createInterface({ input: pager.stdout })[Symbol.asyncIterator]();
  // The task keeps no userfaultfd of its own, as CRIU's restored tasks: the pager's is the only one.
  while (!existsSync(socket)) await new Promise((r) => setTimeout(r, 10));
  const child = spawn('python3', [join(repoRoot(), 'test', 'helpers', 'uffd-task.py'), socket, String(MIB)], { stdio: ['pipe', 'pipe', 'inherit'], env: { ...process.env, UFFD_TASK_CLOSE: '1' } });
  t.teardown(() => { child.kill('SIGKILL'); });
  const task = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
  const { pid, addr } = JSON.parse((await task.next()).value) as { pid: number; addr: number };
  pager.stdin.write(`${JSON.stringify({ pid, addr, pages: PAGES / 2 })}\n`);
  t.equal((await said.next()).value, 'installed', 'the first pager installed half the pages');
  const dropped = PAGES / 8;
  child.stdin.write(`drop ${dropped}\n`);
  t.equal((await task.next()).value, 'dropped', `the task dropped its first ${dropped} pages`);
  t.equal((await said.next()).value, 'dropped', 'and the pager told the keeper');
  const gone = new Promise((r) => pager.once('exit', r));
  pager.kill('SIGKILL');
  await gone;

  // Without the keeper, the pages never installed would now read zero.
  const next = Pager.adopt(keeper);
  t.teardown(() => next.stop());
  t.equal(await new Promise<number>((resolve) => next.once('task', resolve)), pid, 'the next pager adopted the task from the keeper');
  const p = pattern(addr, all);
  next.supply(pid, p.addrs, p.data);
  child.stdin.write('go\n');
  const r = JSON.parse((await task.next()).value) as { bad: number };
  t.equal(r.bad, 0, `every page reads what it should: the ${dropped} dropped ones zero (not filled again), the rest the pattern`);
  const s = next.stats();
  t.same([s.installed, s.waiting], [PAGES, 0], 'every page counts as installed (those there already, too)');
});
