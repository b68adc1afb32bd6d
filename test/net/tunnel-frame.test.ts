// A tunnel's framing is written twice, in native/init/tunnel-frame.h (the relay, C) and
// net-layer/framing.ts: a C program built from the header reads what framing.ts frames, and
// framing.ts's Deframer reads what the header frames, data and the in-band EOF both ways.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { repoRoot } from '../../common/repo-root.js';
import { Deframer, EOF_FRAME, frame } from '../../net-layer/framing.js';

const dir = mkdtempSync(join(tmpdir(), 'pj-tunnel-frame-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const bin = join(dir, 'tunnel-frame-echo');
const cc = spawnSync('gcc', ['-Wall', '-o', bin, join(repoRoot(), 'test', 'helpers', 'tunnel-frame-echo.c')], { encoding: 'utf8' });
t.equal(cc.status, 0, `built from the header ${cc.stderr}`);

const chunks = [Buffer.from('hello'), randomBytes(200_000), Buffer.from([0, 0, 0, 0]), randomBytes(1)];
const r = spawnSync(bin, [], { input: Buffer.concat([...chunks.flatMap(frame), EOF_FRAME]), maxBuffer: 1 << 24 });
t.equal(r.status, 0, 'the C side read the stream to its end and wrote one back');
const seen = JSON.parse(r.stderr.toString()) as { header: number; max: number; frames: number[]; eof: boolean };
t.same([seen.frames, seen.eof], [chunks.map((c) => c.length), true], 'each frame framing.ts wrote, of any length, and the EOF frame, as the relay reads them');
t.equal(seen.header, EOF_FRAME.length, 'the header is as long on both sides');

const got: Buffer[] = [];
let eof = false;
new Deframer((d) => got.push(Buffer.from(d)), () => (eof = true)).push(r.stdout);
t.ok(eof, 'the relay\'s EOF frame reads as EOF');
t.ok(Buffer.concat(got).equals(Buffer.concat(chunks)), 'every byte the relay framed, in order');
t.equal(Math.max(...lengthsOf(r.stdout)), seen.max, `the relay's frames are at most ${seen.max} bytes`);

/** The lengths of the data frames in a framed stream. */
function lengthsOf(b: Buffer): number[] {
  const out: number[] = [];
  for (let i = 0; i + 4 <= b.length;) {
    const n = b.readUInt32LE(i);
    if (n) out.push(n);
    i += 4 + n;
  }
  return out;
}
