// The source's side of a post-copy move: the frozen job's memory, read in
// place (process_vm_readv) for the destination's pager. Tasks are named as
// CRIU's images and the pager name them: by pid inside the job's namespace.
import { PjError, codes } from '../common/errors.js';
import { readPages } from './page-scan.js';

export class FrozenMemory {
  /** `hostPid`: each task's pid on this host, by its id in the job's namespace. */
  constructor(readonly hostPid: Map<number, number>) {}

  /** 4 KiB per address (u64 LE each) of task `id`. */
  read(id: number, addrs: Buffer): Buffer {
    const pid = this.hostPid.get(id);
    if (pid === undefined) throw new PjError(codes.USAGE, `no task ${id} in the frozen job`);
    return readPages(pid, addrs);
  }
}
