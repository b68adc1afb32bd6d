// One authenticated connection between two managers: request/response RPCs
// with deadlines and uploads streamed in chunks under a credit window (the
// receiver grants more as its handler consumes), multiplexed by frame id.
// Either side may call the other; a protocol error closes this connection only.
import { EventEmitter } from 'node:events';
import type { Socket } from 'node:net';
import { Packr } from 'msgpackr';
import { PjError, codes, errorFromWire, errorToWire, type SerializedError } from '../../common/errors.js';
import { FrameDecoder, FrameKind, MAX_PAYLOAD, frameHeader, splitPieces, type Frame } from './frame.js';

/** Bytes a sender may have in flight per stream before it waits for credit. */
export const STREAM_WINDOW = 8 * 1024 * 1024;
/** The largest data frame a stream sends; larger chunks are split. */
export const STREAM_CHUNK = 1024 * 1024;
/** The receiver returns credit in batches of this many bytes: one credit frame per chunk halved throughput for 64 KiB chunks. */
const CREDIT_BATCH = STREAM_WINDOW / 8;

const packr = new Packr({ useRecords: false });
const EMPTY = Buffer.alloc(0);

export interface CallContext {
  /** The authenticated name of the calling host. */
  from: string;
  /** For uploads: the streamed bytes, in order. */
  stream?: AsyncIterable<Buffer>;
  /** For calls with an attachment: its bytes, as the pieces they arrived in. */
  attachment?: Buffer[];
}
/** A mesh method. A handler that returns a Buffer sends it raw: the caller receives it as Buffer[] (pieces). */
export type Handler = (args: any, ctx: CallContext) => unknown;

interface Pending { resolve: (v: unknown) => void; reject: (e: Error) => void; pieces?: Buffer[] }

/** The receiving end of an upload: an async iterable that grants credit as it is read. */
class IncomingStream implements AsyncIterable<Buffer> {
  #queue: Buffer[] = [];
  #ungranted = 0;
  #ended = false;
  #discarding = false;
  #wake: (() => void) | undefined;
  constructor(private readonly grant: (bytes: number) => void) {}
  #consumed(bytes: number): void {
    this.#ungranted += bytes;
    if (this.#ungranted < CREDIT_BATCH && !this.#discarding) return;
    this.grant(this.#ungranted);
    this.#ungranted = 0;
  }
  push(chunk: Buffer): void {
    if (this.#discarding) return this.#consumed(chunk.length);
    this.#queue.push(chunk);
    this.#wakeUp();
  }
  end(): void { this.#ended = true; this.#wakeUp(); }
  /** The handler is done: drop what is queued and keep granting, so the sender never stalls. */
  discard(): void {
    this.#discarding = true;
    this.#consumed(this.#queue.splice(0).reduce((n, c) => n + c.length, 0));
  }
  #wakeUp(): void { const w = this.#wake; this.#wake = undefined; w?.(); }
  async *[Symbol.asyncIterator](): AsyncIterator<Buffer> {
    for (;;) {
      const chunk = this.#queue.shift();
      if (chunk) { this.#consumed(chunk.length); yield chunk; continue; }
      if (this.#ended) return;
      await new Promise<void>((r) => (this.#wake = r));
    }
  }
}

export class PeerConnection extends EventEmitter {
  readonly peer: string;
  #socket: Socket;
  #decoder = new FrameDecoder();
  #handlers: ReadonlyMap<string, Handler>;
  #nextId = 1;
  #pending = new Map<number, Pending>();
  #credit = new Map<number, { bytes: number; wake?: () => void }>();
  #incoming = new Map<number, IncomingStream>();
  #rawRequests = new Map<number, Buffer[]>();
  #closedReason: string | undefined;

  constructor(socket: Socket, peer: string, leftover: Buffer, handlers: ReadonlyMap<string, Handler>) {
    super();
    this.peer = peer;
    this.#socket = socket;
    this.#handlers = handlers;
    socket.setNoDelay(true);
    socket.on('data', (d: Buffer) => this.#onData(d));
    socket.on('error', (e) => this.close(`socket error: ${e.message}`));
    socket.on('close', () => this.close(this.#decoder.atFrameBoundary ? 'connection closed by peer' : 'connection ended inside a frame (truncated)'));
    socket.on('drain', () => this.emit('drain'));
    if (leftover.length > 0) queueMicrotask(() => this.#onData(leftover));
  }

  get closed(): boolean { return this.#closedReason !== undefined; }

  /**
   * Calls a method on the peer; rejects with PJ_ERR_TIMEOUT naming the host when `timeoutMs`
   * passes. `deadlineMs` is the whole deadline the caller set (connecting may have used some).
   */
  call(method: string, args: unknown, timeoutMs: number, deadlineMs = timeoutMs, attachment?: Buffer): Promise<unknown> {
    const id = this.#allocId();
    const result = this.#awaitReply(id, method, timeoutMs, deadlineMs);
    const message = packr.pack([method, args ?? null, timeoutMs]);
    if (!attachment) {
      this.#send(FrameKind.Request, id, message);
      return result;
    }
    // Bulk bytes (file blocks) travel beside the message, never copied into it.
    const n = Buffer.allocUnsafe(4);
    n.writeUInt32BE(message.length, 0);
    this.#send(FrameKind.RawRequest, id, n, message, attachment);
    return result;
  }

  /**
   * Streams `source` to the peer's `method` handler (ctx.stream) and resolves with its result.
   * `timeoutMs` bounds every wait: for credit, for the socket to drain, and for the final reply.
   */
  async upload(method: string, args: unknown, source: AsyncIterable<Buffer>, timeoutMs: number): Promise<unknown> {
    const id = this.#allocId();
    const credit = { bytes: STREAM_WINDOW, wake: undefined as (() => void) | undefined };
    this.#credit.set(id, credit);
    let replied = false;
    const reply = this.#awaitReply(id, method, undefined).finally(() => { replied = true; credit.wake?.(); });
    reply.catch(() => {}); // observed below; an early error stops the upload
    try {
      this.#send(FrameKind.StreamRequest, id, packr.pack([method, args ?? null, timeoutMs]));
      for await (const chunk of source) {
        for (let off = 0; off < chunk.length && !replied; off += STREAM_CHUNK) {
          const piece = chunk.subarray(off, off + STREAM_CHUNK);
          while (credit.bytes < piece.length && !replied) {
            await this.#wait((wake) => (credit.wake = wake), timeoutMs, `waiting for credit from host ${this.peer} (${method})`);
          }
          if (replied) break;
          credit.bytes -= piece.length;
          if (!this.#send(FrameKind.StreamData, id, piece)) {
            await this.#wait((wake) => this.once('drain', wake), timeoutMs, `waiting for the link to host ${this.peer} to drain`);
          }
        }
        if (replied) break;
      }
      if (!replied) this.#send(FrameKind.StreamEnd, id, EMPTY);
      return await this.#withTimeout(reply, id, method, timeoutMs);
    } finally {
      this.#credit.delete(id);
    }
  }

  close(reason: string): void {
    if (this.#closedReason !== undefined) return;
    this.#closedReason = reason;
    this.#socket.destroy();
    const err = new PjError(codes.HOST_UNREACHABLE, `connection to host ${this.peer} lost: ${reason}`, { host: this.peer });
    for (const p of this.#pending.values()) p.reject(err);
    this.#pending.clear();
    for (const c of this.#credit.values()) c.wake?.();
    for (const s of this.#incoming.values()) s.end();
    this.emit('close', reason);
  }

  #allocId(): number {
    const id = this.#nextId;
    this.#nextId = this.#nextId >= 0xffffffff ? 1 : this.#nextId + 1;
    return id;
  }

  /** One frame whose payload is `parts` back to back, in one writev. */
  #send(kind: FrameKind, id: number, ...parts: Buffer[]): boolean {
    if (this.closed) throw new PjError(codes.HOST_UNREACHABLE, `connection to host ${this.peer} lost: ${this.#closedReason}`, { host: this.peer });
    const length = parts.reduce((n, p) => n + p.length, 0);
    if (length > MAX_PAYLOAD) throw new PjError(codes.PROTOCOL, `payload of ${length} bytes exceeds the frame limit`);
    this.#socket.cork();
    this.#socket.write(frameHeader(kind, id, length));
    for (const p of parts) if (p.length) this.#socket.write(p);
    this.#socket.uncork();
    return !this.#socket.writableNeedDrain;
  }

  #awaitReply(id: number, method: string, timeoutMs: number | undefined, deadlineMs = timeoutMs): Promise<unknown> {
    const p = new Promise<unknown>((resolve, reject) => {
      if (this.closed) return reject(new PjError(codes.HOST_UNREACHABLE, `connection to host ${this.peer} lost: ${this.#closedReason}`, { host: this.peer }));
      this.#pending.set(id, { resolve, reject });
    });
    return timeoutMs === undefined ? p : this.#withTimeout(p, id, method, timeoutMs, deadlineMs);
  }

  #withTimeout<T>(p: Promise<T>, id: number, method: string, ms: number, reportedMs = ms): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const t = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(new PjError(codes.TIMEOUT, `rpc '${method}' to host ${this.peer} timed out after ${reportedMs} ms`, { host: this.peer }));
      }, ms);
    });
    return Promise.race([p, t]).finally(() => clearTimeout(timer));
  }

  /** Waits for what `arm` watches, no longer than `ms`; a connection that closes meanwhile ends the wait too. */
  #wait(arm: (wake: () => void) => void, ms: number, what: string): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const wake = () => { clearTimeout(timer); this.off('close', wake); resolve(); };
      const timer = setTimeout(() => { this.off('close', wake); reject(new PjError(codes.TIMEOUT, `${what}: no progress in ${ms} ms`, { host: this.peer })); }, ms);
      this.once('close', wake);
      arm(wake);
    }).then(() => {
      if (this.closed) throw new PjError(codes.HOST_UNREACHABLE, `connection to host ${this.peer} lost: ${this.#closedReason}`, { host: this.peer });
    });
  }

  #onData(data: Buffer): void {
    if (this.closed) return;
    let frames: Frame[];
    try {
      frames = this.#decoder.push(data);
    } catch (e) {
      return this.close((e as Error).message);
    }
    for (const f of frames) {
      try {
        this.#dispatch(f);
      } catch (e) {
        return this.close(`malformed ${f.kind === FrameKind.StreamData ? 'data' : 'message'} frame: ${(e as Error).message}`);
      }
    }
  }

  #dispatch(f: Frame): void {
    switch (f.kind) {
      case FrameKind.Request:
      case FrameKind.StreamRequest:
        return this.#serve(f);
      case FrameKind.Response:
      case FrameKind.Error: {
        const p = this.#pending.get(f.id);
        if (!p) return; // a late reply to a call that already timed out
        this.#pending.delete(f.id);
        const body = f.payload.length ? packr.unpack(f.payload) : null;
        if (f.kind === FrameKind.Response) return p.resolve(body);
        return p.reject(errorFromWire(body as SerializedError));
      }
      case FrameKind.RawResponse: {
        // A handler that returns a Buffer: the caller gets the pieces as they came off the socket (no copy).
        const p = this.#pending.get(f.id);
        if (!p) return;
        (p.pieces ??= []).push(f.payload);
        if (!f.last) return;
        this.#pending.delete(f.id);
        return p.resolve(p.pieces);
      }
      case FrameKind.RawRequest: {
        const pieces = this.#rawRequests.get(f.id) ?? [];
        pieces.push(f.payload);
        if (!f.last) return void this.#rawRequests.set(f.id, pieces);
        this.#rawRequests.delete(f.id);
        const [n, rest] = splitPieces(pieces, 4);
        const [message, attachment] = splitPieces(rest, n.readUInt32BE(0));
        return this.#serve({ kind: FrameKind.Request, id: f.id, payload: message }, attachment);
      }
      case FrameKind.StreamData:
        return this.#incoming.get(f.id)?.push(f.payload);
      case FrameKind.StreamEnd:
        return this.#incoming.get(f.id)?.end();
      case FrameKind.Credit: {
        if (f.payload.length !== 4) throw new Error('credit frame must carry 4 bytes');
        const c = this.#credit.get(f.id);
        if (!c) return;
        c.bytes += f.payload.readUInt32BE(0);
        const wake = c.wake;
        c.wake = undefined;
        wake?.();
        return;
      }
    }
  }

  #serve(f: Frame, attachment?: Buffer[]): void {
    const decoded = packr.unpack(f.payload) as unknown;
    if (!Array.isArray(decoded) || typeof decoded[0] !== 'string') throw new Error('request must be [method, args, deadline]');
    const [method, args] = decoded as [string, unknown];
    let stream: IncomingStream | undefined;
    if (f.kind === FrameKind.StreamRequest) {
      stream = new IncomingStream((n) => this.#grant(f.id, n));
      this.#incoming.set(f.id, stream);
    }
    const handler = this.#handlers.get(method);
    const run = async () => {
      if (!handler) throw new PjError(codes.NO_SUCH_METHOD, `host has no mesh method '${method}'`);
      return handler(args, { from: this.peer, ...(stream ? { stream } : {}), ...(attachment ? { attachment } : {}) });
    };
    run().then(
      (result) => (Buffer.isBuffer(result) ? this.#reply(FrameKind.RawResponse, f.id, result) : this.#reply(FrameKind.Response, f.id, packr.pack(result ?? null))),
      (err) => this.#reply(FrameKind.Error, f.id, packr.pack(errorToWire(err))),
    ).catch((err) => {
      // The answer itself could not be sent (larger than a frame, say): the caller hears why.
      this.emit('reply-failed', method, err);
      try {
        this.#reply(FrameKind.Error, f.id, packr.pack(errorToWire(new PjError(codes.PROTOCOL, `the answer to '${method}' could not be sent: ${(err as Error).message}`))));
      } catch { /* the connection is gone */ }
    }).finally(() => {
      stream?.discard();
      this.#incoming.delete(f.id);
    });
  }

  #grant(id: number, bytes: number): void {
    if (this.closed) return;
    const b = Buffer.allocUnsafe(4);
    b.writeUInt32BE(bytes, 0);
    this.#send(FrameKind.Credit, id, b);
  }

  #reply(kind: FrameKind, id: number, payload: Buffer): void {
    if (!this.closed) this.#send(kind, id, payload);
  }
}
