// Mutual authentication of two managers with the cluster secret: an HMAC
// challenge-response in both directions before any frame is accepted.
//   client -> server: "PJM1" | u8 len | client name | 32-byte nonce C
//   server -> client: "PJM1" | u8 len | server name | 32-byte nonce S | mac_s
//   client -> server: mac_c                       server -> client: 0x01 (accepted)
// mac_x = HMAC-SHA256(secret, role | C | S | client name | server name); the role
// label keeps one side's answer from being replayed as the other's.
// We chose this over TLS-PSK because Node's TLS halved stream throughput here
// (see README, "The mesh"); the secret never crosses the wire.
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Socket } from 'node:net';
import { PjError, codes } from '../../common/errors.js';

const MAGIC = Buffer.from('PJM1');
const NONCE = 32;
const MAC = 32;
const ACCEPTED = 0x01;

export interface HandshakeResult { peerName: string; leftover: Buffer }

/** Reads exactly n bytes at a time from a socket that is not yet framed. */
class ExactReader {
  #buf = Buffer.alloc(0);
  #want: { n: number; resolve: (b: Buffer) => void; reject: (e: Error) => void } | undefined;
  #failure: Error | undefined;
  readonly #onData = (d: Buffer) => { this.#buf = Buffer.concat([this.#buf, d]); this.#pump(); };
  readonly #onEnd = () => this.#fail(new PjError(codes.AUTH_FAILED, 'connection closed during the handshake'));
  readonly #onError = (e: Error) => this.#fail(e);

  constructor(private readonly socket: Socket) {
    socket.on('data', this.#onData).on('end', this.#onEnd).on('close', this.#onEnd).on('error', this.#onError);
  }
  read(n: number): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      if (this.#failure) return reject(this.#failure);
      this.#want = { n, resolve, reject };
      this.#pump();
    });
  }
  /** Stops listening and hands back whatever arrived after the handshake. */
  detach(): Buffer {
    this.socket.off('data', this.#onData).off('end', this.#onEnd).off('close', this.#onEnd).off('error', this.#onError);
    return this.#buf;
  }
  #pump(): void {
    const w = this.#want;
    if (!w || this.#buf.length < w.n) return;
    this.#want = undefined;
    const out = this.#buf.subarray(0, w.n);
    this.#buf = this.#buf.subarray(w.n);
    w.resolve(out);
  }
  #fail(e: Error): void {
    this.#failure ??= e;
    const w = this.#want;
    this.#want = undefined;
    w?.reject(this.#failure);
  }
}

function mac(secret: Buffer, role: string, c: Buffer, s: Buffer, client: string, server: string): Buffer {
  return createHmac('sha256', secret).update(role).update(c).update(s).update(`${client}\0${server}`).digest();
}

function withDeadline<T>(p: Promise<T>, ms: number, socket: Socket): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new PjError(codes.TIMEOUT, `handshake took longer than ${ms} ms`)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer)).catch((e) => { socket.destroy(); throw e; });
}

async function readHello(r: ExactReader): Promise<{ name: string; nonce: Buffer }> {
  const head = await r.read(MAGIC.length + 1);
  if (!head.subarray(0, MAGIC.length).equals(MAGIC)) throw new PjError(codes.PROTOCOL, 'not a PicoJump mesh peer (bad magic)');
  const len = head[MAGIC.length];
  if (len === 0) throw new PjError(codes.PROTOCOL, 'empty host name in handshake');
  const rest = await r.read(len + NONCE);
  return { name: rest.subarray(0, len).toString('utf8'), nonce: Buffer.from(rest.subarray(len)) };
}

function hello(name: string, nonce: Buffer): Buffer {
  const n = Buffer.from(name, 'utf8');
  if (n.length === 0 || n.length > 255) throw new PjError(codes.USAGE, `host name must be 1-255 bytes: '${name}'`);
  return Buffer.concat([MAGIC, Buffer.from([n.length]), n, nonce]);
}

export function clientHandshake(socket: Socket, self: string, expectedPeer: string, secret: Buffer, timeoutMs: number): Promise<HandshakeResult> {
  const r = new ExactReader(socket);
  const run = async (): Promise<HandshakeResult> => {
    const c = randomBytes(NONCE);
    socket.write(hello(self, c));
    const { name: server, nonce: s } = await readHello(r);
    const theirs = await r.read(MAC);
    if (!timingSafeEqual(theirs, mac(secret, 'server', c, s, self, server))) {
      throw new PjError(codes.AUTH_FAILED, `host ${expectedPeer} failed authentication: it does not hold the cluster secret`, { host: expectedPeer });
    }
    if (server !== expectedPeer) throw new PjError(codes.AUTH_FAILED, `expected host ${expectedPeer} but reached ${server}`, { host: expectedPeer });
    socket.write(mac(secret, 'client', c, s, self, server));
    const verdict = await r.read(1).catch(() => {
      throw new PjError(codes.AUTH_FAILED, `host ${expectedPeer} rejected our cluster secret`, { host: expectedPeer });
    });
    if (verdict[0] !== ACCEPTED) throw new PjError(codes.AUTH_FAILED, `host ${expectedPeer} rejected the handshake`, { host: expectedPeer });
    return { peerName: server, leftover: r.detach() };
  };
  return withDeadline(run(), timeoutMs, socket).catch((e) => { r.detach(); throw e; });
}

export function serverHandshake(socket: Socket, self: string, secret: Buffer, timeoutMs: number): Promise<HandshakeResult> {
  const r = new ExactReader(socket);
  const run = async (): Promise<HandshakeResult> => {
    const { name: client, nonce: c } = await readHello(r);
    const s = randomBytes(NONCE);
    socket.write(Buffer.concat([hello(self, s), mac(secret, 'server', c, s, client, self)]));
    const theirs = await r.read(MAC);
    if (!timingSafeEqual(theirs, mac(secret, 'client', c, s, client, self))) {
      throw new PjError(codes.AUTH_FAILED, `peer claiming to be ${client} does not hold the cluster secret`, { host: client });
    }
    socket.write(Buffer.from([ACCEPTED]));
    return { peerName: client, leftover: r.detach() };
  };
  return withDeadline(run(), timeoutMs, socket).catch((e) => { r.detach(); throw e; });
}
