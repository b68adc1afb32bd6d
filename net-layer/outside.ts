// The outside ends of jobs' connections, on the host that holds them (the host
// a route names, or the host a published port listens on). They live in this
// host's connection holder (holder.ts), not in the manager, so that a manager's
// death costs no connection: a job's init on this host relays a duplicate itself
// ("direct"); a job on another host reaches it through a tunnel the holder
// relays, which a detach pauses (flushed, then half-closed) so that the job's
// init can read every byte to the end before it goes.
import { randomBytes } from 'node:crypto';
import { constants as os } from 'node:os';
import { loadBinding as native } from '../native/loader.js';
import { PjError, codes } from '../common/errors.js';
import { resolveHere } from './dns.js';
import { Hold, HOLD_RESET, HOLD_TOKEN_BYTES, type HolderLink } from './holder.js';

/** How long a connect from this host, or a tunnel to another, may take. */
export const CONNECT_TIMEOUT_MS = 5000;
/** How long a connection may stay busy with a tunnel that is ending (longer than a job's init waits for it: relay.c's DRAIN_MS). */
const BUSY_MS = 35_000;
const ASK_MS = 5000;

export interface Ticket { address: string; port: number; token: string }

/** Where jobs may not connect: the cluster's own services (etcd, which takes no client credentials here). */
export type ClosedToJobs = Array<{ ip: string; port: number }>;

export class OutsideConnections {
  constructor(private readonly holder: HolderLink, private readonly address: string, private readonly closed: ClosedToJobs = []) {}

  /** Connects from this host to addr:port, or to `name` (resolved here) when the job asked for a name: the connection's key. */
  async connect(addr: string, name: string | undefined, port: number, job: string, timeoutMs: number): Promise<bigint> {
    const ip = name ? (await resolveHere(name))?.[0] : addr;
    if (!ip) throw Object.assign(new Error(`${name} does not resolve here`), { errno: os.errno.EHOSTUNREACH });
    if (this.closed.some((c) => c.ip === ip && c.port === port)) throw Object.assign(new Error(`${ip}:${port} is the cluster's own (etcd): not for jobs`), { errno: os.errno.ECONNREFUSED });
    const r = await native().tcpConnect(ip, port, timeoutMs);
    if (typeof r !== 'number') throw Object.assign(new Error(`connect ${ip}:${port}: errno ${r.errno}`), { errno: r.errno });
    return this.adopt(r, job, `${name ?? addr}:${port}`);
  }

  /** Hands a connected socket's descriptor to the holder (closed here): its key. */
  async adopt(fd: number, job: string, target: string): Promise<bigint> {
    try {
      return (await this.holder.request({ type: Hold.Adopt, job, target }, ASK_MS, [fd])).m.key;
    } finally {
      native().closeFd(fd);
    }
  }

  /** A duplicate of the socket for a job's init on this host, once no tunnel uses it. */
  async direct(key: bigint): Promise<number> {
    const { fd } = await this.#ask(Hold.Dup, key, BUSY_MS);
    if (fd === undefined) throw new Error(`connection ${key}: the holder sent no descriptor`);
    return fd;
  }

  /** A one-time ticket with which a host's manager opens a tunnel to this connection (once no other tunnel uses it). */
  async ticket(key: bigint): Promise<Ticket> {
    const token = randomBytes(HOLD_TOKEN_BYTES);
    await this.#ask(Hold.Ticket, key, BUSY_MS, token);
    return { address: this.address, port: this.holder.port, token: token.toString('hex') };
  }

  /** Before the job's init detaches: its tunnel is flushed to it and ended; resolves once the init closed it. */
  async pause(key: bigint): Promise<void> {
    await this.#ask(Hold.Pause, key, BUSY_MS);
  }

  /** The job is done with it (reset: it ended in error). */
  close(key: bigint, reset = false): void {
    this.holder.tell({ type: Hold.Close, key, flags: reset ? HOLD_RESET : 0 });
  }

  /** A job that went away without a word: its connections go unless it comes back for them. */
  orphan(keys: bigint[]): void {
    for (const key of keys) this.holder.tell({ type: Hold.Orphan, key });
  }

  /** The holder keeps a duplicate of a published port's listening socket (closed here): connections queue while no manager accepts. */
  async keepListener(fd: number, port: number, job: string): Promise<void> {
    try {
      await this.holder.request({ type: Hold.Listen, port, job }, ASK_MS, [fd]);
    } finally {
      native().closeFd(fd);
    }
  }

  /** The listening socket the holder kept for `port` (a manager before this one published it), if any. */
  async keptListener(port: number): Promise<number | undefined> {
    try {
      return (await this.holder.request({ type: Hold.Listener, port }, ASK_MS)).fd;
    } catch (e) {
      if ((e as { errno?: number }).errno === os.errno.ENOENT) return undefined;
      throw e;
    }
  }

  /** `port` is no longer published here: the holder's listening socket goes too. */
  unpublish(port: number): void {
    this.holder.tell({ type: Hold.Unlisten, port });
  }

  async stats(): Promise<{ connections: number; tunnels: number }> {
    const { m } = await this.holder.request({ type: Hold.Stats }, ASK_MS);
    return { connections: Number(m.key), tunnels: m.flags };
  }

  /** Every connection ends with the holder (the manager stops for good). */
  closeAll(): void {
    this.holder.shutdown();
  }

  async #ask(type: number, key: bigint, timeoutMs: number, token?: Buffer): Promise<{ fd?: number }> {
    try {
      return await this.holder.request({ type, key, token }, timeoutMs);
    } catch (e) {
      if ((e as { errno?: number }).errno === os.errno.ENOENT) throw new PjError(codes.USAGE, `no connection ${key} here (closed, or its holder restarted)`);
      throw e;
    }
  }
}
