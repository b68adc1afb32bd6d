// The mesh's wire format after the handshake: every frame is
//   u32 payload length (big endian) | u8 kind | u32 id | payload
// A frame larger than MAX_PAYLOAD, an unknown kind, or a connection that ends
// mid-frame is a protocol error: the connection is closed with a logged reason.
import { PjError, codes } from '../../common/errors.js';

export const HEADER_BYTES = 9;
export const MAX_PAYLOAD = 16 * 1024 * 1024;

export const FrameKind = {
  Request: 1, // msgpack [method, args, deadlineMs]
  Response: 2, // msgpack result
  Error: 3, // msgpack { code, message, host? }
  StreamRequest: 4, // as Request; DATA frames with the same id follow
  StreamData: 5, // raw bytes
  StreamEnd: 6, // empty
  Credit: 7, // u32: the receiver consumed this many more bytes of the stream
  RawResponse: 8, // a reply that is a Buffer, sent as is (no msgpack copy)
  RawRequest: 9, // u32 n | n bytes msgpack [method, args, deadlineMs] | an attachment, sent as is
} as const;
export type FrameKind = (typeof FrameKind)[keyof typeof FrameKind];
const KNOWN_KINDS = new Set<number>(Object.values(FrameKind));

/** Stream data and raw replies are passed on in pieces as they arrive; `last` marks a frame's final piece. */
export interface Frame { kind: FrameKind; id: number; payload: Buffer; last?: boolean }
const PASSED_THROUGH = new Set<number>([FrameKind.StreamData, FrameKind.RawResponse, FrameKind.RawRequest]);

export function frameHeader(kind: FrameKind, id: number, payloadLength: number): Buffer {
  const h = Buffer.allocUnsafe(HEADER_BYTES);
  h.writeUInt32BE(payloadLength, 0);
  h.writeUInt8(kind, 4);
  h.writeUInt32BE(id, 5);
  return h;
}

/**
 * Splits a byte stream into frames; keeps partial input between calls.
 * Stream data is handed on as it arrives, in pieces that share the socket's
 * buffers (a frame's pieces keep its id): reassembling 1 MiB data frames first
 * cost a copy of every streamed byte.
 */
export class FrameDecoder {
  #chunks: Buffer[] = [];
  #buffered = 0;
  /** The frame being passed through: its kind, id and the payload bytes still to come. */
  #data: { kind: FrameKind; id: number; remaining: number } | undefined;

  /** Feeds bytes; returns the complete frames. Throws PJ_ERR_PROTOCOL on a bad header. */
  push(data: Buffer): Frame[] {
    this.#chunks.push(data);
    this.#buffered += data.length;
    const frames: Frame[] = [];
    for (;;) {
      if (this.#data) {
        if (this.#buffered === 0) break;
        const piece = this.#take(Math.min(this.#data.remaining, this.#chunks[0].length));
        this.#data.remaining -= piece.length;
        frames.push({ kind: this.#data.kind, id: this.#data.id, payload: piece, last: this.#data.remaining === 0 });
        if (this.#data.remaining === 0) this.#data = undefined;
        continue;
      }
      if (this.#buffered < HEADER_BYTES) break;
      const header = this.#peek(HEADER_BYTES);
      const length = header.readUInt32BE(0);
      const kind = header.readUInt8(4);
      const id = header.readUInt32BE(5);
      if (!KNOWN_KINDS.has(kind)) throw new PjError(codes.PROTOCOL, `unknown frame kind ${kind}`);
      if (length > MAX_PAYLOAD) throw new PjError(codes.PROTOCOL, `frame of ${length} bytes exceeds the ${MAX_PAYLOAD}-byte limit`);
      if (PASSED_THROUGH.has(kind)) {
        this.#take(HEADER_BYTES);
        if (length > 0) this.#data = { kind: kind as FrameKind, id, remaining: length };
        else frames.push({ kind: kind as FrameKind, id, payload: Buffer.alloc(0), last: true });
        continue;
      }
      if (this.#buffered < HEADER_BYTES + length) break;
      const whole = this.#take(HEADER_BYTES + length);
      frames.push({ kind: kind as FrameKind, id, payload: whole.subarray(HEADER_BYTES) });
    }
    return frames;
  }

  /** True between frames only: false means a connection that ends now ends inside a frame (truncated). */
  get atFrameBoundary(): boolean { return this.#buffered === 0 && this.#data === undefined; }

  /** The first n buffered bytes, contiguous; copies only when they straddle chunks, and only those n bytes. */
  #peek(n: number): Buffer {
    const first = this.#chunks[0];
    if (first.length >= n) return first;
    const joined = Buffer.allocUnsafe(n);
    let filled = 0;
    let i = 0;
    while (filled < n) {
      const c = this.#chunks[i];
      const take = Math.min(c.length, n - filled);
      c.copy(joined, filled, 0, take);
      filled += take;
      if (take === c.length) i++;
      else this.#chunks[i] = c.subarray(take);
    }
    this.#chunks.splice(0, i, joined);
    return joined;
  }

  #take(n: number): Buffer {
    const first = this.#peek(n);
    const out = first.subarray(0, n);
    if (first.length === n) this.#chunks.shift();
    else this.#chunks[0] = first.subarray(n);
    this.#buffered -= n;
    return out;
  }
}

/** Splits pieces into their first `n` bytes (copied only when they straddle pieces) and the rest (uncopied). */
export function splitPieces(pieces: Buffer[], n: number): [Buffer, Buffer[]] {
  const head: Buffer[] = [];
  const rest: Buffer[] = [];
  let need = n;
  for (const p of pieces) {
    if (need === 0) { rest.push(p); continue; }
    const take = Math.min(need, p.length);
    head.push(p.subarray(0, take));
    if (take < p.length) rest.push(p.subarray(take));
    need -= take;
  }
  if (need > 0) throw new PjError(codes.PROTOCOL, 'raw request shorter than its header');
  return [head.length === 1 ? head[0] : Buffer.concat(head), rest];
}
