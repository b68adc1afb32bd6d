// CRIU's images go from the source's folder to the destination's over the
// mesh, as one upload: the list of files (name, size) first, then their bytes
// back to back. No folder is shared between hosts: in a real cluster there is none.
import { closeSync, createReadStream, mkdirSync, openSync, readdirSync, statSync, writeSync } from 'node:fs';
import { basename, join } from 'node:path';
import { PjError, codes } from '../common/errors.js';

export interface ImageFile { name: string; size: number }

/** The images in `dir` (CRIU's own log stays behind). */
export function imageFiles(dir: string): ImageFile[] {
  return readdirSync(dir).filter((n) => n.endsWith('.img')).map((name) => ({ name, size: statSync(join(dir, name)).size }));
}

/** The bytes of the images, in the order of `files`, counted into `sent` as they go. */
export async function* imageBytes(dir: string, files: ImageFile[], sent: { bytesSent: number }): AsyncGenerator<Buffer> {
  for (const f of files) {
    for await (const chunk of createReadStream(join(dir, f.name), { highWaterMark: 1 << 20 })) {
      sent.bytesSent += (chunk as Buffer).length;
      yield chunk as Buffer;
    }
  }
}

/** Writes the streamed images into `dir`; fails if the stream is not exactly the files announced. */
export async function receiveImages(dir: string, files: ImageFile[], stream: AsyncIterable<Buffer>): Promise<number> {
  for (const f of files) {
    if (basename(f.name) !== f.name || !f.name.endsWith('.img') || !Number.isSafeInteger(f.size) || f.size < 0) {
      throw new PjError(codes.PROTOCOL, `bad image name or size: ${JSON.stringify(f)}`);
    }
  }
  mkdirSync(dir, { recursive: true });
  let i = 0;
  let left = files[0]?.size ?? 0;
  let fd = files.length ? openSync(join(dir, files[0].name), 'w') : -1;
  let total = 0;
  const next = () => {
    closeSync(fd);
    fd = -1;
    for (i++; i < files.length; i++) {
      fd = openSync(join(dir, files[i].name), 'w');
      left = files[i].size;
      if (left > 0) return;
      closeSync(fd);
      fd = -1;
    }
  };
  try {
    if (fd >= 0 && left === 0) next();
    for await (let chunk of stream) {
      while (chunk.length > 0) {
        if (fd < 0) throw new PjError(codes.PROTOCOL, 'more image bytes than announced');
        const n = Math.min(left, chunk.length);
        writeSync(fd, chunk, 0, n);
        total += n;
        left -= n;
        chunk = chunk.subarray(n);
        if (left === 0) next();
      }
    }
    if (fd >= 0 || i < files.length) throw new PjError(codes.PROTOCOL, `the image stream ended early (in ${files[i]?.name ?? '?'})`);
    return total;
  } finally {
    if (fd >= 0) closeSync(fd);
  }
}
