// One FUSE connection: mount(2) of our own /dev/fuse, the INIT handshake
// (passthrough, 1 MiB writes, max_stack_depth 1), and the loop that hands each
// request to the filesystem and writes its reply. Requests are read from the
// non-blocking device on this thread's event loop; replies are one writev each.
import { existsSync, mkdirSync, readFileSync, writeFileSync, statSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import { constants } from 'node:os';
import type { Log } from '../common/log.js';
import { run } from '../common/run.js';
import type { TakenConnection } from './fuse-keeper.js';
import { call, loadBinding } from '../native/loader.js';
import {
  FUSE_KERNEL_MINOR_VERSION, FUSE_KERNEL_VERSION, IN_HEADER, InitFlag, InitFlag2, Op, OUT_HEADER, opName, outHeader, parseHeader,
  type RequestHeader,
} from './protocol.js';

export const MAX_WRITE = 1 << 20;
const READ_BUFFER = MAX_WRITE + 4096;

export interface FuseRequest { header: RequestHeader; body: Buffer }
/** Reply body parts, or `null` for requests that take no reply (FORGET). Throw an errno error to fail. */
export type FuseHandler = (req: FuseRequest) => Promise<Buffer[] | null> | Buffer[] | null;

export interface SessionInfo { passthrough: boolean; minor: number }

const FUSECTL = '/sys/fs/fuse/connections';
const FUSE_NOTIFY_RESEND = 7;

export class FuseSession {
  readonly devFd: number;
  readonly target: string;
  #handler: FuseHandler;
  #log: Log;
  #info: SessionInfo = { passthrough: false, minor: 0 };
  #ready: Promise<SessionInfo>;
  #resolveReady!: (i: SessionInfo) => void;
  #ended: Promise<number>;
  #unmounting = false;
  #leaving = false;
  /** The kernel's number for this connection (the minor of the mount's device): its folder under /sys/fs/fuse/connections. */
  connection = 0;

  private constructor(devFd: number, target: string, handler: FuseHandler, log: Log) {
    this.devFd = devFd;
    this.target = target;
    this.#handler = handler;
    this.#log = log;
    this.#ready = new Promise((r) => (this.#resolveReady = r));
    let onEnd!: (e: number) => void;
    this.#ended = new Promise((r) => (onEnd = r));
    loadBinding().fuseStartReader(devFd, READ_BUFFER, (req) => this.#onRequest(req), (errno) => {
      if (errno !== constants.errno.ENODEV) this.#log.warn({ op: 'fuse-end', errno }, 'FUSE channel ended');
      onEnd(errno);
    });
  }

  /** Mounts a fresh FUSE connection on `target` (detaching a stale one first) and waits for INIT. */
  static async mount(target: string, handler: FuseHandler, log: Log): Promise<FuseSession> {
    detachStale(target, log);
    mkdirSync(target, { recursive: true });
    const b = loadBinding();
    const fd = call((ctx) => b.fuseOpen(ctx));
    call((ctx) => b.fuseMount(fd, target, 'pj', 'allow_other,default_permissions', ctx), target);
    const s = new FuseSession(fd, target, handler, log);
    let timer: NodeJS.Timeout | undefined;
    const info = await Promise.race([s.#ready, new Promise<never>((_, rej) => (timer = setTimeout(() => rej(new Error('FUSE INIT did not arrive within 5 s')), 5000)))])
      .finally(() => clearTimeout(timer));
    s.connection = await raiseReadAhead(target, log);
    log.info({ op: 'fuse-mount', target, passthrough: info.passthrough, protocol: `7.${info.minor}` }, 'mounted /pj');
    return s;
  }

  /**
   * Serves a connection taken back from a keeper (see fuse-keeper.ts): INIT was agreed with the
   * last agent, and what it had read but not answered the kernel sends again (FUSE_NOTIFY_RESEND).
   */
  static takeOver(taken: TakenConnection, target: string, handler: FuseHandler, log: Log): FuseSession {
    const s = new FuseSession(taken.fd, target, handler, log);
    s.#info = taken.info;
    s.#resolveReady(taken.info);
    s.connection = taken.connection;
    s.notify(FUSE_NOTIFY_RESEND, Buffer.alloc(0));
    log.info({ op: 'fuse-mount', target, passthrough: taken.info.passthrough, protocol: `7.${taken.info.minor}` }, 'serving /pj again');
    return s;
  }

  get info(): SessionInfo { return this.#info; }

  /** Resolves with the errno the connection ended with, when it ends other than by unmount(). */
  get lost(): Promise<number> {
    return this.#ended.then((errno) => (this.#unmounting ? new Promise<number>(() => {}) : errno));
  }

  /**
   * Ends the connection from the kernel's side (fusectl's abort): every request waiting on it fails
   * with ENOTCONN, and its callers go on. For a mount that no longer answers.
   */
  async abort(): Promise<void> {
    if (!existsSync(`${FUSECTL}/${this.connection}`)) await run('mount', ['-t', 'fusectl', 'none', FUSECTL], { allowFail: true });
    writeFileSync(`${FUSECTL}/${this.connection}/abort`, '1');
  }

  /** Lazily unmounts; the reader ends once the kernel lets go of the connection. */
  async unmount(): Promise<void> {
    this.#unmounting = true;
    try {
      call((ctx) => loadBinding().fuseUnmount(this.target, true, ctx), this.target);
    } catch (e) {
      this.#log.warn({ op: 'fuse-unmount', err: (e as Error).message }, 'unmount failed');
    }
    await Promise.race([this.#ended, new Promise((r) => setTimeout(r, 2000))]);
  }

  /**
   * Stops answering, leaving the connection to the keeper: requests read from now on stay unanswered
   * in the kernel, which sends them again to the next agent (FUSE_NOTIFY_RESEND).
   */
  leave(): void {
    this.#leaving = true;
  }

  #onRequest(buf: Buffer): void {
    if (this.#leaving) return;
    const header = parseHeader(buf);
    const body = buf.subarray(IN_HEADER, header.len);
    if (header.opcode === Op.INIT) return this.#init(header, body);
    let result: ReturnType<FuseHandler>;
    try {
      result = this.#handler({ header, body });
    } catch (e) {
      return this.#fail(header, e);
    }
    if (result instanceof Promise) result.then((parts) => this.#reply(header, parts), (e) => this.#fail(header, e));
    else this.#reply(header, result);
  }

  /** An unsolicited message to the kernel (e.g. FUSE_NOTIFY_POLL): unique 0, the code in the error field. */
  notify(code: number, body: Buffer): void {
    this.#write([outHeader(OUT_HEADER + body.length, code, 0n), body]);
  }

  #reply(h: RequestHeader, parts: Buffer[] | null): void {
    if (parts === null) return;
    const len = OUT_HEADER + parts.reduce((n, p) => n + p.length, 0);
    this.#write([outHeader(len, 0, h.unique), ...parts]);
  }

  #fail(h: RequestHeader, e: unknown): void {
    const raw = (e as NodeJS.ErrnoException)?.code;
    // A host that does not answer in time is ETIMEDOUT to the caller; any other failure of ours is EIO.
    const code = raw === 'PJ_ERR_TIMEOUT' ? 'ETIMEDOUT' : raw;
    const errno = (code && (constants.errno as Record<string, number>)[code]) || constants.errno.EIO;
    if (!code || !(code in constants.errno)) {
      this.#log.warn({ op: 'fuse-' + (opName.get(h.opcode) ?? h.opcode), pid: h.pid, err: (e as Error)?.message }, 'request failed');
    }
    this.#write([outHeader(OUT_HEADER, -errno, h.unique)]);
  }

  #write(parts: Buffer[]): void {
    try {
      call((ctx) => loadBinding().fuseWrite(this.devFd, parts, ctx));
    } catch (e) {
      // ENOENT: the request was interrupted and is gone; ENODEV: unmounted meanwhile.
      const code = (e as NodeJS.ErrnoException).code;
      if (code !== 'ENOENT' && code !== 'ENODEV') this.#log.warn({ op: 'fuse-reply', err: (e as Error).message }, 'reply failed');
    }
  }

  #init(h: RequestHeader, body: Buffer): void {
    const major = body.readUInt32LE(0);
    const minor = body.readUInt32LE(4);
    const maxReadahead = body.readUInt32LE(8);
    const flags = body.readUInt32LE(12);
    const flags2 = minor >= 36 && flags & InitFlag.INIT_EXT ? body.readUInt32LE(16) : 0;
    if (major !== FUSE_KERNEL_VERSION) {
      this.#log.error({ op: 'fuse-init', major }, 'unsupported FUSE major version');
      return this.#write([outHeader(OUT_HEADER, -constants.errno.EPROTO, h.unique)]);
    }
    const want = InitFlag.ASYNC_READ | InitFlag.BIG_WRITES | InitFlag.MAX_PAGES | InitFlag.INIT_EXT | InitFlag.PARALLEL_DIROPS
      | InitFlag.ATOMIC_O_TRUNC | InitFlag.ASYNC_DIO | InitFlag.AUTO_INVAL_DATA | InitFlag.POSIX_LOCKS | InitFlag.FLOCK_LOCKS
      | InitFlag.DO_READDIRPLUS | InitFlag.READDIRPLUS_AUTO;
    // Passthrough needs protocol 7.40; asking for FUSE_WRITEBACK_CACHE would switch it off, so we never do.
    const passthrough = minor >= 40 && (flags2 & InitFlag2.PASSTHROUGH) !== 0;
    const out = Buffer.alloc(64);
    out.writeUInt32LE(FUSE_KERNEL_VERSION, 0);
    out.writeUInt32LE(Math.min(minor, FUSE_KERNEL_MINOR_VERSION), 4);
    out.writeUInt32LE(maxReadahead, 8);
    out.writeUInt32LE(flags & want, 12);
    out.writeUInt16LE(64, 16); // max_background
    out.writeUInt16LE(48, 18); // congestion_threshold
    out.writeUInt32LE(MAX_WRITE, 20);
    out.writeUInt32LE(1, 24); // time_gran: nanoseconds
    out.writeUInt16LE(MAX_WRITE / 4096, 28); // max_pages
    out.writeUInt32LE(passthrough ? InitFlag2.PASSTHROUGH : 0, 32); // flags2
    out.writeUInt32LE(passthrough ? 1 : 0, 36); // max_stack_depth: 0 silently disables passthrough
    this.#info = { passthrough, minor: Math.min(minor, FUSE_KERNEL_MINOR_VERSION) };
    this.#write([outHeader(OUT_HEADER + out.length, 0, h.unique), out]);
    this.#resolveReady(this.#info);
  }
}

/** A mount point left by a manager that died answers ENOTCONN: detach it before mounting afresh. */
function detachStale(target: string, log: Log): void {
  try {
    statSync(target);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOTCONN') return;
    call((ctx) => loadBinding().fuseUnmount(target, true, ctx), target);
    log.warn({ op: 'fuse-stale', target }, 'detached a stale /pj mount');
  }
}

/**
 * The kernel offers 128 KiB of read-ahead; 1 MiB READs serve remote files much faster.
 * The stat must not block this thread: it is a request to ourselves. Returns the connection's number.
 */
async function raiseReadAhead(target: string, log: Log): Promise<number> {
  let minor = 0;
  try {
    const dev = (await stat(target)).dev;
    minor = (dev & 0xff) | ((dev >> 12) & 0xfff00);
    const path = `/sys/class/bdi/${Math.floor(dev / 256) & 0xfff}:${minor}/read_ahead_kb`;
    if (readFileSync(path, 'utf8').trim() !== '1024') writeFileSync(path, '1024');
  } catch (e) {
    log.debug({ op: 'fuse-readahead', err: (e as Error).message }, 'could not raise read-ahead');
  }
  return minor;
}
