// The owner's side of exported character devices (`--device NAME=/dev/…`):
// each appears as the file /pj/<host>/<NAME>. The device is opened non-blocking
// (and never as our controlling tty), so a read that has nothing to return
// waits by retrying for a bounded time and then says EAGAIN; the caller keeps
// asking until data comes or its process is interrupted. A device that is
// missing (unplugged) answers ENOENT until it appears.
import fs from 'node:fs';
import { errnoError } from '../common/errors.js';
import { call, loadBinding } from '../native/loader.js';
import type { ExportInfo } from '../manager/cluster-state.js';
import { attrFromStats } from './export-server.js';
import { O } from './open-flags.js';
import type { Attr } from './protocol.js';

const S_IFREG = 0o100000;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export class DeviceServer {
  #devices = new Map<string, ExportInfo>();
  #handles = new Map<number, number>();
  #clients = new Map<number, string>();
  #next = 1;

  constructor(exports: ExportInfo[]) {
    for (const e of exports) if (e.kind === 'device') this.#devices.set(e.name, e);
  }

  #device(name: string): ExportInfo {
    const d = this.#devices.get(name);
    if (!d) throw errnoError('ENOENT', `no device named ${name}`);
    return d;
  }

  #fd(handle: number): number {
    const fd = this.#handles.get(handle);
    if (fd === undefined) throw errnoError('EBADF', `no open device handle ${handle}`);
    return fd;
  }

  /** The device as a file: a regular file of size 0 with the device's permissions and times. */
  deviceStat(name: string): Attr {
    const a = attrFromStats(fs.statSync(this.#device(name).path, { bigint: true }));
    return { ...a, mode: S_IFREG | (a.mode & 0o777), size: 0, blocks: 0, nlink: 1, rdev: 0 };
  }

  openDevice(name: string, flags: number): { handle: number } {
    const fd = fs.openSync(this.#device(name).path, (flags & O.O_ACCMODE) | O.O_NONBLOCK | O.O_NOCTTY | O.O_CLOEXEC);
    const handle = this.#next++;
    this.#handles.set(handle, fd);
    return { handle };
  }

  /** Up to `size` bytes; waits up to `waitMs` for some to arrive, then EAGAIN. */
  async readDevice(handle: number, size: number, waitMs: number): Promise<Buffer> {
    const buf = Buffer.allocUnsafe(size);
    const until = Date.now() + waitMs;
    for (let delay = 1; ; delay = Math.min(delay * 2, 20)) {
      try {
        const n = fs.readSync(this.#fd(handle), buf, 0, size, null);
        return buf.subarray(0, n);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EAGAIN' || Date.now() >= until) throw e;
      }
      await sleep(delay);
    }
  }

  async writeDevice(handle: number, data: Buffer, waitMs: number): Promise<number> {
    const until = Date.now() + waitMs;
    let done = 0;
    for (let delay = 1; done < data.length; delay = Math.min(delay * 2, 20)) {
      try {
        done += fs.writeSync(this.#fd(handle), data, done, data.length - done, null);
        continue;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EAGAIN' || Date.now() >= until) {
          if (done > 0) return done;
          throw e;
        }
      }
      await sleep(delay);
    }
    return done;
  }

  /** poll(2) events ready now. */
  pollDevice(handle: number, events: number): number {
    return call((ctx) => loadBinding().pollNow(this.#fd(handle), events, ctx));
  }

  releaseDevice(handle: number): void {
    const fd = this.#handles.get(handle);
    if (fd === undefined) return;
    this.#handles.delete(handle);
    this.#clients.delete(handle);
    fs.closeSync(fd);
  }

  /** Marks a handle as held for another host (see releaseClient). */
  adopt(handle: number, client: string): void {
    if (this.#handles.has(handle)) this.#clients.set(handle, client);
  }

  /** A host went away: close the devices it held open. */
  releaseClient(client: string): number {
    const mine = [...this.#clients].filter(([, c]) => c === client).map(([h]) => h);
    mine.forEach((h) => this.releaseDevice(h));
    return mine.length;
  }

  close(): void {
    for (const fd of this.#handles.values()) fs.closeSync(fd);
    this.#handles.clear();
  }
}
