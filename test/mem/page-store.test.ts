// The page store on a real folder: pages come back as they went in, survive a
// restart, stay within the byte bound (least recently used segments first),
// pinned pages are never evicted, and a damaged page counts as missing.
import t from 'tap';
import { mkdtempSync, openSync, rmSync, writeSync, closeSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PAGE, HASH_BYTES, hashAt, hashPages } from '../../mem-layer/page-scan.js';
import { PageStore } from '../../mem-layer/page-store.js';

const dir = mkdtempSync(join(tmpdir(), 'pj-store-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const pages = (n: number) => { const data = randomBytes(n * PAGE); return { data, hashes: hashPages(data) }; };
const page = (d: Buffer, i: number) => d.subarray(i * PAGE, (i + 1) * PAGE);
const RECORD = HASH_BYTES + PAGE;

t.test('pages come back by hash, once each, and after a restart', async (t) => {
  const a = pages(100);
  let s = new PageStore(join(dir, 'a'), 64 << 20);
  t.equal(s.put(a.hashes, a.data), 100);
  t.equal(s.put(a.hashes, a.data), 0, 'pages already there are not stored twice');
  t.ok([0, 42, 99].every((i) => s.get(hashAt(a.hashes, i))!.equals(page(a.data, i))));
  const b = pages(3);
  t.same(s.missing(Buffer.concat([hashAt(a.hashes, 5), hashAt(b.hashes, 0), hashAt(a.hashes, 6), hashAt(b.hashes, 2)])), [1, 3], 'missing() names the unknown ones');
  s.close();
  s = new PageStore(join(dir, 'a'), 64 << 20);
  t.equal(s.stats().pages, 100, 'the index is rebuilt from the segments');
  t.ok(s.get(hashAt(a.hashes, 77))!.equals(page(a.data, 77)));
  s.close();
});

t.test('the byte bound holds; the least recently used segments go first; pinned pages stay', async (t) => {
  const limit = 8 * 16 * RECORD;
  const s = new PageStore(join(dir, 'b'), limit, 16);
  const first = pages(16);
  s.put(first.hashes, first.data);
  const unpin = s.pin(first.hashes);
  const hot = pages(16);
  s.put(hot.hashes, hot.data);
  for (let i = 0; i < 60; i++) {
    const more = pages(16);
    s.put(more.hashes, more.data);
    s.get(hashAt(hot.hashes, 0)); // keeps its segment recently used
  }
  const st = s.stats();
  t.ok(st.bytes <= limit, `${st.bytes} bytes stored, bound ${limit}`);
  t.ok(st.evictedSegments >= 50, `${st.evictedSegments} segments evicted`);
  t.ok(s.get(hashAt(first.hashes, 3))?.equals(page(first.data, 3)), 'a pinned page is still there');
  t.ok(s.get(hashAt(hot.hashes, 5))?.equals(page(hot.data, 5)), 'a recently used segment is still there');
  unpin();
  for (let i = 0; i < 10; i++) { const more = pages(16); s.put(more.hashes, more.data); }
  t.equal(s.get(hashAt(first.hashes, 3)), undefined, 'once unpinned, it can go');
  s.close();
});

t.test('a damaged page counts as missing', async (t) => {
  const s = new PageStore(join(dir, 'c'), 64 << 20);
  const a = pages(4);
  s.put(a.hashes, a.data);
  s.close();
  const fd = openSync(join(dir, 'c', 'seg-1.pages'), 'r+');
  writeSync(fd, Buffer.from('garbage'), 0, 7, 2 * RECORD + HASH_BYTES + 100);
  closeSync(fd);
  const again = new PageStore(join(dir, 'c'), 64 << 20);
  t.equal(again.get(hashAt(a.hashes, 2)), undefined);
  t.ok(again.get(hashAt(a.hashes, 1))?.equals(page(a.data, 1)));
  again.close();
});
