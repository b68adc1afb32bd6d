// What the pager needs from CRIU's images: which pages of each task a lazy
// dump left out (pagemap-<id>.img entries flagged PE_LAZY), so that it knows
// when a task's memory is all local. An image is two magics (u32 LE each),
// then records of a u32 LE length and a protobuf message: a PagemapHead, then
// PagemapEntry { vaddr = 1, nr_pages = 2 (u32, before 4.2), flags = 4,
// nr_pages = 5 (u64, from 4.2) }.
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { PjError, codes } from '../common/errors.js';

const IMG_COMMON_MAGIC = 0x54564319;
const PAGEMAP_MAGIC = 0x56084025;
const PE_LAZY = 1 << 1;

export interface LazyRange { vaddr: number; pages: number }

/** The protobuf fields of one message that are varints, by field number (the others are skipped). */
function varints(msg: Buffer): Map<number, number> {
  const out = new Map<number, number>();
  let at = 0;
  const varint = (): number => {
    let v = 0;
    for (let shift = 0; ; shift += 7) {
      if (at >= msg.length) throw new PjError(codes.PROTOCOL, 'a CRIU image ends inside a number');
      const b = msg[at++];
      v += (b & 0x7f) * 2 ** shift;
      if (!(b & 0x80)) return v;
    }
  };
  while (at < msg.length) {
    const key = varint();
    const wire = key & 7;
    if (wire === 0) out.set(Math.floor(key / 8), varint());
    else if (wire === 2) at += varint();
    else if (wire === 1) at += 8;
    else if (wire === 5) at += 4;
    else throw new PjError(codes.PROTOCOL, `unexpected protobuf wire type ${wire} in a CRIU image`);
  }
  return out;
}

/** The pages a lazy dump of task `id` (its pid in the job's namespace) left for the pager. */
export function lazyRanges(dir: string, id: number): LazyRange[] {
  const img = readFileSync(join(dir, `pagemap-${id}.img`));
  if (img.readUInt32LE(0) !== IMG_COMMON_MAGIC || img.readUInt32LE(4) !== PAGEMAP_MAGIC) throw new PjError(codes.PROTOCOL, `pagemap-${id}.img is not a CRIU pagemap image`);
  const out: LazyRange[] = [];
  let at = 8;
  for (let first = true; at + 4 <= img.length; first = false) {
    const len = img.readUInt32LE(at);
    const msg = img.subarray(at + 4, at + 4 + len);
    at += 4 + len;
    if (first) continue; // the PagemapHead
    const f = varints(msg);
    if ((f.get(4) ?? 0) & PE_LAZY) out.push({ vaddr: f.get(1) ?? 0, pages: f.get(5) ?? f.get(2) ?? 0 });
  }
  return out;
}

/** The tasks of a dump: the ids its pagemap images are named after. */
export function dumpedTasks(dir: string): number[] {
  return readdirSync(dir).map((n) => /^pagemap-(\d+)\.img$/.exec(n)?.[1]).filter((x): x is string => x !== undefined).map(Number).sort((a, b) => a - b);
}
