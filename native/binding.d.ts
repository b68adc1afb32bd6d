// Every function the native addon exports (native/src/addon.cc registers them).
// Functions that make a syscall take a context object last: on failure they return
// undefined and fill it with { errno, syscall } (see common/errors.ts systemError).
import type { SyscallContext } from '../common/errors.js';

export interface PeerCredentials { pid: number; uid: number; gid: number }
export interface UffdApi { features: number; ioctls: number }

export interface NativeBinding {
  /** This thread's filesystem identity becomes uid:gid with no supplementary groups (setfsuid, setfsgid, setgroups, per thread). */
  actAs(uid: number, gid: number, ctx: SyscallContext): true | undefined;
  /** This thread's filesystem identity and groups as the process's again. */
  actAsSelf(): void;
  /** getsockopt(SO_PEERCRED) on a connected unix socket. */
  peerCred(fd: number, ctx: SyscallContext): PeerCredentials | undefined;
  /** Opens a userfaultfd, negotiates UFFDIO_API with no features, reports what the kernel offers. */
  uffdProbe(ctx: SyscallContext): UffdApi | undefined;

  /** open("/dev/fuse"), close-on-exec. */
  fuseOpen(ctx: SyscallContext): number | undefined;
  /** mount(2) of a FUSE connection on `target` ("fd=N,rootmode=40000,user_id=0,group_id=0," + extra). */
  fuseMount(fd: number, target: string, fsname: string, extraOptions: string, ctx: SyscallContext): true | undefined;
  /** umount2(2), MNT_DETACH when `lazy`. */
  fuseUnmount(target: string, lazy: boolean, ctx: SyscallContext): true | undefined;
  /** FUSE_DEV_IOC_BACKING_OPEN: a backing id for FOPEN_PASSTHROUGH. */
  fuseBackingOpen(devFd: number, fileFd: number, ctx: SyscallContext): number | undefined;
  /** FUSE_DEV_IOC_BACKING_CLOSE. */
  fuseBackingClose(devFd: number, id: number, ctx: SyscallContext): true | undefined;
  /** One reply in one writev(2). */
  fuseWrite(fd: number, parts: Buffer[], ctx: SyscallContext): number | undefined;
  /** Reads requests from `fd` (made non-blocking) on this thread's event loop and calls `onRequest` with each; `onEnd(errno)` when the connection ends (it closes `fd`). */
  fuseStartReader(fd: number, bufferSize: number, onRequest: (request: Buffer) => void, onEnd: (errno: number) => void): void;
  /** openat2(2): `resolve` is RESOLVE_* bits; O_CLOEXEC is always added. */
  openat2(dirfd: number, path: string, flags: number, mode: number, resolve: number, ctx: SyscallContext): number | undefined;
  /** F_OFD_GETLK / F_OFD_SETLK (never F_OFD_SETLKW): `type` is F_RDLCK 0, F_WRLCK 1, F_UNLCK 2; len 0 = to the end. */
  ofdLock(fd: number, cmd: 'get', type: number, start: number, len: number, ctx: SyscallContext): { type: number; start: number; len: number } | undefined;
  ofdLock(fd: number, cmd: 'set', type: number, start: number, len: number, ctx: SyscallContext): true | undefined;
  /** flock(2); pass LOCK_NB (4) to never block. */
  flock(fd: number, operation: number, ctx: SyscallContext): true | undefined;
  renameat2(olddirfd: number, oldname: string, newdirfd: number, newname: string, flags: number, ctx: SyscallContext): true | undefined;
  mknodat(dirfd: number, name: string, mode: number, rdev: number, ctx: SyscallContext): true | undefined;
  /** utimensat(2) on a path (followed), nanoseconds kept; an nsec of -1 is now, -2 leaves that time as it is. */
  utimens(path: string, atimeSec: number, atimeNsec: number, mtimeSec: number, mtimeNsec: number, ctx: SyscallContext): true | undefined;
  fallocate(fd: number, mode: number, offset: number, length: number, ctx: SyscallContext): true | undefined;
  lseek(fd: number, offset: number, whence: number, ctx: SyscallContext): number | undefined;
  copyFileRange(fdIn: number, offIn: number, fdOut: number, offOut: number, length: number, ctx: SyscallContext): number | undefined;
  /** l*xattr: on `path` itself, never following its last component. */
  getxattr(path: string, name: string, ctx: SyscallContext): Buffer | undefined;
  listxattr(path: string, ctx: SyscallContext): Buffer | undefined;
  setxattr(path: string, name: string, value: Buffer, flags: number, ctx: SyscallContext): true | undefined;
  removexattr(path: string, name: string, ctx: SyscallContext): true | undefined;
  /** poll(2) of one fd with a zero timeout: the revents now. */
  pollNow(fd: number, events: number, ctx: SyscallContext): number | undefined;
  /** The present pages of `ranges` ([start, end, …], page-aligned) of a process, and their XXH3-128 hashes; on a worker thread. */
  pageScan(pid: number, ranges: number[], idle: boolean): Promise<{ addrs: Buffer; hashes: Buffer } | Required<SyscallContext>>;
  /** The contents of pages (addresses as u64 LE), 4 KiB each; a page unmapped meanwhile ends it early. */
  readPages(pid: number, addrs: Buffer, ctx: SyscallContext): Buffer | undefined;
  /** readPages on a pool thread, for a running process (process_vm_readv waits while it is in execve). */
  readPagesAsync(pid: number, addrs: Buffer): Promise<Buffer | Required<SyscallContext>>;
  /** XXH3-128 of each 4 KiB page of `data`, 16 bytes each. */
  hashPages(data: Buffer): Buffer;
  /** A listening unix seqpacket socket at `path`, for a pager keeper (pj-pager-keeper's descriptor 3). */
  pagerKeeperListen(path: string, ctx: SyscallContext): number | undefined;
  /**
   * Listens on `socketPath` as CRIU's lazy-pages daemon does and starts the pager thread, which tells the keeper at `keeperPath`
   * ('' for none) of every task; events: 0 task arrived, 1 fault on a page not supplied, 2 task gone, 3 stored page damaged, 4 keeper lost.
   */
  pagerStart(socketPath: string, onEvent: (kind: number, pid: number, addr: number) => void, ctx: SyscallContext, cpu: number, keeperPath: string): number | undefined;
  /** A pager for the tasks the keeper at `keeperPath` holds (a dead agent's pager's): a task event for each at once. */
  pagerAdopt(keeperPath: string, onEvent: (kind: number, pid: number, addr: number) => void, ctx: SyscallContext, cpu: number): number | undefined;
  /** Pages for a task (addresses u64 LE, 4 KiB of data each), installed by the pager's thread (in the background, or only when faulted). */
  pagerSupply(handle: number, pid: number, addrs: Buffer, data: Buffer, background: boolean, remote: boolean): true;
  pagerSupplyStored(handle: number, pid: number, addrs: Buffer, fds: Buffer, offsets: Buffer, hashes: Buffer): boolean;
  pagerStats(handle: number): PagerStats;
  pagerStop(handle: number): void;
  /** Listens on a unix seqpacket socket at `path`; each message of each connection (with the descriptors it carries, and the sender's pid) comes to `onMessage`, then `null` once the connection ends (closed then). */
  seqpacketServe(path: string, onMessage: (fd: number, data: Buffer | null, fds: number[], pid: number) => void, ctx: SyscallContext): number | undefined;
  /** A connection to a unix seqpacket socket at `path`; its messages come to `onMessage` as seqpacketServe's. */
  seqpacketConnect(path: string, onMessage: (fd: number, data: Buffer | null, fds: number[], pid: number) => void, ctx: SyscallContext): number | undefined;
  /** One message with descriptors attached (SCM_RIGHTS), never blocking. */
  seqpacketSend(fd: number, data: Buffer, fds: number[], ctx: SyscallContext): true | undefined;
  closeFd(fd: number): void;
  dupFd(fd: number, ctx: SyscallContext): number | undefined;
  /** A duplicate of another process's descriptor (pidfd_getfd). */
  fdOfProcess(pid: number, fd: number, ctx: SyscallContext): number | undefined;
  /** A TCP connection (non-blocking fd, TCP_NODELAY) made on a worker thread within `timeoutMs`, `hello` written first. */
  tcpConnect(ip: string, port: number, timeoutMs: number, hello?: Buffer): Promise<number | Required<SyscallContext>>;
}

export interface PagerStats { tasks: number; waiting: number; installed: number; faults: number; faultsOnSupplied: number; faultsHanded: number; faultsFetched: number;
  /** Non-cooperative events followed: children forked, ranges moved (mremap), ranges unmapped or dropped. */
  forks: number; remaps: number; drops: number;
  localP50Ns: number; localP99Ns: number; handedP50Ns: number; handedP99Ns: number; fetchedP50Ns: number; fetchedP99Ns: number }
