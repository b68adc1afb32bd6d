// The mem-layer's view of a process's memory: present pages, their contents and
// XXH3-128 hashes, checked against a real python3 process with patterned memory.
import t from 'tap';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { repoRoot } from '../../common/repo-root.js';
import { HASH_BYTES, PAGE, hashPages, memoryRanges, readPages, scanPages } from '../../mem-layer/page-scan.js';

const MIB = 32;
const child = spawn('python3', [join(repoRoot(), 'test', 'helpers', 'patterned-memory.py'), String(MIB)], { stdio: ['ignore', 'pipe', 'inherit'] });
t.teardown(() => { child.kill('SIGKILL'); });
const at = await new Promise<{ written: number; untouched: number }>((resolve) => child.stdout.once('data', (d) => resolve(JSON.parse(String(d)))));
const pages = (MIB << 20) / PAGE;
const hex = (h: Buffer, i: number) => h.subarray(i * HASH_BYTES, (i + 1) * HASH_BYTES).toString('hex');

t.test('every written page is present, with the hash of its contents', async (t) => {
  const scan = await scanPages(child.pid!, [at.written, at.written + pages * PAGE]);
  t.equal(scan.addrs.length, pages, `${pages} pages present`);
  t.equal(scan.hashes.length, pages * HASH_BYTES);
  t.ok(scan.addrs.every((a, i) => Number(a) === at.written + i * PAGE), 'in address order');
  const expected = (i: number) => hashPages(Buffer.alloc(PAGE, i % 251)).toString('hex');
  t.ok([0, 1, 250, 251, 1000, pages - 1].every((i) => hex(scan.hashes, i) === expected(i)), 'each hash is that of the page\'s bytes');
  t.equal(new Set(Array.from({ length: pages }, (_, i) => hex(scan.hashes, i))).size, 251, '251 different contents, 251 different hashes');
});

t.test('untouched memory has no present pages; the whole process is scanned from its maps', async (t) => {
  t.equal((await scanPages(child.pid!, [at.untouched, at.untouched + (16 << 20)])).addrs.length, 0);
  const all = await scanPages(child.pid!);
  const mine = all.addrs.filter((a) => Number(a) >= at.written && Number(a) < at.written + pages * PAGE);
  t.equal(mine.length, pages, `a scan of all ${(await memoryRanges(child.pid!)).length / 2} carried mappings (${all.addrs.length} pages) holds the written ones`);
});

t.test('pages are read back as they are', async (t) => {
  const addrs = BigUint64Array.from([0, 7, 300].map((i) => BigInt(at.written + i * PAGE)));
  const data = readPages(child.pid!, addrs);
  t.equal(data.length, 3 * PAGE);
  t.same([data[0], data[PAGE], data[2 * PAGE + 100]], [0, 7, 300 % 251]);
});

t.test('a process that is gone is a clear error', async (t) => {
  await t.rejects(scanPages(999_999_999, [0, PAGE]), { code: 'ENOENT', syscall: 'open' });
});
