// A tunnel's framing (as relay.c speaks it): each chunk is a u32 LE length and
// that many bytes; a zero length is the sender's EOF, in band, so that closing
// the tunnel itself can mean "detached" and never "the stream ended".
export const EOF_FRAME = Buffer.alloc(4);

export function frame(data: Buffer): Buffer[] {
  const h = Buffer.alloc(4);
  h.writeUInt32LE(data.length);
  return [h, data];
}

/** Cuts a byte stream into frames: data to `onData`, a zero frame to `onEof`. */
export class Deframer {
  #header = Buffer.alloc(4);
  #got = 0;
  #left = 0;

  constructor(private readonly onData: (b: Buffer) => void, private readonly onEof: () => void) {}

  push(chunk: Buffer): void {
    let i = 0;
    while (i < chunk.length) {
      if (this.#left === 0) {
        const take = Math.min(4 - this.#got, chunk.length - i);
        chunk.copy(this.#header, this.#got, i, i + take);
        this.#got += take;
        i += take;
        if (this.#got < 4) return;
        this.#got = 0;
        this.#left = this.#header.readUInt32LE(0);
        if (this.#left === 0) this.onEof();
        continue;
      }
      const take = Math.min(this.#left, chunk.length - i);
      this.onData(chunk.subarray(i, i + take));
      this.#left -= take;
      i += take;
    }
  }
}
