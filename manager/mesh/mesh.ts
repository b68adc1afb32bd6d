// The mesh: this manager's authenticated links to every other manager.
// Inbound connections are served with the registered handlers; outbound ones
// are made on first use (peers are found through `resolvePeer`, i.e. etcd),
// kept, and made again after a failure. Every call has a deadline, and every
// failure names the host.
import net, { type AddressInfo } from 'node:net';
import { PjError, codes } from '../../common/errors.js';
import type { Log } from '../../common/log.js';
import { clientHandshake, serverHandshake } from './handshake.js';
import { PeerConnection, type Handler } from './peer-connection.js';

export type { CallContext, Handler } from './peer-connection.js';

export interface PeerAddress { address: string; port: number }

export interface MeshOptions {
  self: string;
  secret: Buffer;
  log: Log;
  /** Where a host's manager listens; throws PJ_ERR_HOST_UNREACHABLE when the host is not up. */
  resolvePeer: (host: string) => Promise<PeerAddress>;
  handshakeTimeoutMs?: number;
}

export const DEFAULT_RPC_TIMEOUT_MS = 5000;

/** A call as its observers see it: how long it took and the bulk bytes (attachment and binary reply) it moved. */
export interface FinishedCall { host: string; method: string; seconds: number; ok: boolean; bytes: number }

export class Mesh {
  #opts: Required<MeshOptions>;
  #handlers = new Map<string, Handler>();
  #outbound = new Map<string, Promise<PeerConnection>>();
  #inbound = new Set<PeerConnection>();
  #server: net.Server | undefined;
  #peerGone: Array<(host: string) => void> = [];
  /** Calls made, by "host method" (`pj status`): what the caches spare shows here. */
  #calls = new Map<string, number>();
  #observers: Array<(c: FinishedCall) => void> = [];

  constructor(opts: MeshOptions) {
    this.#opts = { handshakeTimeoutMs: 3000, ...opts };
  }

  handle(method: string, handler: Handler): void {
    this.#handlers.set(method, handler);
  }

  /** Called when the last connection a host opened to us closes (its manager died or restarted). */
  onPeerGone(fn: (host: string) => void): void {
    this.#peerGone.push(fn);
  }

  listen(address: string, port: number): Promise<AddressInfo> {
    const server = net.createServer((socket) => this.#accept(socket));
    this.#server = server;
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, address, () => resolve(server.address() as AddressInfo));
    });
  }

  /** An RPC; bulk bytes go in `attachment` (the handler sees ctx.attachment), uncopied. */
  async call(host: string, method: string, args: unknown, timeoutMs = DEFAULT_RPC_TIMEOUT_MS, attachment?: Buffer): Promise<unknown> {
    const started = performance.now();
    const deadline = Date.now() + timeoutMs;
    this.#count(host, method);
    let ok = false;
    let bytes = attachment?.length ?? 0;
    try {
      const conn = await this.#connection(host, timeoutMs);
      const reply = await conn.call(method, args, Math.max(1, deadline - Date.now()), timeoutMs, attachment);
      bytes += Buffer.isBuffer(reply) ? reply.length : Array.isArray(reply) && Buffer.isBuffer(reply[0]) ? reply.reduce((n: number, b: Buffer) => n + b.length, 0) : 0;
      ok = true;
      return reply;
    } finally {
      const c = { host, method, seconds: (performance.now() - started) / 1000, ok, bytes };
      for (const fn of this.#observers) fn(c);
    }
  }

  /** Sees every call this manager makes once it ends (latency, bulk bytes): the policy's costs, the metrics. */
  onCallDone(fn: (c: FinishedCall) => void): void {
    this.#observers.push(fn);
  }

  async upload(host: string, method: string, args: unknown, source: AsyncIterable<Buffer>, timeoutMs = DEFAULT_RPC_TIMEOUT_MS): Promise<unknown> {
    this.#count(host, method);
    const conn = await this.#connection(host, timeoutMs);
    return conn.upload(method, args, source, timeoutMs);
  }

  #count(host: string, method: string): void {
    const key = `${host} ${method}`;
    this.#calls.set(key, (this.#calls.get(key) ?? 0) + 1);
  }

  /** How many calls this manager made to each host, per method. */
  callCounts(): Array<{ host: string; method: string; calls: number }> {
    return [...this.#calls].map(([key, calls]) => {
      const [host, method] = key.split(' ');
      return { host, method, calls };
    });
  }

  async close(): Promise<void> {
    for (const c of this.#inbound) c.close('shutting down');
    for (const p of this.#outbound.values()) p.then((c) => c.close('shutting down'), () => {});
    this.#outbound.clear();
    await new Promise<void>((r) => (this.#server ? this.#server.close(() => r()) : r()));
  }

  #accept(socket: net.Socket): void {
    const remote = `${socket.remoteAddress}:${socket.remotePort}`;
    socket.setNoDelay(true);
    socket.on('error', () => {}); // reported through the handshake or the connection
    serverHandshake(socket, this.#opts.self, this.#opts.secret, this.#opts.handshakeTimeoutMs).then(
      ({ peerName, leftover }) => {
        const conn = this.#watch(new PeerConnection(socket, peerName, leftover, this.#handlers));
        this.#inbound.add(conn);
        this.#opts.log.debug({ op: 'mesh-accept', peer: peerName, remote }, 'peer connected');
        conn.once('close', (reason: string) => {
          this.#inbound.delete(conn);
          if (reason !== 'shutting down' && ![...this.#inbound].some((c) => c.peer === peerName)) for (const fn of this.#peerGone) fn(peerName);
          const level = reason === 'connection closed by peer' || reason === 'shutting down' ? 'debug' : 'warn';
          this.#opts.log[level]({ op: 'mesh-close', peer: peerName, remote, reason }, 'mesh connection closed');
        });
      },
      (err: Error) => {
        socket.destroy();
        this.#opts.log.warn({ op: 'mesh-reject', remote, reason: err.message }, 'mesh handshake rejected');
      },
    );
  }

  #connection(host: string, timeoutMs: number): Promise<PeerConnection> {
    let p = this.#outbound.get(host);
    if (!p) {
      p = this.#connect(host, timeoutMs);
      this.#outbound.set(host, p);
      p.then(
        (c) => c.once('close', () => { if (this.#outbound.get(host) === p) this.#outbound.delete(host); }),
        () => { if (this.#outbound.get(host) === p) this.#outbound.delete(host); },
      );
    }
    return p;
  }

  async #connect(host: string, timeoutMs: number): Promise<PeerConnection> {
    const { address, port } = await this.#opts.resolvePeer(host);
    // A 1 MiB write buffer: with the default 16 KiB every data frame waited for 'drain'.
    const socket = net.connect({ host: address, port, writableHighWaterMark: 1 << 20 } as net.NetConnectOpts);
    socket.setNoDelay(true);
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new PjError(codes.HOST_UNREACHABLE, `host ${host} (${address}:${port}) did not accept a connection within ${timeoutMs} ms`, { host }));
      }, timeoutMs);
      socket.once('connect', () => { clearTimeout(timer); resolve(); });
      socket.once('error', (e: NodeJS.ErrnoException) => {
        clearTimeout(timer);
        reject(new PjError(codes.HOST_UNREACHABLE, `host ${host} (${address}:${port}) unreachable: ${e.code ?? e.message}`, { host, cause: e }));
      });
    });
    const { leftover } = await clientHandshake(socket, this.#opts.self, host, this.#opts.secret, Math.min(timeoutMs, this.#opts.handshakeTimeoutMs))
      .catch((e: PjError) => {
        throw e.code === codes.TIMEOUT ? new PjError(codes.TIMEOUT, `host ${host} did not complete the mesh handshake: ${e.message}`, { host }) : e;
      });
    const conn = this.#watch(new PeerConnection(socket, host, leftover, this.#handlers));
    conn.once('close', (reason: string) => this.#opts.log.debug({ op: 'mesh-close', peer: host, reason }, 'outbound mesh connection closed'));
    return conn;
  }

  /** Logs the answers a connection could not send (the caller got an error instead). */
  #watch(conn: PeerConnection): PeerConnection {
    conn.on('reply-failed', (method: string, err: Error) => this.#opts.log.warn({ op: 'mesh-reply', peer: conn.peer, method, err: err.message }, 'an answer could not be sent; the caller was told'));
    return conn;
  }
}
