// The /pj tree as the kernel sees it: /pj/<host>/<export>/<path>. Each request
// is decided here; the real work runs in the owner's ExportServer, directly
// when the owner is this host, over the mesh otherwise. Local files are opened
// with kernel passthrough, so their reads, writes and mmap never reach us.
import { crashPoint } from '../common/fault.js';
import { errnoError } from '../common/errors.js';
import type { Log } from '../common/log.js';
import type { Counter, Metrics } from '../common/metrics.js';
import type { HostView } from '../manager/cluster-state.js';
import { mayUse } from '../manager/exports.js';
import { call, loadBinding } from '../native/loader.js';
import type { FsBackend } from './backend.js';
import type { DataCache } from './data-cache.js';
import { LOCK_TO_EOF, type Caller, type DirEntry, type LockRange, type Made } from './export-server.js';
import type { FuseRequest } from './fuse-session.js';
import { InodeTable, inoOf, keyOf, type Node } from './inode-table.js';
import { OpenFile, RESTORED } from './open-file.js';
import type { JournalRecord, SessionJournal } from './session-journal.js';
import type { TrafficLedger } from '../migrator/index.js';
import {
  FATTR, FOPEN_KEEP_CACHE, FOPEN_PASSTHROUGH, Op, attrOut, opName, cStrings, dirent, entryOut, lkOut, openOut, statfsOut, type Attr,
} from './protocol.js';

const S_IFDIR = 0o040000;
const F_UNLCK = 2;
const FUSE_LK_FLOCK = 1;
/** Requests the kernel makes for its own bookkeeping, not on a program's behalf. */
const NOT_TRAFFIC = new Set<number>([Op.FORGET, Op.BATCH_FORGET, Op.INTERRUPT, Op.DESTROY]);
/**
 * Requests this daemon answers without waiting for the file's owner, left out of the ledger (the
 * policy prices each operation there as a round trip): a close's FLUSH carries no data of its own (the
 * writes were counted as they were made), nobody waits for a RELEASE, and IOCTL is not served. A
 * program's start-up makes dozens of them on its output files (a Python job: 66 flushes and 41 ioctls in its first seconds).
 */
const ANSWERED_HERE = new Set<number>([Op.FLUSH, Op.RELEASE, Op.RELEASEDIR, Op.IOCTL]);
const RENAME_EXCHANGE = 2;
/** The bit the kernel sets in the number of a request it sends again (FUSE_NOTIFY_RESEND). */
const RESENT = 1n << 63n;
type Listing = Array<{ name: string; ino: number; type: number; attr?: Attr }>;
const SECURITY_CAPABILITY = 'security.capability';

export interface FilesystemOptions {
  self: string;
  /** Cluster membership (cached by the caller). */
  hosts: () => Promise<HostView[]>;
  backend: (host: string) => FsBackend;
  /** The /dev/fuse fd and whether INIT granted passthrough; set once mounted. */
  device: () => { fd: number; passthrough: boolean };
  /** The real fd behind a local handle, for passthrough. */
  localFd: (handle: number) => number;
  /** Sends an unsolicited notification to the kernel (FUSE_NOTIFY_POLL). */
  notify: (code: number, body: Buffer) => void;
  attrTimeoutS: number;
  /** Remote file data kept by this agent. */
  cache: DataCache;
  log: Log;
  ledger: TrafficLedger;
  metrics: Metrics;
  /** Where what the kernel is told is kept for an agent that takes the connection over. */
  journal?: SessionJournal;
}

/** How long the owner waits for a device to have data before the read is asked again. */
const DEVICE_WAIT_MS = 1000;
const POLL_WATCH_MS = 20;
const FUSE_NOTIFY_POLL = 1;
const FUSE_POLL_SCHEDULE_NOTIFY = 1;
/** Who asked: what a request makes becomes theirs on the owner's disk. */
const caller = (h: { uid: number; gid: number }): Caller => ({ uid: h.uid, gid: h.gid });
const FOPEN_DIRECT_IO = 1 << 0;
const FOPEN_NONSEEKABLE = 1 << 2;
const FOPEN_STREAM = 1 << 4;

export class PjFilesystem {
  readonly nodes: InodeTable;
  #o: FilesystemOptions;
  #files = new Map<bigint, OpenFile>();
  /** Directory listings taken at OPENDIR; entries inside an export carry their attributes (for READDIRPLUS). */
  #dirs = new Map<bigint, { dir: Node; list?: Listing }>();
  #nextFh = 1n;
  /** Requests that wait for a lock, and those of them the kernel has interrupted. */
  #waiting = new Set<bigint>();
  #interrupted = new Set<bigint>();
  /** Poll handles the kernel asked to be woken for, watched until their device is ready. */
  #pollWatch = new Map<bigint, { f: OpenFile; events: number }>();
  #pollTimer: NodeJS.Timeout | undefined;
  #started = BigInt(Date.now()) * 1_000_000n;
  /** Requests (by number) of the writes restore() sends again: the kernel may send them again too. */
  #journaledWrites = new Set<bigint>();

  #ops: Counter;
  #bytes: Counter;

  constructor(o: FilesystemOptions) {
    this.#o = o;
    this.#ops = o.metrics.counter('pj_fs_operations_total', '/pj requests served, by FUSE operation and by whether the file is this host\'s');
    this.#bytes = o.metrics.counter('pj_fs_bytes_total', 'bytes read and written by /pj requests (passthrough I/O of local files bypasses the daemon)');
    this.nodes = new InodeTable(o.self, o.attrTimeoutS * 1000, o.journal);
  }

  /** Serves one request and records it, failed or not, in the ledger against the host that owns its node. */
  handle = async (req: FuseRequest): Promise<Buffer[] | null> => {
    const { header: h, body } = req;
    const node = NOT_TRAFFIC.has(h.opcode) ? undefined : this.nodes.peek(h.nodeid);
    let reply: Buffer[] | null = null;
    try {
      reply = await this.#serve(req).catch((e: NodeJS.ErrnoException) => this.#doneBeforeResend(req, e));
      if (h.opcode === Op.MKDIR) crashPoint('agent-after-change'); // made, never answered: the kernel sends it again to the next agent
      return reply;
    } finally {
      this.#flushJournal();
      if (node && node.kind !== 'root') {
        const bytes = h.opcode === Op.READ ? (reply ?? []).reduce((n, b) => n + b.length, 0) : h.opcode === Op.WRITE ? body.readUInt32LE(16) : 0;
        if (!ANSWERED_HERE.has(h.opcode)) this.#o.ledger.recordCaller(h.pid, node.host, 'fs', 1, bytes);
        const labels = { op: opName.get(h.opcode) ?? String(h.opcode), locality: node.host === this.#o.self ? 'local' : 'remote' };
        this.#ops.inc(labels);
        if (bytes) this.#bytes.inc(labels, bytes);
      }
    }
  };

  /**
   * A change the kernel sends again (FUSE_NOTIFY_RESEND: the last agent read it and died) may have
   * been made by that agent: the EEXIST or ENOENT it meets now is that first try's success (as an NFS
   * client takes it). Other failures stay failures.
   */
  async #doneBeforeResend({ header: h, body }: FuseRequest, e: NodeJS.ErrnoException): Promise<Buffer[]> {
    if (!(h.unique & RESENT)) throw e;
    const made = { [Op.MKDIR]: 8, [Op.MKNOD]: 16, [Op.LINK]: 8, [Op.SYMLINK]: 0 }[h.opcode];
    if (made !== undefined && e.code === 'EEXIST') return this.#lookup(this.nodes.get(h.nodeid), cStrings(body.subarray(made), 1)[0], caller(h));
    if ((h.opcode === Op.UNLINK || h.opcode === Op.RMDIR) && e.code === 'ENOENT') return [];
    if ((h.opcode === Op.RENAME || h.opcode === Op.RENAME2) && e.code === 'ENOENT') {
      const { n, rel } = this.#child(this.nodes.get(body.readBigUInt64LE(0)), cStrings(body.subarray(h.opcode === Op.RENAME2 ? 16 : 8), 2)[1]);
      await this.#owner(n.host, h).lstat(n.exp, rel).catch(() => { throw e; }); // renamed: the new name is there
      return [];
    }
    throw e;
  }

  async #serve({ header: h, body }: FuseRequest): Promise<Buffer[] | null> {
    switch (h.opcode) {
      case Op.LOOKUP: return this.#lookup(this.nodes.get(h.nodeid), cStrings(body, 1)[0], caller(h));
      case Op.FORGET: this.nodes.forget(h.nodeid, Number(body.readBigUInt64LE(0))); return null;
      case Op.BATCH_FORGET: {
        const count = body.readUInt32LE(0);
        for (let i = 0; i < count; i++) this.nodes.forget(body.readBigUInt64LE(8 + 16 * i), Number(body.readBigUInt64LE(16 + 16 * i)));
        return null;
      }
      case Op.GETATTR: return [attrOut(await this.#attr(this.nodes.get(h.nodeid), caller(h)), this.#o.attrTimeoutS)];
      case Op.SETATTR: return [attrOut(await this.#setattr(this.nodes.get(h.nodeid), body, caller(h)), this.#o.attrTimeoutS)];
      case Op.READLINK: { const n = this.#entry(h.nodeid, 'EINVAL'); return [Buffer.from(await this.#owner(n.host, h).readlink(n.exp, n.rel))]; }
      case Op.SYMLINK: {
        const [name, target] = cStrings(body, 2);
        return this.#made(h, this.nodes.get(h.nodeid), name, (b, exp, rel) => b.symlink(exp, rel, target, caller(h)));
      }
      case Op.MKDIR: {
        const mode = body.readUInt32LE(0) & ~body.readUInt32LE(4);
        return this.#made(h, this.nodes.get(h.nodeid), cStrings(body.subarray(8), 1)[0], (b, exp, rel) => b.mkdir(exp, rel, mode, caller(h)));
      }
      case Op.UNLINK: case Op.RMDIR: {
        const parent = this.nodes.get(h.nodeid);
        const { n, rel } = this.#child(parent, cStrings(body, 1)[0]);
        const b = this.#owner(n.host, h);
        const r = await (h.opcode === Op.UNLINK ? b.unlink(n.exp, rel) : b.rmdir(n.exp, rel));
        this.nodes.remember(parent, r.dir);
        const gone = this.nodes.byInode(n.host, n.exp, r.ino);
        this.nodes.stale(gone); // its link count changed
        this.nodes.unlinked(gone, rel);
        return [];
      }
      case Op.RENAME: case Op.RENAME2: {
        const newdir = body.readBigUInt64LE(0);
        const flags = h.opcode === Op.RENAME2 ? body.readUInt32LE(8) : 0;
        const [from, to] = cStrings(body.subarray(h.opcode === Op.RENAME2 ? 16 : 8), 2);
        const fromDir = this.nodes.get(h.nodeid);
        const toDir = this.nodes.get(newdir);
        const a = this.#child(fromDir, from);
        const b = this.#child(toDir, to);
        if (a.n.host !== b.n.host || a.n.exp !== b.n.exp) throw errnoError('EXDEV');
        const r = await this.#owner(a.n.host, h).rename(a.n.exp, a.rel, b.rel, flags);
        this.nodes.remember(fromDir, r.fromDir);
        this.nodes.remember(toDir, r.toDir);
        this.nodes.moved(a.n.host, a.n.exp, a.rel, b.rel, (flags & RENAME_EXCHANGE) !== 0);
        return [];
      }
      case Op.LINK: {
        const old = this.#entry(body.readBigUInt64LE(0), 'EPERM');
        return this.#made(h, this.nodes.get(h.nodeid), cStrings(body.subarray(8), 1)[0], (b, exp, rel) => {
          if (old.host !== b.host || old.exp !== exp) throw errnoError('EXDEV');
          return b.link(exp, old.rel, rel);
        });
      }
      case Op.OPEN: {
        const n = this.nodes.get(h.nodeid);
        if (n.kind === 'device') return this.#openDevice(n, body.readUInt32LE(0));
        return this.#open(this.#entry(h.nodeid), body.readUInt32LE(0), caller(h));
      }
      case Op.POLL: return [await this.#poll(this.#file(body.readBigUInt64LE(0)), body.readBigUInt64LE(8), body.readUInt32LE(16), body.readUInt32LE(20))];
      case Op.CREATE: {
        const flags = body.readUInt32LE(0);
        const mode = body.readUInt32LE(4) & ~body.readUInt32LE(8);
        const parent = this.nodes.get(h.nodeid);
        const { n, rel } = this.#child(parent, cStrings(body.subarray(16), 1)[0]);
        const backend = this.#owner(n.host, h);
        const r = await backend.create(n.exp, rel, flags, mode, caller(h));
        this.nodes.remember(parent, r.dir);
        const node = this.nodes.lookup('entry', n.host, n.exp, rel, r.attr.ino);
        this.nodes.absentXattr(node, SECURITY_CAPABILITY); // a new file has none
        return [this.#reply(node, r.attr), this.#opened(node, backend, r.handle, flags, r.attr, caller(h))];
      }
      case Op.READ: {
        const f = this.#file(body.readBigUInt64LE(0));
        if (f.device) return [await this.#interruptible(h.unique, () => f.use((dh) => f.backend.readDevice(dh, body.readUInt32LE(16), DEVICE_WAIT_MS)))];
        return f.read(Number(body.readBigUInt64LE(8)), body.readUInt32LE(16));
      }
      case Op.WRITE: {
        const f = this.#file(body.readBigUInt64LE(0));
        const size = body.readUInt32LE(16);
        const data = body.subarray(40, 40 + size);
        const offset = Number(body.readBigUInt64LE(8));
        const out = Buffer.alloc(8);
        if (f.device) {
          out.writeUInt32LE(await f.use((dh) => f.backend.writeDevice(dh, data, DEVICE_WAIT_MS)), 0);
          return [out];
        }
        // A write the journal of the last agent sends again (restore()) is not written twice when the kernel sends it again too.
        if (this.#journaledWrites.delete(h.unique & ~RESENT)) out.writeUInt32LE(size, 0);
        else out.writeUInt32LE(await f.write(offset, data, h.unique), 0);
        return [out];
      }
      case Op.FLUSH: {
        // Close-to-open: every write is on the owner before close returns. A close also drops the
        // closing process's POSIX locks on the file, as on a local file.
        const f = this.#file(body.readBigUInt64LE(0));
        if (f.device) return [];
        await f.drain();
        const owner = `${this.#o.self}:${body.readBigUInt64LE(16)}`;
        f.lockers.delete(owner);
        if (f.locked) await f.use((fh) => f.backend.setlk(fh, owner, { type: F_UNLCK, start: 0, end: LOCK_TO_EOF }, false));
        return [];
      }
      case Op.FSYNC: {
        const f = this.#file(body.readBigUInt64LE(0));
        if (f.device) return [];
        await f.drain();
        await f.use((fh) => f.backend.fsync(fh, (body.readUInt32LE(8) & 1) === 1));
        return [];
      }
      case Op.RELEASE: {
        // Nobody waits for a release: answer at once and let the owner close its fd meanwhile.
        this.#release(body.readBigUInt64LE(0)).catch((e: Error) => this.#o.log.warn({ op: 'fuse-release', err: e.message }, 'release failed'));
        return [];
      }
      case Op.STATFS: {
        const n = this.nodes.get(h.nodeid);
        if (n.kind === 'root' || n.kind === 'host') return [statfsOut({ blocks: 0, bfree: 0, bavail: 0, files: 0, ffree: 0, bsize: 4096, namelen: 255, frsize: 4096 })];
        return [statfsOut(await this.#owner(n.host, h).statfs(n.exp))];
      }
      case Op.OPENDIR: return this.#opendir(this.nodes.get(h.nodeid), caller(h));
      case Op.READDIR: case Op.READDIRPLUS:
        return this.#readdir(body.readBigUInt64LE(0), Number(body.readBigUInt64LE(8)), body.readUInt32LE(16), h.opcode === Op.READDIRPLUS);
      case Op.RELEASEDIR: {
        const fh = body.readBigUInt64LE(0);
        this.#dirs.delete(fh);
        this.#o.journal?.add(['e', String(fh)]);
        return [];
      }
      case Op.GETLK: {
        const { f, owner, lk } = this.#lockRequest(body);
        const r = await f.use((fh) => f.backend.getlk(fh, owner, lk));
        return [lkOut(r)];
      }
      case Op.SETLK: case Op.SETLKW: {
        const { f, owner, lk, isFlock } = this.#lockRequest(body);
        f.locked ||= !isFlock;
        if (!isFlock) f.lockers.set(owner, h.pid);
        const setlk = () => f.use((fh) => f.backend.setlk(fh, owner, lk, isFlock));
        if (h.opcode === Op.SETLK || lk.type === F_UNLCK) { await setlk(); return []; }
        await this.#interruptible(h.unique, setlk);
        return [];
      }
      case Op.MKNOD: {
        const mode = body.readUInt32LE(0) & ~body.readUInt32LE(8);
        const rdev = body.readUInt32LE(4);
        return this.#made(h, this.nodes.get(h.nodeid), cStrings(body.subarray(16), 1)[0], (b, exp, rel) => b.mknod(exp, rel, mode, rdev, caller(h)));
      }
      case Op.FALLOCATE: {
        const f = this.#file(body.readBigUInt64LE(0));
        await f.drain();
        f.changed();
        this.nodes.stale(f.node);
        await f.use((fh) => f.backend.fallocate(fh, body.readUInt32LE(24), Number(body.readBigUInt64LE(8)), Number(body.readBigUInt64LE(16))));
        return [];
      }
      case Op.LSEEK: {
        const f = this.#file(body.readBigUInt64LE(0));
        await f.drain();
        const out = Buffer.alloc(8);
        out.writeBigUInt64LE(BigInt(await f.use((fh) => f.backend.lseek(fh, Number(body.readBigUInt64LE(8)), body.readUInt32LE(16)))), 0);
        return [out];
      }
      case Op.COPY_FILE_RANGE: {
        const src = this.#file(body.readBigUInt64LE(0));
        const dst = this.#file(body.readBigUInt64LE(24));
        if (src.backend !== dst.backend) throw errnoError('EXDEV'); // the kernel then copies through read and write
        await src.drain();
        await dst.drain();
        dst.changed();
        this.nodes.stale(dst.node);
        const n = await src.use((hs) => dst.use((hd) => src.backend.copyFileRange(hs, Number(body.readBigUInt64LE(8)), hd, Number(body.readBigUInt64LE(32)), Number(body.readBigUInt64LE(40)))));
        const out = Buffer.alloc(8);
        out.writeUInt32LE(n, 0);
        return [out];
      }
      case Op.GETXATTR: case Op.LISTXATTR: {
        const n = this.nodes.get(h.nodeid);
        if (n.kind === 'root' || n.kind === 'host') { // the fixed levels have no attributes
          if (h.opcode === Op.GETXATTR) throw errnoError('ENODATA');
          return [Buffer.alloc(body.readUInt32LE(0) === 0 ? 8 : 0)];
        }
        const size = body.readUInt32LE(0);
        const b = this.#owner(n.host, h);
        const name = h.opcode === Op.GETXATTR ? cStrings(body.subarray(8), 1)[0] : '';
        if (name && this.nodes.xattrAbsent(n, name)) throw errnoError('ENODATA');
        const { value } = await (name ? b.getxattr(n.exp, n.rel, name) : b.listxattr(n.exp, n.rel)).catch((e: NodeJS.ErrnoException) => {
          if (e.code === 'ENODATA') this.nodes.absentXattr(n, name);
          throw e;
        });
        if (size === 0) { const out = Buffer.alloc(8); out.writeUInt32LE(value.length, 0); return [out]; }
        if (value.length > size) throw errnoError('ERANGE');
        return [value];
      }
      case Op.SETXATTR: {
        const n = this.#entry(h.nodeid, 'EPERM');
        const size = body.readUInt32LE(0);
        const [name] = cStrings(body.subarray(8), 1);
        const valueAt = 8 + Buffer.byteLength(name) + 1;
        this.#xattrsChanging(n);
        await this.#owner(n.host, h).setxattr(n.exp, n.rel, name, body.subarray(valueAt, valueAt + size), body.readUInt32LE(4));
        return [];
      }
      case Op.REMOVEXATTR: {
        const n = this.#entry(h.nodeid, 'EPERM');
        this.#xattrsChanging(n);
        await this.#owner(n.host, h).removexattr(n.exp, n.rel, cStrings(body, 1)[0]);
        return [];
      }
      case Op.FSYNCDIR: case Op.ACCESS: case Op.DESTROY: return [];
      case Op.INTERRUPT: {
        const unique = body.readBigUInt64LE(0);
        if (this.#waiting.has(unique)) this.#interrupted.add(unique);
        return null;
      }
      default: throw errnoError('ENOSYS');
    }
  }

  /** Files open on /pj now (the kernel holds their handles). */
  get openFiles(): number { return this.#files.size; }

  /** The connection this served is gone: the owners let go of what it had open (its callers' descriptors died with it). */
  releaseAll(): void {
    this.#o.journal?.close(false);
    for (const f of this.#files.values()) {
      f.closed = true;
      if (f.handle === RESTORED) continue;
      (f.device ? f.backend.releaseDevice(f.handle) : f.backend.release(f.handle)).catch(() => {}); // its backing ids went with its device
    }
    this.#files.clear();
    this.#dirs.clear();
    clearInterval(this.#pollTimer);
  }

  /**
   * Takes over what a journal says the kernel knows (an agent that took its connection back from the
   * keeper): nodes, open files (opened again on their owners at their next use), open directories
   * (listed again at their next read), and the remote writes not yet confirmed, sent again.
   * Returns how many open files came back.
   */
  restore(records: JournalRecord[]): number {
    const files = new Map<string, Extract<JournalRecord, { 0: 'o' }>>();
    const dirs = new Map<string, string>();
    const writes = new Map<string, Map<number, { offset: number; data: Buffer; unique: bigint }>>();
    for (const r of records) {
      switch (r[0]) {
        case 'o': files.set(r[1], r); break;
        case 'c': files.delete(r[1]); writes.delete(r[1]); break;
        case 'd': dirs.set(r[1], r[2]); break;
        case 'e': dirs.delete(r[1]); break;
        case 'w': { let m = writes.get(r[1]); if (!m) writes.set(r[1], (m = new Map())); m.set(r[2], { offset: r[3], data: Buffer.from(r[4], 'base64'), unique: BigInt(r[5]) }); break; }
        case 'a': writes.get(r[1])?.delete(r[2]); break;
        default: this.nodes.replay(r);
      }
    }
    const bump = (fh: bigint) => { if (fh >= this.#nextFh) this.#nextFh = fh + 1n; };
    for (const [fh, [, , nodeId, flags, backingId, device, uid, gid]] of files) {
      const node = this.nodes.peek(BigInt(nodeId));
      if (!node) continue;
      if (backingId) {
        node.backing ??= { id: backingId, refs: 0 };
        node.backing.refs++;
      }
      const who = typeof uid === 'number' && typeof gid === 'number' ? { uid, gid } : undefined;
      this.#files.set(BigInt(fh), new OpenFile({ node, backend: this.#o.backend(node.host), who, handle: RESTORED, flags, passthrough: backingId !== 0, device,
        nodes: this.nodes, cache: this.#o.cache, journal: this.#fileJournal(BigInt(fh)) }));
      bump(BigInt(fh));
    }
    for (const [fh, nodeId] of dirs) {
      const dir = this.nodes.peek(BigInt(nodeId));
      if (dir) this.#dirs.set(BigInt(fh), { dir });
      bump(BigInt(fh));
    }
    this.nodes.prune();
    this.#o.journal?.compact(this.#snapshot());
    for (const [fh, pending] of writes) {
      const f = this.#files.get(BigInt(fh));
      for (const w of [...pending].sort(([a], [b]) => a - b).map(([, w]) => w)) {
        this.#journaledWrites.add(w.unique);
        void f?.write(w.offset, w.data, w.unique, true);
      }
    }
    this.#flushJournal();
    return this.#files.size;
  }

  /** The live state as journal records: what a compacted journal holds. */
  #snapshot(): JournalRecord[] {
    const out = this.nodes.snapshot();
    for (const [fh, f] of this.#files) {
      out.push(['o', String(fh), String(f.node.id), f.flags, f.passthrough ? f.node.backing?.id ?? 0 : 0, f.device, f.who?.uid, f.who?.gid]);
      for (const w of f.unconfirmed) out.push(['w', String(fh), w.seq, w.offset, w.data.toString('base64'), String(w.unique)]);
    }
    for (const [fh, d] of this.#dirs) out.push(['d', String(fh), String(d.dir.id)]);
    return out;
  }

  #flushJournal(): void {
    const j = this.#o.journal;
    if (!j) return;
    if (j.wantsCompaction(this.nodes.size + this.#files.size + this.#dirs.size)) j.compact(this.#snapshot());
    else j.flush();
  }

  #fileJournal(fh: bigint) {
    const j = this.#o.journal;
    const id = String(fh);
    return j && {
      // On file before the write is sent: one the kernel sends again that the journal lacks never reached the owner.
      wrote: (seq: number, offset: number, data: Buffer, unique: bigint) => { j.add(['w', id, seq, offset, data.toString('base64'), String(unique)]); this.#flushJournal(); },
      confirmed: (seq: number) => j.add(['a', id, seq]),
    };
  }

  /**
   * Gives up the POSIX locks that the threads `tids` hold through /pj (a job that moved away: its
   * copy here is frozen until it ends, and must not keep the locks its moved copy takes again).
   */
  async dropLocks(tids: Set<number>): Promise<number> {
    let dropped = 0;
    for (const f of this.#files.values()) {
      for (const [owner, pid] of f.lockers) {
        if (!tids.has(pid)) continue;
        f.lockers.delete(owner);
        await f.use((fh) => f.backend.setlk(fh, owner, { type: F_UNLCK, start: 0, end: LOCK_TO_EOF }, false)).then(() => dropped++, () => {});
      }
    }
    return dropped;
  }

  /** fuse_lk_in: fh, owner, { start, end, type, pid }, lk_flags. */
  #lockRequest(b: Buffer) {
    const f = this.#file(b.readBigUInt64LE(0));
    const end = b.readBigUInt64LE(24);
    const lk: LockRange = { start: Number(b.readBigUInt64LE(16)), end: end >= BigInt(LOCK_TO_EOF) ? LOCK_TO_EOF : Number(end), type: b.readUInt32LE(32) };
    return { f, owner: `${this.#o.self}:${b.readBigUInt64LE(8)}`, lk, isFlock: (b.readUInt32LE(40) & FUSE_LK_FLOCK) !== 0 };
  }

  /**
   * Requests that may wait without end (SETLKW, a device read): the owner never blocks a thread,
   * so we ask again while it says EAGAIN, backing off to 50 ms; a signal to the waiting process
   * arrives as INTERRUPT and ends the wait with EINTR.
   */
  async #interruptible<T>(unique: bigint, attempt: () => Promise<T>): Promise<T> {
    this.#waiting.add(unique);
    try {
      for (let delay = 2; ; delay = Math.min(delay * 2, 50)) {
        try {
          return await attempt();
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code !== 'EAGAIN') throw e;
        }
        if (this.#interrupted.has(unique)) throw errnoError('EINTR');
        await new Promise((r) => setTimeout(r, delay));
        if (this.#interrupted.has(unique)) throw errnoError('EINTR');
      }
    } finally {
      this.#waiting.delete(unique);
      this.#interrupted.delete(unique);
    }
  }

  /** A node inside an export; `fixedLevel` is the answer for /pj and /pj/<host> (directories nobody can change). */
  #entry(id: bigint, fixedLevel = 'EISDIR'): Node {
    const n = this.nodes.get(id);
    if (n.kind !== 'entry' && n.kind !== 'export') throw errnoError(n.kind === 'root' || n.kind === 'host' ? fixedLevel : 'EINVAL');
    return n;
  }

  /** The path of `name` inside the directory `parent`; only inside an export can names be made or removed. */
  #child(parent: Node, name: string): { n: Node; rel: string } {
    if (parent.kind === 'root' || parent.kind === 'host') throw errnoError('EPERM', 'the /pj and /pj/<host> levels are fixed');
    return { n: parent, rel: parent.rel ? `${parent.rel}/${name}` : name };
  }

  #dirAttr(n: Node): Attr {
    const t = this.#started;
    return { ino: n.ino, size: 0, blocks: 0, atimeNs: t, mtimeNs: t, ctimeNs: t, mode: S_IFDIR | 0o555, nlink: 2, uid: 0, gid: 0, rdev: 0, blksize: 4096 };
  }

  async #drainNode(n: Node): Promise<void> {
    for (const f of this.#files.values()) if (f.node === n && f.writing) await f.settled();
  }

  /** Where `host`'s exports are served, asked for caller `who` (squashed there as its export says; not named: as root). */
  #owner(host: string, who?: Caller): FsBackend {
    const b = this.#o.backend(host);
    return who ? b.as(caller(who)) : b;
  }

  async #attr(n: Node, who?: Caller): Promise<Attr> {
    if (n.kind === 'root' || n.kind === 'host') return this.#dirAttr(n);
    if (n.kind === 'device') return { ...(await this.#o.backend(n.host).deviceStat(n.exp)), ino: n.ino };
    await this.#drainNode(n);
    let attr = this.nodes.cached(n);
    try {
      attr ??= await this.#owner(n.host, who).lstat(n.exp, n.rel);
    } catch (e) {
      // A file still open after its last name is gone (fstat of it, unlinked): asked by its handle.
      const f = (e as NodeJS.ErrnoException).code === 'ENOENT' ? [...this.#files.values()].find((x) => x.node === n && !x.device) : undefined;
      if (!f) throw e;
      attr = await f.use((handle) => f.backend.fstat(handle));
    }
    this.nodes.remember(n, attr);
    return { ...attr, ino: n.ino };
  }

  /** An entry reply; the attributes are remembered for the node. */
  #reply(n: Node, attr: Attr): Buffer {
    this.nodes.remember(n, attr);
    return entryOut(n.id, { ...attr, ino: n.ino }, this.#o.attrTimeoutS);
  }

  /** Before a change of extended attributes: they and the ctime are no longer known. */
  #xattrsChanging(n: Node): void {
    this.nodes.stale(n);
    this.nodes.absentXattr(n);
  }

  async #lookup(parent: Node, name: string, who: Caller): Promise<Buffer[]> {
    if (parent.kind === 'root') {
      if (!(await this.#o.hosts()).some((h) => h.name === name)) throw errnoError('ENOENT');
      const n = this.nodes.lookup('host', name, '', '', 0);
      return [this.#reply(n, this.#dirAttr(n))];
    }
    if (parent.kind === 'host') {
      const host = (await this.#o.hosts()).find((h) => h.name === parent.host);
      const exp = host?.exports.find((e) => e.name === name);
      if (!exp) throw errnoError('ENOENT');
      if (!mayUse(exp, this.#o.self, parent.host)) throw errnoError('ENOENT');
      const b = this.#owner(parent.host, who);
      if (exp.kind === 'device') return [this.#reply(this.nodes.lookup('device', parent.host, name, '', 0), await b.deviceStat(name))];
      return [this.#reply(this.nodes.lookup('export', parent.host, name, '', 0), await b.lstat(name, ''))];
    }
    const { n, rel } = this.#child(parent, name);
    let attr: Attr;
    try {
      attr = await this.#owner(n.host, who).lstat(n.exp, rel);
    } catch (e) {
      // A missing name is remembered by the kernel for the attribute timeout (node id 0), as NFS
      // does: a program probing for files (PATH, imports) costs one round trip per name, not per probe.
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [entryOut(0n, this.#dirAttr(parent), this.#o.attrTimeoutS)];
      throw e;
    }
    return [this.#reply(this.nodes.lookup('entry', n.host, n.exp, rel, attr.ino), attr)];
  }

  async #made(h: Caller, parent: Node, name: string, make: (b: FsBackend, exp: string, rel: string) => Promise<Made>): Promise<Buffer[]> {
    const { n, rel } = this.#child(parent, name);
    const { attr, dir } = await make(this.#owner(n.host, h), n.exp, rel);
    this.nodes.remember(parent, dir);
    return [this.#reply(this.nodes.lookup('entry', n.host, n.exp, rel, attr.ino), attr)];
  }

  async #setattr(n: Node, b: Buffer, who: Caller): Promise<Attr> {
    if (n.kind === 'root' || n.kind === 'host') throw errnoError('EPERM');
    if (n.kind === 'device') return this.#attr(n); // truncating a device (shell '>') changes nothing
    const valid = b.readUInt32LE(0);
    const ns = (sec: bigint, nsec: number) => sec * 1_000_000_000n + BigInt(nsec);
    const changes = {
      ...(valid & FATTR.MODE ? { mode: b.readUInt32LE(68) } : {}),
      ...(valid & FATTR.UID ? { uid: b.readUInt32LE(76) } : {}),
      ...(valid & FATTR.GID ? { gid: b.readUInt32LE(80) } : {}),
      ...(valid & FATTR.SIZE ? { size: Number(b.readBigUInt64LE(16)) } : {}),
      ...(valid & FATTR.ATIME ? { atimeNs: valid & FATTR.ATIME_NOW ? ('now' as const) : ns(b.readBigUInt64LE(32), b.readUInt32LE(56)) } : {}),
      ...(valid & FATTR.MTIME ? { mtimeNs: valid & FATTR.MTIME_NOW ? ('now' as const) : ns(b.readBigUInt64LE(40), b.readUInt32LE(60)) } : {}),
    };
    const f = valid & FATTR.FH ? this.#files.get(b.readBigUInt64LE(8)) : undefined;
    await this.#drainNode(n);
    if (valid & FATTR.SIZE) this.#o.cache.changed(n);
    const owner = this.#owner(n.host, who);
    const attr = await (f ? f.use((fh) => owner.setattr(n.exp, n.rel, changes, fh)) : owner.setattr(n.exp, n.rel, changes));
    this.nodes.remember(n, attr);
    return { ...attr, ino: n.ino };
  }

  /** A device opens as a stream: direct I/O, no file position, nothing cached. */
  async #openDevice(n: Node, flags: number): Promise<Buffer[]> {
    const backend = this.#o.backend(n.host);
    const { handle } = await backend.openDevice(n.exp, flags);
    const fh = this.#nextFh++;
    this.#files.set(fh, new OpenFile({ node: n, backend, handle, flags, device: true, nodes: this.nodes, cache: this.#o.cache }));
    this.#o.journal?.add(['o', String(fh), String(n.id), flags, 0, true]);
    return [openOut(fh, FOPEN_DIRECT_IO | FOPEN_NONSEEKABLE | FOPEN_STREAM)];
  }

  /** fuse_poll_out; a device not ready yet is watched, and the kernel woken (NOTIFY_POLL) once it is. */
  async #poll(f: OpenFile, kh: bigint, flags: number, events: number): Promise<Buffer> {
    const revents = f.device ? await f.use((dh) => f.backend.pollDevice(dh, events)) : events; // files are always ready
    if (revents === 0 && flags & FUSE_POLL_SCHEDULE_NOTIFY) {
      this.#pollWatch.set(kh, { f, events });
      this.#pollTimer ??= setInterval(() => void this.#checkPolls(), POLL_WATCH_MS);
    }
    const out = Buffer.alloc(8);
    out.writeUInt32LE(revents, 0);
    return out;
  }

  async #checkPolls(): Promise<void> {
    for (const [kh, w] of this.#pollWatch) {
      const ready = w.f.closed || (await w.f.use((dh) => w.f.backend.pollDevice(dh, w.events)).catch(() => 1)) !== 0;
      if (!ready || !this.#pollWatch.has(kh)) continue;
      this.#pollWatch.delete(kh);
      const b = Buffer.alloc(8);
      b.writeBigUInt64LE(kh, 0);
      this.#o.notify(FUSE_NOTIFY_POLL, b);
    }
    if (this.#pollWatch.size === 0 && this.#pollTimer) {
      clearInterval(this.#pollTimer);
      this.#pollTimer = undefined;
    }
  }

  async #open(n: Node, flags: number, who: Caller): Promise<Buffer[]> {
    const backend = this.#owner(n.host, who);
    const r = await backend.open(n.exp, n.rel, flags);
    return [this.#opened(n, backend, r.handle, flags, r.attr, who)];
  }

  /**
   * Registers an open file; a local one gets the node's passthrough backing file. A remote one
   * keeps the kernel's cached pages when the owner's version is the one seen at the last open
   * (close-to-open: a change made anywhere before this open is seen by it).
   */
  #opened(node: Node, backend: FsBackend, handle: number, flags: number, attr: Attr, who: Caller): Buffer {
    const fh = this.#nextFh++;
    const version = `${attr.mtimeNs}:${attr.ctimeNs}:${attr.size}`;
    const keepCache = !backend.local && node.version === version;
    node.version = version;
    this.nodes.remember(node, attr);
    const dev = this.#o.device();
    let backingId = 0;
    if (backend.local && dev.passthrough) {
      try {
        if (!node.backing) {
          const fd = this.#o.localFd(handle);
          node.backing = { id: call((ctx) => loadBinding().fuseBackingOpen(dev.fd, fd, ctx)), refs: 0 };
        }
        node.backing.refs++;
        backingId = node.backing.id;
      } catch (e) {
        this.#o.log.warn({ op: 'fuse-passthrough', path: node.rel, err: (e as Error).message }, 'passthrough unavailable; serving reads in the daemon');
      }
    }
    this.#files.set(fh, new OpenFile({ node, backend, who, handle, flags, passthrough: backingId !== 0, nodes: this.nodes, cache: this.#o.cache, journal: this.#fileJournal(fh) }));
    this.#o.journal?.add(['o', String(fh), String(node.id), flags, backingId, false, who.uid, who.gid]);
    return openOut(fh, (backingId ? FOPEN_PASSTHROUGH : 0) | (keepCache ? FOPEN_KEEP_CACHE : 0), backingId);
  }

  #file(fh: bigint): OpenFile {
    const f = this.#files.get(fh);
    if (!f) throw errnoError('EBADF');
    return f;
  }

  async #release(fh: bigint): Promise<void> {
    const f = this.#files.get(fh);
    if (!f) return;
    await f.drain().catch(() => {}); // FLUSH already reported write errors to the closer
    this.#files.delete(fh);
    this.#o.journal?.add(['c', String(fh)]);
    this.#flushJournal(); // before its backing file is let go: a journal that still had it open would hand out a closed backing id
    f.closed = true;
    if (f.handle === RESTORED) return this.#dropBacking(f);
    if (f.device) return f.backend.releaseDevice(f.handle);
    this.#dropBacking(f);
    await f.backend.release(f.handle);
  }

  /** The last open file of a node with passthrough closed: its backing file is let go. */
  #dropBacking(f: OpenFile): void {
    if (f.passthrough && f.node.backing && --f.node.backing.refs === 0) {
      const id = f.node.backing.id;
      f.node.backing = undefined;
      try {
        call((ctx) => loadBinding().fuseBackingClose(this.#o.device().fd, id, ctx));
      } catch (e) {
        this.#o.log.warn({ op: 'fuse-backing-close', err: (e as Error).message }, 'closing a backing file failed');
      }
    }
  }

  async #opendir(n: Node, who: Caller): Promise<Buffer[]> {
    const list = await this.#list(n, who);
    const fh = this.#nextFh++;
    this.#dirs.set(fh, { dir: n, list });
    this.#o.journal?.add(['d', String(fh), String(n.id)]);
    return [openOut(fh, 0)];
  }

  /** A directory's entries as READDIR gives them, "." and ".." first. */
  async #list(n: Node, who?: Caller): Promise<Listing> {
    let list: Listing;
    if (n.kind === 'root') list = (await this.#o.hosts()).map((h) => ({ name: h.name, ino: inoOf(keyOf('host', h.name, '', 0)), type: 4 }));
    else if (n.kind === 'host') {
      // A device that is not there (unplugged) is not listed.
      const exports = ((await this.#o.hosts()).find((h) => h.name === n.host)?.exports ?? []).filter((e) => mayUse(e, this.#o.self, n.host));
      const present = await Promise.all(exports.map((e) => e.kind === 'dir' || this.#o.backend(n.host).deviceStat(e.name).then(() => true, () => false)));
      list = exports.filter((_, i) => present[i]).map((e) => ({ name: e.name, ino: inoOf(keyOf(e.kind === 'dir' ? 'export' : 'device', n.host, e.name, 0)), type: e.kind === 'dir' ? 4 : 8 }));
    }
    else list = (await this.#listing(n, who)).map((e: DirEntry) => ({ name: e.name, ino: inoOf(keyOf('entry', n.host, n.exp, e.attr.ino)), type: (e.attr.mode >> 12) & 15, attr: e.attr }));
    return [{ name: '.', ino: n.ino, type: 4 }, { name: '..', ino: 1, type: 4 }, ...list];
  }

  /** Every entry of a directory inside an export, asked of its owner a page at a time (no reply grows with the directory). */
  async #listing(n: Node, who?: Caller): Promise<DirEntry[]> {
    const b = this.#owner(n.host, who);
    const out: DirEntry[] = [];
    let cursor: number | undefined;
    do {
      const page = await b.readdir(n.exp, n.rel, cursor);
      for (const e of page.entries) out.push(e);
      cursor = page.cursor;
    } while (cursor !== undefined);
    return out;
  }

  /**
   * READDIR, or READDIRPLUS: each entry inside an export then comes with its node and attributes,
   * sparing the kernel a LOOKUP per name (`ls -l`, `find`, `tar`). An entry counts as a lookup only
   * if it fits in the reply; the others (".", "..", the fixed levels) go with node id 0.
   */
  async #readdir(fh: bigint, offset: number, size: number, plus: boolean): Promise<Buffer[]> {
    const d = this.#dirs.get(fh);
    if (!d) throw errnoError('EBADF');
    const list = (d.list ??= await this.#list(d.dir)); // a directory restored from the journal is listed again
    const out: Buffer[] = [];
    let room = size;
    for (let i = offset; i < list.length; i++) {
      const e = list[i];
      const withNode = plus && e.attr !== undefined && e.name !== '.' && e.name !== '..';
      const entry = plus ? entryOut(0n, { ...(e.attr ?? this.#dirAttr(d.dir)), ino: e.ino }, 0) : undefined;
      const buf = dirent(e.name, e.ino, i + 1, e.type, room, entry);
      if (!buf) break;
      if (withNode) {
        const { n, rel } = this.#child(d.dir, e.name);
        const node = this.nodes.lookup('entry', n.host, n.exp, rel, e.attr!.ino);
        this.nodes.remember(node, e.attr!);
        entryOut(node.id, { ...e.attr!, ino: node.ino }, this.#o.attrTimeoutS).copy(buf, 0);
      }
      out.push(buf);
      room -= buf.length;
    }
    return out;
  }
}
