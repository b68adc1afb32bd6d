// CRIU's images go from the source's folder to the destination's over the
// mesh, as one upload that starts with the dump: the memory images
// (pages-*.img, which CRIU only appends to) are sent as they grow, so that the
// network works while CRIU does; everything else once the dump is done. No
// folder is shared between hosts: in a real cluster there is none.
//
// The stream is a sequence of records: DATA (u8 1 | u16 name length | name |
// u64 offset | u32 length | bytes) and one END (u8 2 | u32 length | JSON list
// of every image's name and final size), which the destination checks.
import { closeSync, mkdirSync, openSync, readSync, readdirSync, statSync, writeSync } from 'node:fs';
import { basename, join } from 'node:path';
import { PjError, codes } from '../common/errors.js';

export interface ImageFile { name: string; size: number }

const DATA = 1;
const END = 2;
const CHUNK = 1 << 20;
const POLL_MS = 3;
const isImage = (name: string) => name.endsWith('.img');
const growing = (name: string) => /^pages-\d+\.img$/.test(name);

function dataRecord(name: string, offset: number, bytes: Buffer): Buffer[] {
  const n = Buffer.from(name);
  const h = Buffer.allocUnsafe(1 + 2 + n.length + 8 + 4);
  h.writeUInt8(DATA, 0);
  h.writeUInt16BE(n.length, 1);
  n.copy(h, 3);
  h.writeBigUInt64BE(BigInt(offset), 3 + n.length);
  h.writeUInt32BE(bytes.length, 11 + n.length);
  return [h, bytes];
}

/**
 * The images of a dump in progress (`dumped` settles when CRIU is done), as stream records; counts
 * the bytes into `sent`. Ends with the END record once the dump succeeded; throws if it failed.
 */
export async function* imageStream(dir: string, dumped: Promise<void>, sent: { bytesSent: number }): AsyncGenerator<Buffer> {
  let done = false;
  let failure: unknown;
  dumped.then(() => { done = true; }, (e) => { failure = e; done = true; });
  const offsets = new Map<string, number>();
  function* fresh(name: string, upTo: number): Generator<Buffer> {
    const fd = openSync(join(dir, name), 'r');
    try {
      for (let at = offsets.get(name) ?? 0; at < upTo;) {
        const buf = Buffer.allocUnsafe(Math.min(CHUNK, upTo - at));
        const n = readSync(fd, buf, 0, buf.length, at);
        if (n === 0) break;
        yield* dataRecord(name, at, buf.subarray(0, n));
        sent.bytesSent += n;
        at += n;
        offsets.set(name, at);
      }
    } finally {
      closeSync(fd);
    }
  }
  for (;;) {
    const finished = done; // read before the pass: the pass after the dump ended sees every final size
    if (failure) throw failure;
    for (const name of readdirSync(dir).filter(isImage)) {
      if (finished || growing(name)) yield* fresh(name, statSync(join(dir, name)).size);
    }
    if (finished) break;
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
  const manifest = Buffer.from(JSON.stringify(readdirSync(dir).filter(isImage).map((name): ImageFile => ({ name, size: statSync(join(dir, name)).size }))));
  const end = Buffer.allocUnsafe(5);
  end.writeUInt8(END, 0);
  end.writeUInt32BE(manifest.length, 1);
  yield end;
  yield manifest;
}

/** Writes a stream of image records into `dir`; resolves with the bytes written once the END record checks out. */
export async function receiveImages(dir: string, stream: AsyncIterable<Buffer>): Promise<number> {
  mkdirSync(dir, { recursive: true });
  const fds = new Map<string, number>();
  const fdOf = (name: string) => {
    if (basename(name) !== name || !isImage(name)) throw new PjError(codes.PROTOCOL, `bad image name '${name}'`);
    let fd = fds.get(name);
    if (fd === undefined) fds.set(name, (fd = openSync(join(dir, name), 'w')));
    return fd;
  };
  let head: Buffer = Buffer.alloc(0); // the start of a record, until its header is whole
  let data: { fd: number; offset: number; left: number } | undefined; // inside a DATA record's bytes
  let total = 0;
  try {
    for await (const chunk of stream) {
      let c = chunk;
      while (c.length > 0) {
        if (data) {
          const n = Math.min(data.left, c.length);
          writeSync(data.fd, c, 0, n, data.offset);
          data.offset += n;
          data.left -= n;
          total += n;
          c = c.subarray(n);
          if (data.left === 0) data = undefined;
          continue;
        }
        head = head.length ? Buffer.concat([head, c]) : c;
        c = head.subarray(0, 0);
        if (head.length < 5) break;
        const type = head.readUInt8(0);
        if (type === END) {
          const len = head.readUInt32BE(1);
          if (head.length < 5 + len) break;
          const manifest = JSON.parse(head.subarray(5, 5 + len).toString()) as ImageFile[];
          for (const f of manifest) fdOf(f.name);
          const wrong = manifest.filter((f) => statSync(join(dir, f.name)).size !== f.size);
          if (wrong.length) throw new PjError(codes.PROTOCOL, `images arrived incomplete: ${wrong.map((f) => f.name).join(', ')}`);
          return total;
        }
        if (type !== DATA) throw new PjError(codes.PROTOCOL, `bad image record type ${type}`);
        const nameLen = head.readUInt16BE(1);
        const size = 3 + nameLen + 12;
        if (head.length < size) break;
        data = { fd: fdOf(head.subarray(3, 3 + nameLen).toString()), offset: Number(head.readBigUInt64BE(3 + nameLen)), left: head.readUInt32BE(3 + nameLen + 8) };
        c = head.subarray(size);
        head = Buffer.alloc(0);
        if (data.left === 0) data = undefined;
      }
    }
    throw new PjError(codes.PROTOCOL, 'the image stream ended before its END record');
  } finally {
    for (const fd of fds.values()) closeSync(fd);
  }
}
