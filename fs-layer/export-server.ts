// The owner's side of /pj: the real syscalls on this host's exports, for local
// requests and for RPCs from other hosts alike. Every path is resolved with
// openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS) from the export's root, so
// nothing ("..", absolute symlinks, a directory swapped for a symlink) leads
// outside it. Name-level operations run on "/proc/self/fd/<parent fd>/<name>"
// with a single, checked name: the parent was resolved confined.
// Reads, writes, syncs and listings run on libuv's pool, never on the event
// loop: one slow disk (an fsync that takes seconds) must not stall every other
// request and page fetch this agent serves. A handle is closed only once the
// I/O under way on it is done, so that its descriptor is never reused under it.
import fs from 'node:fs';
import { promisify } from 'node:util';
import { O as C } from './open-flags.js';
import { posix } from 'node:path';
import { errnoError } from '../common/errors.js';
import { call, loadBinding, openBeneath } from '../native/loader.js';
import type { ExportInfo } from '../manager/cluster-state.js';
import { squashOf } from '../manager/exports.js';
import type { Attr, StatfsInfo } from './protocol.js';

export interface DirEntry { name: string; attr: Attr }
/** A page of a listing; `cursor` to ask for the next, absent at the end. */
export interface DirPage { entries: DirEntry[]; cursor?: number }
export interface OpenResult { handle: number; attr: Attr }
// Changes answer with the attributes they left behind (as NFS's post-op attributes do), so that the
// client's attribute cache stays right without asking again: the file's, and its directory's.
export interface Made { attr: Attr; dir: Attr }
export interface Created extends OpenResult { dir: Attr }
/** `ino`: what the name named, so that the client can forget that inode's cached attributes. */
export interface Removed { dir: Attr; ino: number }
export interface Renamed { fromDir: Attr; toDir: Attr }
export interface Written { size: number; attr: Attr }
/** A byte-range lock as FUSE describes it: `end` inclusive, LOCK_TO_EOF for "to the end". type: F_RDLCK 0, F_WRLCK 1, F_UNLCK 2. */
export interface LockRange { type: number; start: number; end: number }
export const LOCK_TO_EOF = Number.MAX_SAFE_INTEGER;
const F_UNLCK = 2;
const LOCK = { SH: 1, EX: 2, NB: 4, UN: 8 } as const;
/** The most a read returns (a shorter read, as read(2) may give): the reply stays well inside a mesh frame. */
export const MAX_READ = 4 << 20;
/** Entries a listing returns per call; a directory of any size is listed in pages, each its own request. */
export const READDIR_PAGE = 1024;
/** A listing nobody asks to go on with for this long is closed. */
const CURSOR_IDLE_MS = 30_000;

const readAt = promisify(fs.read);
const writeAt = promisify(fs.write);
const fsyncFd = promisify(fs.fsync);
const fdatasyncFd = promisify(fs.fdatasync);

/**
 * Who asked (the FUSE request's uid and gid): what they make is theirs, as on a local disk. uid and gid
 * numbers are the same on every host (as NFS's AUTH_SYS has them).
 */
export interface Caller { uid: number; gid: number }
const S_ISGID = 0o2000;
/** Characters of a path opened at once: at most 4 bytes each in UTF-8, well inside PATH_MAX (4096). */
const PATH_PART = 1000;

export interface AttrChanges { mode?: number; uid?: number; gid?: number; size?: number; atimeNs?: bigint | 'now'; mtimeNs?: bigint | 'now' }


export function attrFromStats(s: fs.BigIntStats): Attr {
  return {
    ino: Number(s.ino), size: Number(s.size), blocks: Number(s.blocks), atimeNs: s.atimeNs, mtimeNs: s.mtimeNs, ctimeNs: s.ctimeNs,
    mode: Number(s.mode), nlink: Number(s.nlink), uid: Number(s.uid), gid: Number(s.gid), rdev: Number(s.rdev), blksize: Number(s.blksize),
  };
}

/** A relative path inside an export, normalised; never absolute, never NUL. */
function cleanRel(rel: string): string {
  if (typeof rel !== 'string' || rel.includes('\0')) throw errnoError('EINVAL', 'bad path');
  const n = posix.normalize(rel).replace(/^\/+/, '');
  return n === '.' ? '' : n.replace(/\/+$/, '');
}

function checkName(name: string): void {
  if (!name || name === '.' || name === '..' || name.includes('/') || name.includes('\0')) throw errnoError('EINVAL', `bad name '${name}'`);
}

/** The open(2) flags of a request that openat2 accepts (it rejects unknown bits, e.g. the kernel's internal FMODE ones). */
const OPEN_FLAGS = C.O_ACCMODE | C.O_CREAT | C.O_EXCL | C.O_NOCTTY | C.O_TRUNC | C.O_APPEND | C.O_NONBLOCK | C.O_DSYNC | C.O_SYNC
  | C.O_DIRECT | C.O_DIRECTORY | C.O_NOFOLLOW | C.O_NOATIME;
const openFlags = (flags: number) => flags & OPEN_FLAGS;

const statFd = (fd: number) => attrFromStats(fs.fstatSync(fd, { bigint: true }));
/** A time for utimens: seconds and nanoseconds; "now" and "leave it" as it takes them. */
function timespec(t: bigint | 'now' | undefined): [number, number] {
  if (t === undefined) return [0, -2];
  if (t === 'now') return [0, -1];
  const nsec = ((t % 1_000_000_000n) + 1_000_000_000n) % 1_000_000_000n; // before 1970 too
  return [Number((t - nsec) / 1_000_000_000n), Number(nsec)];
}
const proc = (fd: number, name?: string) => (name === undefined ? `/proc/self/fd/${fd}` : `/proc/self/fd/${fd}/${name}`);

/**
 * Makes what this (root) process just made in folder `dirfd` what it would be had `caller` made it:
 * theirs, but with the folder's group in a setgid folder (the kernel gave it that already), and
 * exactly `mode` (not this process's umask; after the chown, which clears set-id bits); a folder
 * keeps the setgid bit it inherited. `made`: its name in the folder (no mode: a symlink), or an fd
 * of it. Changes go through the fd's /proc link, which names that inode: a name swapped for a
 * symlink meanwhile (by someone who may write in the folder) is never followed.
 */
function own(dirfd: number, made: string | number, caller: Caller | undefined, mode?: number): void {
  const chown = caller !== undefined && (caller.uid !== 0 || caller.gid !== 0);
  const setgidFolder = (fs.fstatSync(dirfd).mode & S_ISGID) !== 0;
  const gid = setgidFolder ? -1 : caller?.gid ?? -1;
  if (typeof made === 'string') {
    if (mode === undefined) { // a symlink: lchown never follows it, and it has no mode of its own
      if (chown) fs.lchownSync(proc(dirfd, made), caller!.uid, gid);
      return;
    }
    const fd = openBeneath(dirfd, made, C.O_PATH | C.O_NOFOLLOW);
    try {
      own(dirfd, fd, caller, mode);
    } finally {
      fs.closeSync(fd);
    }
    return;
  }
  const st = fs.fstatSync(made);
  if (st.isSymbolicLink()) throw errnoError('EIO', 'what was made was replaced by a symlink');
  if (chown) fs.chownSync(proc(made), caller!.uid, gid);
  if (mode !== undefined) fs.chmodSync(proc(made), (mode & 0o7777) | (st.isDirectory() && setgidFolder ? S_ISGID : 0));
}

/**
 * An open file; `busy`: I/O under way on the pool; `closing`: released meanwhile, closed when that is
 * done; `ordered`: the last write or sync, which the next one waits for (the pool runs what it is
 * given in any order, and an O_APPEND file's lines, or overlapping writes, must land as they came).
 */
interface Handle { fd: number; exp: Export; inode: string; client?: string; busy: number; closing?: boolean; ordered: Promise<unknown> }

class Export {
  readonly root: number;
  constructor(readonly info: ExportInfo) {
    this.root = fs.openSync(info.path, C.O_PATH | C.O_DIRECTORY | C.O_CLOEXEC);
  }
  writable(): void {
    if (this.info.readOnly) throw errnoError('EROFS', `export ${this.info.name} is read-only`);
  }
  /**
   * `rel` (cleaned; '' is the root) opened confined beneath the root. A path longer than the kernel
   * takes at once (PATH_MAX) is walked in parts, each confined beneath the folder before it: a
   * program deep in a tree uses short relative paths, and so must its owner.
   */
  open(rel: string, flags: number): number {
    let dirfd = this.root;
    let rest = rel || '.';
    const walked: number[] = [];
    try {
      while (rest.length > PATH_PART) {
        const cut = rest.lastIndexOf('/', PATH_PART);
        if (cut <= 0) throw errnoError('ENAMETOOLONG');
        dirfd = openBeneath(dirfd, rest.slice(0, cut), C.O_PATH | C.O_DIRECTORY);
        walked.push(dirfd);
        rest = rest.slice(cut + 1);
      }
      return openBeneath(dirfd, rest, flags);
    } finally {
      for (const fd of walked) fs.closeSync(fd);
    }
  }
  /** Runs `fn` in `rel`'s parent (see inParent); answers with the directory's attributes after it. */
  change(rel: string, fn: (dirfd: number, name: string) => void): Attr {
    return this.inParent(rel, (d, n) => {
      fn(d, n);
      return statFd(d);
    });
  }
  /** Runs `fn` with an O_PATH fd of `rel`'s parent directory and `rel`'s last name. */
  inParent<T>(rel: string, fn: (dirfd: number, name: string) => T): T {
    const clean = cleanRel(rel);
    const name = posix.basename(clean);
    checkName(name);
    const dir = posix.dirname(clean);
    const dirfd = this.open(dir, C.O_PATH | C.O_DIRECTORY);
    try {
      return fn(dirfd, name);
    } finally {
      fs.closeSync(dirfd);
    }
  }
  lstat(rel: string): Attr {
    const clean = cleanRel(rel);
    if (clean === '') return statFd(this.root);
    const fd = this.open(clean, C.O_PATH | C.O_NOFOLLOW);
    try {
      return statFd(fd);
    } finally {
      fs.closeSync(fd);
    }
  }
}

export class ExportServer {
  #exports = new Map<string, Export>();
  #handles = new Map<number, Handle>();
  /** Listings under way, by cursor. */
  #listings = new Map<number, { fd: number; dir: fs.Dir; timer?: NodeJS.Timeout }>();
  #nextCursor = 1;
  /** POSIX locks: one fd per (inode, lock owner), so that an owner's locks merge and other owners' conflict (OFD semantics). */
  #lockFds = new Map<string, { fd: number; inode: string }>();
  #nextHandle = 1;
  /** Whom this thread acts as (asPeer), while it does: what it makes is theirs already. */
  #actingAs: Caller | undefined;

  constructor(exports: ExportInfo[]) {
    for (const e of exports) if (e.kind === 'dir') this.#exports.set(e.name, new Export(e));
  }

  /**
   * Runs `fn`, an operation on export `exp` that host `peer` asks for its caller `who`, as the export
   * treats that host: refused (EACCES) to a host it is not for; as the export's anonymous user, with
   * no supplementary groups, for a squashed caller (root under root_squash, anyone under all_squash;
   * a caller not named counts as root), so that the kernel checks and owns what it does as it would
   * for that user. Other callers' requests were checked by their own host's kernel
   * (default_permissions), which knows their groups.
   */
  asPeer<T>(peer: string, who: Caller | undefined, exp: string, fn: () => T): T {
    const e = this.#exp(exp);
    if (e.info.hosts && !e.info.hosts.includes(peer)) throw errnoError('EACCES', `export ${exp} is not for ${peer}`);
    const anon = squashOf(e.info);
    if (anon.squash === 'none' || (anon.squash === 'root' && who !== undefined && who.uid !== 0)) return fn();
    call((ctx) => loadBinding().actAs(anon.uid, anon.gid, ctx));
    this.#actingAs = { uid: anon.uid, gid: anon.gid };
    try {
      return fn();
    } finally {
      this.#actingAs = undefined;
      loadBinding().actAsSelf();
    }
  }

  #exp(name: string): Export {
    const e = this.#exports.get(name);
    if (!e) throw errnoError('ENOENT', `no export named ${name}`);
    return e;
  }
  #handle(h: number) {
    const x = this.#handles.get(h);
    if (!x) throw errnoError('EBADF', `no open file handle ${h}`);
    return x;
  }
  #register(fd: number, exp: Export): OpenResult {
    const handle = this.#nextHandle++;
    const attr = statFd(fd);
    this.#handles.set(handle, { fd, exp, inode: `${exp.info.name}:${attr.ino}`, busy: 0, ordered: Promise.resolve() });
    return { handle, attr };
  }

  #lockFd(handle: number, owner: string): number {
    const h = this.#handle(handle);
    const key = `${h.inode}|${owner}`;
    let l = this.#lockFds.get(key);
    if (!l) {
      let fd: number;
      try {
        fd = fs.openSync(proc(h.fd), C.O_RDWR | C.O_CLOEXEC);
      } catch {
        fd = fs.openSync(proc(h.fd), C.O_RDONLY | C.O_CLOEXEC);
      }
      l = { fd, inode: h.inode };
      this.#lockFds.set(key, l);
    }
    return l.fd;
  }

  /** The first lock that would conflict with `lk` for `owner`, or type F_UNLCK when there is none. */
  getlk(handle: number, owner: string, lk: LockRange): LockRange {
    const len = lk.end >= LOCK_TO_EOF ? 0 : lk.end - lk.start + 1;
    const r = call((ctx) => loadBinding().ofdLock(this.#lockFd(handle, owner), 'get', lk.type, lk.start, len, ctx));
    return { type: r.type, start: r.start, end: r.type === F_UNLCK ? 0 : r.len === 0 ? LOCK_TO_EOF : r.start + r.len - 1 };
  }

  /** Takes or releases a lock without waiting: EAGAIN when another owner holds a conflicting one. flock locks belong to the open handle. */
  setlk(handle: number, owner: string, lk: LockRange, isFlock: boolean): void {
    if (isFlock) {
      const op = lk.type === F_UNLCK ? LOCK.UN : (lk.type === 0 ? LOCK.SH : LOCK.EX) | LOCK.NB;
      call((ctx) => loadBinding().flock(this.#handle(handle).fd, op, ctx));
      return;
    }
    const len = lk.end >= LOCK_TO_EOF ? 0 : lk.end - lk.start + 1;
    call((ctx) => loadBinding().ofdLock(this.#lockFd(handle, owner), 'set', lk.type, lk.start, len, ctx));
  }

  lstat(exp: string, rel: string): Attr { return this.#exp(exp).lstat(rel); }

  /**
   * A directory's entries with their attributes, READDIR_PAGE at a time: without `cursor` from the
   * start, else where the previous page ended. The listing stays open between pages (closed at its
   * end, or when nobody asks for CURSOR_IDLE_MS).
   */
  async readdir(exp: string, rel: string, cursor?: number): Promise<DirPage> {
    const at = cursor ?? this.#startListing(exp, rel);
    const l = this.#listings.get(at);
    if (!l) throw errnoError('EINVAL', `no listing ${at} (it ended, or was idle for ${CURSOR_IDLE_MS / 1000} s)`);
    clearTimeout(l.timer);
    const names: string[] = [];
    try {
      for (let d; names.length < READDIR_PAGE && (d = await l.dir.read()); ) names.push(d.name);
    } catch (err) {
      this.#endListing(at);
      throw err;
    }
    const stats = await Promise.all(names.map((name) => fs.promises.lstat(proc(l.fd, name), { bigint: true }).catch(() => undefined))); // removed meanwhile
    const entries = names.flatMap((name, i) => (stats[i] ? [{ name, attr: attrFromStats(stats[i]) }] : []));
    if (names.length < READDIR_PAGE) {
      this.#endListing(at);
      return { entries };
    }
    l.timer = setTimeout(() => this.#endListing(at), CURSOR_IDLE_MS).unref();
    return { entries, cursor: at };
  }

  #startListing(exp: string, rel: string): number {
    const fd = this.#exp(exp).open(cleanRel(rel), C.O_RDONLY | C.O_DIRECTORY);
    const cursor = this.#nextCursor++;
    try {
      // opendir(3) on its own descriptor: ours stays for the lstat of each name.
      this.#listings.set(cursor, { fd, dir: fs.opendirSync(proc(fd), { bufferSize: 256 }) });
    } catch (e) {
      fs.closeSync(fd);
      throw e;
    }
    return cursor;
  }

  #endListing(cursor: number): void {
    const l = this.#listings.get(cursor);
    if (!l) return;
    this.#listings.delete(cursor);
    clearTimeout(l.timer);
    l.dir.close().catch(() => {});
    fs.closeSync(l.fd);
  }

  /** Opens a file; the fd stays here (for remote reads and writes) under the returned handle. */
  open(exp: string, rel: string, flags: number): OpenResult {
    const e = this.#exp(exp);
    if ((flags & C.O_ACCMODE) !== C.O_RDONLY || flags & C.O_TRUNC) e.writable();
    // The daemon's own open drops O_DIRECT (the kernel handles direct I/O) and never follows a final symlink.
    const fd = e.open(cleanRel(rel), (openFlags(flags) & ~(C.O_CREAT | C.O_EXCL | C.O_DIRECT | C.O_NOCTTY)) | C.O_NOFOLLOW);
    return this.#register(fd, e);
  }

  fstat(handle: number): Attr { return statFd(this.#handle(handle).fd); }

  /** The real fd behind a handle, for local passthrough and fsync. */
  fd(handle: number): number { return this.#handle(handle).fd; }

  /** Creates and opens a file (opens it if it is there already and `flags` lacks O_EXCL: then it stays as it was). */
  create(exp: string, rel: string, flags: number, mode: number, caller?: Caller): Created {
    const e = this.#exp(exp);
    e.writable();
    let fd = -1;
    const dir = e.change(rel, (d, n) => {
      const open = (more: number) => openBeneath(d, n, (openFlags(flags) & ~(C.O_DIRECT | C.O_CREAT | C.O_EXCL)) | C.O_NOFOLLOW | more, mode & 0o7777);
      try {
        fd = open(C.O_CREAT | C.O_EXCL);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST' || flags & C.O_EXCL) throw err;
        fd = open(0);
        return;
      }
      try {
        own(d, fd, this.#actingAs ?? caller, mode);
      } catch (err) {
        fs.closeSync(fd);
        throw err;
      }
    });
    return { ...this.#register(fd, e), dir };
  }

  /** Runs `io` on the handle's fd, which stays open until it is done. */
  async #io<T>(handle: number, io: (h: Handle) => Promise<T>): Promise<T> {
    const h = this.#handle(handle);
    h.busy++;
    try {
      return await io(h);
    } finally {
      if (--h.busy === 0 && h.closing) this.#close(h);
    }
  }

  /** At most MAX_READ bytes: a larger request gets a short read. */
  read(handle: number, offset: number, size: number): Promise<Buffer> {
    return this.#io(handle, async ({ fd }) => {
      const want = Math.max(0, Math.min(size, MAX_READ));
      const buf = Buffer.allocUnsafe(want);
      const { bytesRead } = await readAt(fd, buf, 0, want, offset);
      return bytesRead === want ? buf : buf.subarray(0, bytesRead);
    });
  }

  /** Runs `io` after the writes and syncs asked before it on this handle, in the order they were asked. */
  #inOrder<T>(handle: number, io: (h: Handle) => Promise<T>): Promise<T> {
    return this.#io(handle, (h) => {
      const done = h.ordered.then(() => io(h));
      h.ordered = done.catch(() => {});
      return done;
    });
  }

  write(handle: number, offset: number, data: Buffer): Promise<Written> {
    return this.#inOrder(handle, async ({ fd, exp }) => {
      exp.writable();
      const { bytesWritten } = await writeAt(fd, data, 0, data.length, offset);
      return { size: bytesWritten, attr: statFd(fd) };
    });
  }

  /**
   * A write whose data arrived in pieces (from the mesh, as the socket delivered them). They are
   * joined first: one copy costs less than writev(2) over hundreds of small segments (measured:
   * 1.35 ms per MiB), and a segment count past IOV_MAX would fail.
   */
  writePieces(handle: number, offset: number, pieces: Buffer[]): Promise<Written> {
    return this.write(handle, offset, pieces.length === 1 ? pieces[0] : Buffer.concat(pieces));
  }

  fsync(handle: number, dataOnly: boolean): Promise<void> {
    return this.#inOrder(handle, ({ fd }) => (dataOnly ? fdatasyncFd : fsyncFd)(fd));
  }

  release(handle: number): void {
    const h = this.#handles.get(handle);
    if (!h) return;
    this.#handles.delete(handle);
    if (h.busy) h.closing = true;
    else this.#close(h);
  }

  #close(h: Handle): void {
    fs.closeSync(h.fd);
    // The last handle on an inode gone: so are its POSIX locks (as when a process closes the file).
    if ([...this.#handles.values()].some((x) => x.inode === h.inode)) return;
    for (const [key, l] of this.#lockFds) {
      if (l.inode !== h.inode) continue;
      fs.closeSync(l.fd);
      this.#lockFds.delete(key);
    }
  }

  mkdir(exp: string, rel: string, mode: number, caller?: Caller): Made {
    const e = this.#exp(exp);
    e.writable();
    const dir = e.change(rel, (d, n) => {
      fs.mkdirSync(proc(d, n), { mode });
      own(d, n, this.#actingAs ?? caller, mode);
    });
    return { attr: e.lstat(rel), dir };
  }

  unlink(exp: string, rel: string): Removed {
    return this.#remove(exp, rel, fs.unlinkSync);
  }

  rmdir(exp: string, rel: string): Removed {
    return this.#remove(exp, rel, fs.rmdirSync);
  }

  #remove(exp: string, rel: string, remove: (path: string) => void): Removed {
    const e = this.#exp(exp);
    e.writable();
    let ino = 0;
    const dir = e.change(rel, (d, n) => {
      ino = Number(fs.lstatSync(proc(d, n), { bigint: true }).ino);
      remove(proc(d, n));
    });
    return { dir, ino };
  }

  /** rename, with RENAME_NOREPLACE (1) and RENAME_EXCHANGE (2) as renameat2(2) has them. */
  rename(exp: string, from: string, to: string, flags: number): Renamed {
    const e = this.#exp(exp);
    e.writable();
    return e.inParent(from, (d1, n1) => e.inParent(to, (d2, n2) => {
      call((ctx) => loadBinding().renameat2(d1, n1, d2, n2, flags, ctx));
      return { fromDir: statFd(d1), toDir: statFd(d2) };
    }));
  }

  /**
   * FIFOs, sockets, empty files and device nodes, as NFS makes them: only a caller with CAP_MKNOD gets
   * this far for a device (the caller's kernel checks), and /pj is mounted nodev, so a device node in an
   * export opens only on the owner's own disk.
   */
  mknod(exp: string, rel: string, mode: number, rdev: number, caller?: Caller): Made {
    const e = this.#exp(exp);
    e.writable();
    const dir = e.change(rel, (d, n) => {
      call((ctx) => loadBinding().mknodat(d, n, mode, rdev, ctx));
      own(d, n, this.#actingAs ?? caller, mode);
    });
    return { attr: e.lstat(rel), dir };
  }

  fallocate(handle: number, mode: number, offset: number, length: number): void {
    const { fd, exp } = this.#handle(handle);
    exp.writable();
    call((ctx) => loadBinding().fallocate(fd, mode, offset, length, ctx));
  }

  /** lseek for SEEK_DATA (3) and SEEK_HOLE (4): where the next data or hole starts. */
  lseek(handle: number, offset: number, whence: number): number {
    return call((ctx) => loadBinding().lseek(this.#handle(handle).fd, offset, whence, ctx));
  }

  copyFileRange(handleIn: number, offIn: number, handleOut: number, offOut: number, length: number): number {
    const out = this.#handle(handleOut);
    out.exp.writable();
    return call((ctx) => loadBinding().copyFileRange(this.#handle(handleIn).fd, offIn, out.fd, offOut, length, ctx));
  }

  /** Runs `fn` with a path naming `rel` itself (never following it), for the l*xattr calls. */
  #xattrPath<T>(exp: string, rel: string, fn: (path: string) => T): T {
    const e = this.#exp(exp);
    if (cleanRel(rel) === '') return fn(`${proc(e.root)}/.`);
    return e.inParent(rel, (d, n) => fn(proc(d, n)));
  }

  getxattr(exp: string, rel: string, name: string): { value: Buffer } {
    return { value: this.#xattrPath(exp, rel, (p) => call((ctx) => loadBinding().getxattr(p, name, ctx))) };
  }

  /** The names, each NUL-terminated, as listxattr(2) gives them. */
  listxattr(exp: string, rel: string): { value: Buffer } {
    return { value: this.#xattrPath(exp, rel, (p) => call((ctx) => loadBinding().listxattr(p, ctx))) };
  }

  setxattr(exp: string, rel: string, name: string, value: Buffer, flags: number): void {
    this.#exp(exp).writable();
    this.#xattrPath(exp, rel, (p) => call((ctx) => loadBinding().setxattr(p, name, value, flags, ctx)));
  }

  removexattr(exp: string, rel: string, name: string): void {
    this.#exp(exp).writable();
    this.#xattrPath(exp, rel, (p) => call((ctx) => loadBinding().removexattr(p, name, ctx)));
  }

  symlink(exp: string, rel: string, target: string, caller?: Caller): Made {
    const e = this.#exp(exp);
    e.writable();
    const dir = e.change(rel, (d, n) => {
      fs.symlinkSync(target, proc(d, n));
      own(d, n, this.#actingAs ?? caller);
    });
    return { attr: e.lstat(rel), dir };
  }

  readlink(exp: string, rel: string): string {
    return this.#exp(exp).inParent(rel, (d, n) => fs.readlinkSync(proc(d, n)));
  }

  link(exp: string, from: string, to: string): Made {
    const e = this.#exp(exp);
    e.writable();
    const dir = e.inParent(from, (d1, n1) => e.change(to, (d2, n2) => fs.linkSync(proc(d1, n1), proc(d2, n2))));
    return { attr: e.lstat(to), dir };
  }

  setattr(exp: string, rel: string, ch: AttrChanges, handle?: number): Attr {
    const e = this.#exp(exp);
    e.writable();
    const clean = cleanRel(rel);
    const own = handle === undefined ? e.open(clean, C.O_PATH | C.O_NOFOLLOW) : undefined;
    const target = proc(own ?? this.#handle(handle!).fd);
    try {
      if (ch.mode !== undefined) fs.chmodSync(target, ch.mode & 0o7777);
      if (ch.uid !== undefined || ch.gid !== undefined) fs.chownSync(target, ch.uid ?? -1, ch.gid ?? -1);
      if (ch.size !== undefined) fs.truncateSync(target, ch.size);
      if (ch.atimeNs !== undefined || ch.mtimeNs !== undefined) {
        const [as, an] = timespec(ch.atimeNs);
        const [ms, mn] = timespec(ch.mtimeNs);
        call((ctx) => loadBinding().utimens(target, as, an, ms, mn, ctx));
      }
      return statFd(own ?? this.#handle(handle!).fd);
    } finally {
      if (own !== undefined) fs.closeSync(own);
    }
  }

  statfs(exp: string): StatfsInfo {
    const s = fs.statfsSync(proc(this.#exp(exp).root));
    return { blocks: s.blocks, bfree: s.bfree, bavail: s.bavail, files: s.files, ffree: s.ffree, bsize: s.bsize, namelen: 255, frsize: s.bsize };
  }

  /** Marks a handle as held for another host, so that it can be let go if that host goes away. */
  adopt(handle: number, client: string): void {
    const h = this.#handles.get(handle);
    if (h) h.client = client;
  }

  /** A host went away: close what it held open and drop its locks, so that nobody waits on a dead host. */
  releaseClient(client: string): number {
    const mine = [...this.#handles].filter(([, h]) => h.client === client).map(([id]) => id);
    mine.forEach((id) => this.release(id));
    for (const [key, l] of this.#lockFds) {
      if (!key.includes(`|${client}:`)) continue;
      fs.closeSync(l.fd);
      this.#lockFds.delete(key);
    }
    return mine.length;
  }

  close(): void {
    for (const cursor of [...this.#listings.keys()]) this.#endListing(cursor);
    for (const h of this.#handles.values()) fs.closeSync(h.fd);
    this.#handles.clear();
    for (const l of this.#lockFds.values()) fs.closeSync(l.fd);
    this.#lockFds.clear();
    for (const e of this.#exports.values()) fs.closeSync(e.root);
  }
}
