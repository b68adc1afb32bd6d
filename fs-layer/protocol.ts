// The FUSE kernel protocol as we speak it (include/uapi/linux/fuse.h, 7.40+):
// opcodes, the request header, and encoders for the reply structs we send.
// All little-endian, structs padded to 8 bytes.

export const FUSE_KERNEL_VERSION = 7;
export const FUSE_KERNEL_MINOR_VERSION = 40;
export const FUSE_ROOT_ID = 1;

export const Op = {
  LOOKUP: 1, FORGET: 2, GETATTR: 3, SETATTR: 4, READLINK: 5, SYMLINK: 6, MKNOD: 8, MKDIR: 9,
  UNLINK: 10, RMDIR: 11, RENAME: 12, LINK: 13, OPEN: 14, READ: 15, WRITE: 16, STATFS: 17,
  RELEASE: 18, FSYNC: 20, SETXATTR: 21, GETXATTR: 22, LISTXATTR: 23, REMOVEXATTR: 24, FLUSH: 25,
  INIT: 26, OPENDIR: 27, READDIR: 28, RELEASEDIR: 29, FSYNCDIR: 30, GETLK: 31, SETLK: 32, SETLKW: 33,
  ACCESS: 34, CREATE: 35, INTERRUPT: 36, BMAP: 37, DESTROY: 38, IOCTL: 39, POLL: 40,
  BATCH_FORGET: 42, FALLOCATE: 43, READDIRPLUS: 44, RENAME2: 45, LSEEK: 46, COPY_FILE_RANGE: 47,
  SYNCFS: 50, TMPFILE: 51, STATX: 52,
} as const;
export const opName = new Map<number, string>(Object.entries(Op).map(([k, v]) => [v, k]));

// INIT flags (flags, and flags2 = bits 32..63).
export const InitFlag = {
  ASYNC_READ: 1 << 0, POSIX_LOCKS: 1 << 1, ATOMIC_O_TRUNC: 1 << 3, EXPORT_SUPPORT: 1 << 4, BIG_WRITES: 1 << 5,
  DONT_MASK: 1 << 6, FLOCK_LOCKS: 1 << 10, AUTO_INVAL_DATA: 1 << 12, DO_READDIRPLUS: 1 << 13, READDIRPLUS_AUTO: 1 << 14,
  ASYNC_DIO: 1 << 15, WRITEBACK_CACHE: 1 << 16, PARALLEL_DIROPS: 1 << 18, MAX_PAGES: 1 << 22, INIT_EXT: 1 << 30,
} as const;
export const InitFlag2 = { PASSTHROUGH: 1 << (37 - 32) } as const;

export const FOPEN_DIRECT_IO = 1 << 0;
export const FOPEN_KEEP_CACHE = 1 << 1;
export const FOPEN_PASSTHROUGH = 1 << 7;

export const FATTR = { MODE: 1 << 0, UID: 1 << 1, GID: 1 << 2, SIZE: 1 << 3, ATIME: 1 << 4, MTIME: 1 << 5, FH: 1 << 6, ATIME_NOW: 1 << 7, MTIME_NOW: 1 << 8 } as const;

export const IN_HEADER = 40;
export const OUT_HEADER = 16;

export interface RequestHeader { len: number; opcode: number; unique: bigint; nodeid: bigint; uid: number; gid: number; pid: number }

export function parseHeader(b: Buffer): RequestHeader {
  return {
    len: b.readUInt32LE(0), opcode: b.readUInt32LE(4), unique: b.readBigUInt64LE(8), nodeid: b.readBigUInt64LE(16),
    uid: b.readUInt32LE(24), gid: b.readUInt32LE(28), pid: b.readUInt32LE(32),
  };
}

/** NUL-terminated strings packed one after another (names in LOOKUP, RENAME, SYMLINK...). */
export function cStrings(b: Buffer, count: number): string[] {
  const out: string[] = [];
  let off = 0;
  for (let i = 0; i < count; i++) {
    const end = b.indexOf(0, off);
    if (end < 0) throw Object.assign(new Error('unterminated name in request'), { code: 'EINVAL' });
    out.push(b.toString('utf8', off, end));
    off = end + 1;
  }
  return out;
}

export function outHeader(len: number, error: number, unique: bigint): Buffer {
  const h = Buffer.alloc(OUT_HEADER);
  h.writeUInt32LE(len, 0);
  h.writeInt32LE(error, 4);
  h.writeBigUInt64LE(unique, 8);
  return h;
}

/** Attributes as the fs-layer passes them around (and over the mesh). Times in ns. */
export interface Attr {
  ino: number; size: number; blocks: number; atimeNs: bigint; mtimeNs: bigint; ctimeNs: bigint;
  mode: number; nlink: number; uid: number; gid: number; rdev: number; blksize: number;
}

export const ATTR_SIZE = 88;

export function writeAttr(b: Buffer, off: number, a: Attr): void {
  b.writeBigUInt64LE(BigInt(a.ino), off);
  b.writeBigUInt64LE(BigInt(a.size), off + 8);
  b.writeBigUInt64LE(BigInt(a.blocks), off + 16);
  const times = [a.atimeNs, a.mtimeNs, a.ctimeNs];
  times.forEach((t, i) => {
    b.writeBigUInt64LE(t / 1_000_000_000n, off + 24 + 8 * i);
    b.writeUInt32LE(Number(t % 1_000_000_000n), off + 48 + 4 * i);
  });
  b.writeUInt32LE(a.mode, off + 60);
  b.writeUInt32LE(a.nlink, off + 64);
  b.writeUInt32LE(a.uid, off + 68);
  b.writeUInt32LE(a.gid, off + 72);
  b.writeUInt32LE(a.rdev, off + 76);
  b.writeUInt32LE(a.blksize, off + 80);
  b.writeUInt32LE(0, off + 84);
}

function writeValid(b: Buffer, off: number, seconds: number): void {
  b.writeBigUInt64LE(BigInt(Math.floor(seconds)), off);
}

/** fuse_entry_out: 40 bytes then the attr (128 in all). */
export function entryOut(nodeid: bigint, attr: Attr, validS: number): Buffer {
  const b = Buffer.alloc(40 + ATTR_SIZE);
  b.writeBigUInt64LE(nodeid, 0);
  b.writeBigUInt64LE(0n, 8); // generation
  writeValid(b, 16, validS); // entry_valid
  writeValid(b, 24, validS); // attr_valid
  b.writeUInt32LE(Math.round((validS % 1) * 1e9), 32);
  b.writeUInt32LE(Math.round((validS % 1) * 1e9), 36);
  writeAttr(b, 40, attr);
  return b;
}

/** fuse_attr_out: 16 bytes then the attr. */
export function attrOut(attr: Attr, validS: number): Buffer {
  const b = Buffer.alloc(16 + ATTR_SIZE);
  writeValid(b, 0, validS);
  b.writeUInt32LE(Math.round((validS % 1) * 1e9), 8);
  writeAttr(b, 16, attr);
  return b;
}

/** fuse_open_out. */
export function openOut(fh: bigint, openFlags: number, backingId = 0): Buffer {
  const b = Buffer.alloc(16);
  b.writeBigUInt64LE(fh, 0);
  b.writeUInt32LE(openFlags, 8);
  b.writeInt32LE(backingId, 12);
  return b;
}

/** One fuse_dirent (or, with `entry`, a fuse_direntplus); undefined when it does not fit in `room`. */
export function dirent(name: string, ino: number, nextOffset: number, type: number, room: number, entry?: Buffer): Buffer | undefined {
  const nameBuf = Buffer.from(name, 'utf8');
  const head = entry ? entry.length : 0;
  const size = head + ((24 + nameBuf.length + 7) & ~7);
  if (size > room) return undefined;
  const b = Buffer.alloc(size);
  if (entry) entry.copy(b, 0);
  b.writeBigUInt64LE(BigInt(ino), head);
  b.writeBigUInt64LE(BigInt(nextOffset), head + 8);
  b.writeUInt32LE(nameBuf.length, head + 16);
  b.writeUInt32LE(type, head + 20);
  nameBuf.copy(b, head + 24);
  return b;
}

export interface StatfsInfo { blocks: number; bfree: number; bavail: number; files: number; ffree: number; bsize: number; namelen: number; frsize: number }

export function statfsOut(s: StatfsInfo): Buffer {
  const b = Buffer.alloc(80);
  [s.blocks, s.bfree, s.bavail, s.files, s.ffree].forEach((v, i) => b.writeBigUInt64LE(BigInt(v), 8 * i));
  b.writeUInt32LE(s.bsize, 40);
  b.writeUInt32LE(s.namelen, 44);
  b.writeUInt32LE(s.frsize, 48);
  return b;
}

/** fuse_lk_out: the conflicting lock (type F_UNLCK when none); `end` at or past `toEof` means to the end. */
export function lkOut(lk: { type: number; start: number; end: number }, toEof = Number.MAX_SAFE_INTEGER): Buffer {
  const b = Buffer.alloc(24);
  b.writeBigUInt64LE(BigInt(lk.start), 0);
  b.writeBigUInt64LE(lk.end >= toEof ? 0x7fffffffffffffffn : BigInt(lk.end), 8);
  b.writeUInt32LE(lk.type, 16);
  return b;
}
