// Keeps this host's FUSE connection alive while its agent is not: a process
// that does nothing but hold a duplicate of /dev/fuse. A mount lives as long as
// some process holds its device, so when the agent dies the kernel queues the
// jobs' /pj requests instead of failing them (ENOTCONN); the next agent takes
// the device back from the keeper (pidfd_getfd), asks the kernel to send again
// what the dead agent had read but not answered, and serves on. The keeper is
// named in the state dir with what INIT agreed, which a taken-over connection
// never repeats.
import { spawn } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Log } from '../common/log.js';
import { call, loadBinding } from '../native/loader.js';
import type { SessionInfo } from './fuse-session.js';

/** The keeper's descriptor number for the device. */
const KEPT_FD = 3;
const NAME = 'pj-fuse-keeper';

interface KeeperRecord { pid: number; mount: string; connection: number; info: SessionInfo }

/** A connection taken back from a keeper. */
export interface TakenConnection { fd: number; connection: number; info: SessionInfo }

export class FuseKeeper {
  readonly #file: string;

  constructor(stateDir: string, private readonly mount: string, private readonly log: Log) {
    this.#file = join(stateDir, 'fuse-keeper.json');
  }

  /** The connection a keeper holds for `mount`, if one is alive and still mounted there. */
  takeBack(): TakenConnection | undefined {
    const r = this.#record();
    if (!r || r.mount !== this.mount) return undefined;
    if (!isKeeper(r.pid) || !mountedConnection(this.mount, r.connection)) {
      this.log.info({ op: 'fuse-keeper', pid: r.pid }, 'no live connection left by the last agent: mounting afresh');
      this.end();
      return undefined;
    }
    let fd: number;
    try {
      fd = call((ctx) => loadBinding().fdOfProcess(r.pid, KEPT_FD, ctx));
    } catch (e) {
      this.log.warn({ op: 'fuse-keeper', err: (e as Error).message }, 'could not take /pj back from its keeper: mounting afresh');
      this.end();
      return undefined;
    }
    this.log.info({ op: 'fuse-keeper', pid: r.pid, connection: r.connection }, 'took back /pj from its keeper: jobs saw no unmount');
    return { fd, connection: r.connection, info: r.info };
  }

  /** Hands a duplicate of the connection `fd` to a fresh keeper (ending any older one). */
  keep(fd: number, connection: number, info: SessionInfo): void {
    this.end();
    const child = spawn('sleep', ['infinity'], { argv0: NAME, detached: true, stdio: ['ignore', 'ignore', 'ignore', fd] });
    child.unref();
    if (child.pid === undefined) {
      this.log.warn({ op: 'fuse-keeper' }, 'could not start a keeper: /pj will not outlive this agent');
      return;
    }
    const record: KeeperRecord = { pid: child.pid, mount: this.mount, connection, info };
    writeFileSync(this.#file, JSON.stringify(record));
  }

  /** Whether a keeper holds the connection now. */
  get keeping(): boolean {
    const r = this.#record();
    return r !== undefined && isKeeper(r.pid);
  }

  /** Ends the keeper (the connection ends with the last holder of its device). */
  end(): void {
    const r = this.#record();
    if (r && isKeeper(r.pid)) try { process.kill(r.pid, 'SIGKILL'); } catch { /* gone */ }
    rmSync(this.#file, { force: true });
  }

  #record(): KeeperRecord | undefined {
    try {
      return JSON.parse(readFileSync(this.#file, 'utf8')) as KeeperRecord;
    } catch {
      return undefined;
    }
  }
}

/** Whether `pid` is still our keeper (and not another process that got its number). */
function isKeeper(pid: number): boolean {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0')[0] === NAME;
  } catch {
    return false;
  }
}

/**
 * Whether `mount` is mounted with FUSE connection `connection`, read from mountinfo: a stat of
 * the mount would wait for an answer that only we can give.
 */
function mountedConnection(mount: string, connection: number): boolean {
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const f = line.split(' ');
    if (f[4] !== mount) continue;
    const [, minor] = f[2].split(':').map(Number);
    const fstype = f[f.indexOf('-') + 1];
    if (fstype === 'fuse.pj' && minor === connection) return true;
  }
  return false;
}
