// The outside ends of jobs' connections, on the host that holds them (the host
// a route names, or the host a published port listens on). The socket is a bare
// descriptor that no Node stream reads: a job's init on this host relays it
// itself (a dup, "direct"); a job on another host reaches it through a tunnel
// relayed here, which a detach pauses (flushed, then half-closed) so that the
// job's init can read every byte to the end before it goes.
import net from 'node:net';
import { randomBytes } from 'node:crypto';
import { loadBinding as native } from '../native/loader.js';
import { PjError, codes } from '../common/errors.js';
import type { Log } from '../common/log.js';
import { Deframer, EOF_FRAME, frame } from './framing.js';
import { resolveHere } from './dns.js';
import { constants as os } from 'node:os';

const TOKEN_BYTES = 16;
/** How long a connect from this host, or a tunnel to another, may take. */
export const CONNECT_TIMEOUT_MS = 5000;
/** A connection whose job went silent (no tunnel, no direct link) is closed after this long. */
const ORPHAN_MS = 60_000;

export interface Ticket { address: string; port: number; token: string }

class TunnelRelay {
  readonly done: Promise<void>;
  #out: net.Socket;
  #pausing = false;
  get paused(): boolean { return this.#pausing; }

  constructor(fd: number, readonly tunnel: net.Socket, first: Buffer, readonly s: Outside) {
    const dup = native().dupFd(fd, {});
    if (dup === undefined) throw new Error('dup of an outside socket failed');
    // onread: a paused socket stops reading at once, so what it has not read stays in the kernel.
    this.#out = new net.Socket({ fd: dup, allowHalfOpen: true, readable: true, writable: true,
      onread: { buffer: Buffer.allocUnsafe(256 * 1024), callback: (n: number, buf: Uint8Array) => this.#fromOutside(Buffer.from(buf.subarray(0, n))) } } as net.SocketConstructorOpts);
    const out = this.#out;
    const deframer = new Deframer(
      (d) => { if (!out.write(d)) tunnel.pause(); },
      () => out.end(),
    );
    out.on('drain', () => tunnel.resume());
    tunnel.on('drain', () => { if (!this.#pausing) out.resume(); });
    out.on('end', () => { s.outsideEof = true; tunnel.write(EOF_FRAME); });
    this.done = new Promise<void>((resolve) => {
      let ended = false;
      const finish = () => {
        if (ended) return;
        ended = true;
        // The init closed its end (it never half-closes a tunnel: EOF travels in a frame): so does this one.
        tunnel.destroy();
        // the job's last bytes go out before this wrapper (not the socket) closes
        if (out.writableLength === 0) { out.destroy(); resolve(); } else out.once('drain', () => { out.destroy(); resolve(); });
        setTimeout(() => { out.destroy(); resolve(); }, 10_000).unref();
      };
      tunnel.on('data', (d: Buffer) => deframer.push(d));
      tunnel.on('end', finish);
      tunnel.on('close', finish);
      tunnel.on('error', () => {});
      out.on('error', () => { tunnel.destroy(); finish(); });
    });
    if (first.length) deframer.push(first);
    if (s.outsideEof) tunnel.write(EOF_FRAME);
  }

  #fromOutside(d: Buffer): void {
    this.tunnel.cork(); // header and data in one writev
    const [h, data] = frame(d);
    this.tunnel.write(h);
    if (!this.tunnel.write(data)) this.#out.pause();
    this.tunnel.uncork();
  }

  /** Stops reading the outside, flushes what was read and half-closes the tunnel; resolves once the init has closed it. */
  pause(): Promise<void> {
    this.#pausing = true;
    this.#out.pause();
    this.tunnel.end();
    return this.done;
  }
}

export class Outside {
  /** The outside sent its EOF: a tunnel opened later says so at once. */
  outsideEof = false;
  relay: TunnelRelay | undefined;
  /** Why nothing else may take this connection yet (a relay still finishing). */
  busy: Promise<void> = Promise.resolve();
  orphanTimer: NodeJS.Timeout | undefined;

  constructor(readonly key: bigint, readonly fd: number, readonly job: string, readonly target: string) {}
}

export class OutsideConnections {
  #byKey = new Map<bigint, Outside>();
  #tickets = new Map<string, Outside>();
  #server: net.Server | undefined;
  #address = '';
  #port = 0;
  #nextKey = BigInt(Date.now()) << 16n;

  constructor(private readonly log: Log) {}

  /** The tunnel server, on this host's mesh address (any port). */
  async listen(address: string): Promise<void> {
    this.#address = address;
    const server = net.createServer({ allowHalfOpen: true, noDelay: true } as net.ServerOpts, (sock) => this.#tunnelIn(sock));
    this.#server = server;
    await new Promise<void>((resolve, reject) => { server.once('error', reject); server.listen(0, address, () => resolve()); });
    this.#port = (server.address() as net.AddressInfo).port;
  }

  /** Connects from this host to addr:port, or to `name` (resolved here) when the job asked for a name. */
  async connect(addr: string, name: string | undefined, port: number, job: string, timeoutMs: number): Promise<Outside> {
    const ip = name ? (await resolveHere(name))?.[0] : addr;
    if (!ip) throw Object.assign(new Error(`${name} does not resolve here`), { errno: os.errno.EHOSTUNREACH });
    const r = await native().tcpConnect(ip, port, timeoutMs);
    if (typeof r !== 'number') throw Object.assign(new Error(`connect ${ip}:${port}: errno ${r.errno}`), { errno: r.errno });
    return this.adopt(r, job, `${name ?? addr}:${port}`);
  }

  /** Takes a connected socket's descriptor (ours from now on). */
  adopt(fd: number, job: string, target: string): Outside {
    const s = new Outside(this.#nextKey++, fd, job, target);
    this.#byKey.set(s.key, s);
    return s;
  }

  get(key: bigint): Outside {
    const s = this.#byKey.get(key);
    if (!s) throw new PjError(codes.USAGE, `no connection ${key} here (closed, or its host restarted)`);
    clearTimeout(s.orphanTimer);
    return s;
  }

  /** A dup of the socket for a job's init on this host, once no relay uses it. */
  async direct(key: bigint): Promise<number> {
    const s = this.get(key);
    await s.busy;
    const fd = native().dupFd(s.fd, {});
    if (fd === undefined) throw new Error('dup failed');
    return fd;
  }

  /** A one-time ticket with which a host's manager opens a tunnel to this connection. */
  async ticket(key: bigint): Promise<Ticket> {
    const s = this.get(key);
    await s.busy;
    const token = randomBytes(TOKEN_BYTES).toString('hex');
    this.#tickets.set(token, s);
    setTimeout(() => this.#tickets.delete(token), 30_000).unref();
    return { address: this.#address, port: this.#port, token };
  }

  /** Before the job's init detaches: its tunnel is flushed to it and ended. */
  async pause(key: bigint): Promise<void> {
    const s = this.get(key);
    if (s.relay) await s.relay.pause();
  }

  /** The job is done with it (reset: it ended in error). */
  close(key: bigint, reset = false): void {
    const s = this.#byKey.get(key);
    if (!s) return;
    this.#byKey.delete(key);
    clearTimeout(s.orphanTimer);
    s.relay?.tunnel.destroy();
    void s.busy.finally(() => {
      if (reset) new net.Socket({ fd: s.fd, readable: false, writable: false } as net.SocketConstructorOpts).resetAndDestroy(); // RST, as the job's end was
      else native().closeFd(s.fd);
    });
  }

  /** A job that went away without a word: its connections go unless it comes back for them. */
  orphan(keys: bigint[]): void {
    for (const key of keys) {
      const s = this.#byKey.get(key);
      if (!s) continue;
      clearTimeout(s.orphanTimer);
      s.orphanTimer = setTimeout(() => {
        this.log.info({ op: 'net-orphan', job: s.job, target: s.target }, 'closing a connection its job left');
        this.close(key);
      }, ORPHAN_MS);
      s.orphanTimer.unref();
    }
  }

  stats(): { connections: number; tunnels: number } {
    return { connections: this.#byKey.size, tunnels: [...this.#byKey.values()].filter((s) => s.relay).length };
  }

  async closeAll(): Promise<void> {
    for (const key of [...this.#byKey.keys()]) this.close(key);
    await new Promise<void>((r) => (this.#server ? this.#server.close(() => r()) : r()));
  }

  #tunnelIn(sock: net.Socket): void {
    sock.setNoDelay(true);
    let head = Buffer.alloc(0);
    const timer = setTimeout(() => sock.destroy(), 5000);
    const onData = (d: Buffer) => {
      head = Buffer.concat([head, d]);
      if (head.length < TOKEN_BYTES) return;
      sock.off('data', onData);
      clearTimeout(timer);
      const token = head.subarray(0, TOKEN_BYTES).toString('hex');
      const s = this.#tickets.get(token);
      this.#tickets.delete(token);
      if (!s || !this.#byKey.has(s.key)) return void sock.destroy();
      const relay = new TunnelRelay(s.fd, sock, head.subarray(TOKEN_BYTES), s);
      s.relay = relay;
      s.busy = relay.done.then(() => {
        if (s.relay === relay) s.relay = undefined;
        if (!relay.paused) this.orphan([s.key]); // the job's host went away mid-stream: it may come back for it
      });
    };
    sock.on('data', onData);
    sock.on('error', () => {});
  }
}
