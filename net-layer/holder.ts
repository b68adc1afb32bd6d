// The manager's side of this host's connection holder (native/holder/pj-holder.c):
// the process that owns the outside ends of jobs' connections and relays their
// tunnels, so that they outlive the manager. A manager takes over the holder a
// dead one left, or starts one; requests and answers as native/holder/hold-msg.h
// lays them out.
import { spawn } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { repoRoot } from '../common/repo-root.js';
import type { Log } from '../common/log.js';
import { loadBinding as native } from '../native/loader.js';

export const Hold = { Adopt: 1, Ticket: 2, Dup: 3, Pause: 4, Close: 5, Orphan: 6, Stats: 7, Shutdown: 8, Listen: 9, Listener: 10, Unlisten: 11, Hello: 20, Answer: 21 } as const;
export const HOLD_RESET = 1;
/** A tunnel ticket's length (hold-msg.h's PJ_HOLD_TOKEN). */
export const HOLD_TOKEN_BYTES = 16;
const SIZE = 176;
const START_MS = 10_000;

export interface HoldMsg {
  type: number;
  req: number;
  err: number;
  flags: number;
  key: bigint;
  port: number;
  token: Buffer;
  job: string;
  target: string;
}

const text = (b: Buffer): string => { const end = b.indexOf(0); return b.subarray(0, end < 0 ? b.length : end).toString('utf8'); };

export function decodeHold(b: Buffer): HoldMsg | undefined {
  if (b.length !== SIZE) return undefined;
  return {
    type: b.readUInt32LE(0), req: b.readUInt32LE(4), err: b.readInt32LE(8), flags: b.readUInt32LE(12), key: b.readBigUInt64LE(16),
    port: b.readUInt16LE(24), token: Buffer.from(b.subarray(32, 32 + HOLD_TOKEN_BYTES)), job: text(b.subarray(48, 80)), target: text(b.subarray(80, SIZE)),
  };
}

export function encodeHold(m: Partial<HoldMsg> & { type: number }): Buffer {
  const b = Buffer.alloc(SIZE);
  b.writeUInt32LE(m.type, 0);
  b.writeUInt32LE(m.req ?? 0, 4);
  b.writeInt32LE(m.err ?? 0, 8);
  b.writeUInt32LE(m.flags ?? 0, 12);
  b.writeBigUInt64LE(m.key ?? 0n, 16);
  b.writeUInt16LE(m.port ?? 0, 24);
  m.token?.copy(b, 32, 0, HOLD_TOKEN_BYTES);
  b.write(m.job ?? '', 48, 31, 'utf8');
  b.write(m.target ?? '', 80, 95, 'utf8');
  return b;
}

interface Waiting { resolve: (a: { m: HoldMsg; fd?: number }) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }

export interface HolderOptions {
  /** Where the holder listens for its manager. */
  socketPath: string;
  /** This host's mesh address: the holder's tunnel listener. */
  address: string;
  /** The holder's own log (it outlives the manager's). */
  logFile: string;
  log: Log;
}

export class HolderLink {
  #fd: number | undefined;
  #opening: Promise<number> | undefined;
  #port = 0;
  #req = 0;
  #waiting = new Map<number, Waiting>();
  #hello: ((port: number) => void) | undefined;

  constructor(private readonly o: HolderOptions) {}

  /** The holder's tunnel port (once connected). */
  get port(): number { return this.#port; }

  /** Connects to the holder, starting one if none answers. */
  open(): Promise<number> {
    if (this.#fd !== undefined) return Promise.resolve(this.#fd);
    return (this.#opening ??= this.#connect().finally(() => (this.#opening = undefined)));
  }

  /** A request and its answer (with the descriptor it carries, if any); an errno answer throws. */
  async request(m: Partial<HoldMsg> & { type: number }, timeoutMs: number, fds: number[] = []): Promise<{ m: HoldMsg; fd?: number }> {
    const req = (this.#req = (this.#req % 0x7fffffff) + 1);
    let fd = await this.open();
    if (native().seqpacketSend(fd, encodeHold({ ...m, req }), fds, {}) !== true) {
      this.#lost(fd); // a holder that ended (or was taken over) since: once more, with the one there now
      fd = await this.open();
      if (native().seqpacketSend(fd, encodeHold({ ...m, req }), fds, {}) !== true) throw new Error('the connection holder does not take requests');
    }
    const a = await new Promise<{ m: HoldMsg; fd?: number }>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiting.delete(req);
        reject(new Error(`the connection holder did not answer within ${timeoutMs} ms`));
      }, timeoutMs);
      this.#waiting.set(req, { resolve, reject, timer });
    });
    if (a.m.err !== 0) throw Object.assign(new Error(`connection ${m.key ?? ''}: errno ${a.m.err} at the holder`), { errno: a.m.err });
    return a;
  }

  /** A message no one waits on (lost if the holder is not there). */
  tell(m: Partial<HoldMsg> & { type: number }): void {
    if (this.#fd !== undefined) native().seqpacketSend(this.#fd, encodeHold(m), [], {});
  }

  /** Ends the holder and every connection it holds. */
  shutdown(): void {
    this.tell({ type: Hold.Shutdown });
  }

  #tryConnect(): number | undefined {
    return native().seqpacketConnect(this.o.socketPath, (fd, data, fds) => this.#message(fd, data, fds), {});
  }

  async #connect(): Promise<number> {
    const hello = new Promise<number>((resolve) => {
      const timer = setTimeout(() => resolve(0), 2 * START_MS);
      this.#hello = (port) => { clearTimeout(timer); resolve(port); };
    });
    let fd = this.#tryConnect();
    if (fd !== undefined) {
      this.o.log.info({ op: 'net-holder' }, 'took over the connection holder the last manager left: its connections live on');
    } else {
      this.#start();
      const until = Date.now() + START_MS;
      while ((fd = this.#tryConnect()) === undefined) {
        if (Date.now() > until) throw new Error(`the connection holder did not start (see ${this.o.logFile})`);
        await sleep(20);
      }
    }
    const port = await hello;
    if (!port) {
      native().closeFd(fd);
      throw new Error(`the connection holder did not say hello (see ${this.o.logFile})`);
    }
    this.#port = port;
    this.#fd = fd;
    return fd;
  }

  #start(): void {
    const logFd = openSync(this.o.logFile, 'a');
    try {
      const child = spawn(join(repoRoot(), 'build', 'Release', 'pj-holder'), [this.o.socketPath, this.o.address],
        { detached: true, stdio: ['ignore', 'ignore', logFd] });
      child.on('error', (e) => this.o.log.error({ op: 'net-holder', err: e.message }, 'cannot start the connection holder'));
      child.unref();
      this.o.log.info({ op: 'net-holder', pid: child.pid }, 'connection holder started');
    } finally {
      closeSync(logFd);
    }
  }

  #lost(fd: number): void {
    if (this.#fd !== fd) return;
    this.#fd = undefined;
    this.o.log.error({ op: 'net-holder' }, 'lost the connection holder: it died (its connections with it), or another manager took it over');
    for (const w of this.#waiting.values()) { clearTimeout(w.timer); w.reject(new Error('the connection holder went away')); }
    this.#waiting.clear();
  }

  #message(fd: number, data: Buffer | null, fds: number[]): void {
    if (data === null) return this.#lost(fd);
    const m = decodeHold(data);
    if (!m) {
      for (const f of fds) native().closeFd(f);
      return this.o.log.warn({ op: 'net-holder', bytes: data.length }, 'malformed message from the connection holder');
    }
    if (m.type === Hold.Hello) return this.#hello?.(m.port);
    const w = this.#waiting.get(m.req);
    for (const f of fds.slice(1)) native().closeFd(f);
    if (!w) { if (fds[0] !== undefined) native().closeFd(fds[0]); return; }
    this.#waiting.delete(m.req);
    clearTimeout(w.timer);
    w.resolve({ m, fd: fds[0] });
  }
}
