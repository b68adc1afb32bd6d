// A deliberately slow disk for tests: a FUSE filesystem (our own engine) with
// one file, `file`, whose FSYNC is answered only once RELEASE_FILE exists.
//   node slow-fuse.js MOUNTPOINT RELEASE_FILE
// Prints "mounted", then "fsync held" when an fsync waits. Ends when unmounted.
import { existsSync } from 'node:fs';
import { errnoError } from '../../common/errors.js';
import { silentLog } from '../../common/log.js';
import { FuseSession, type FuseRequest } from '../../fs-layer/fuse-session.js';
import { Op, attrOut, entryOut, openOut, type Attr } from '../../fs-layer/protocol.js';

const [mountpoint, releaseFile] = process.argv.slice(2);
let data = Buffer.alloc(0);
const now = BigInt(Date.now()) * 1_000_000n;
const attr = (ino: number): Attr => ino === 1
  ? { ino, size: 0, blocks: 0, atimeNs: now, mtimeNs: now, ctimeNs: now, mode: 0o040755, nlink: 2, uid: 0, gid: 0, rdev: 0, blksize: 4096 }
  : { ino, size: data.length, blocks: Math.ceil(data.length / 512), atimeNs: now, mtimeNs: now, ctimeNs: now, mode: 0o100644, nlink: 1, uid: 0, gid: 0, rdev: 0, blksize: 4096 };

const released = () => new Promise<void>((resolve) => {
  const poll = setInterval(() => { if (existsSync(releaseFile)) { clearInterval(poll); resolve(); } }, 20);
});

function handle({ header: h, body }: FuseRequest): Buffer[] | null | Promise<Buffer[]> {
  switch (h.opcode) {
    case Op.LOOKUP:
      if (body.toString('utf8', 0, body.indexOf(0)) !== 'file') throw errnoError('ENOENT');
      return [entryOut(2n, attr(2), 0)];
    case Op.GETATTR: case Op.SETATTR: return [attrOut(attr(Number(h.nodeid)), 0)];
    case Op.OPEN: return [openOut(1n, 0)];
    case Op.READ: {
      const off = Number(body.readBigUInt64LE(8));
      return [data.subarray(off, off + body.readUInt32LE(16))];
    }
    case Op.WRITE: {
      const off = Number(body.readBigUInt64LE(8));
      const chunk = body.subarray(40, 40 + body.readUInt32LE(16));
      if (data.length < off + chunk.length) data = Buffer.concat([data, Buffer.alloc(off + chunk.length - data.length)]);
      chunk.copy(data, off);
      const out = Buffer.alloc(8);
      out.writeUInt32LE(chunk.length, 0);
      return [out];
    }
    case Op.FSYNC:
      console.log('fsync held');
      return released().then(() => []);
    case Op.FLUSH: case Op.RELEASE: return [];
    case Op.FORGET: case Op.BATCH_FORGET: return null;
    default: throw errnoError('ENOSYS');
  }
}

await FuseSession.mount(mountpoint, handle, silentLog);
console.log('mounted');
