// Which namespace a process is in: the inode of its /proc/<pid>/ns/<kind> link
// ("net:[4026531840]"), the same number stat(2) gives for a bound nsfs file.
import { readlinkSync } from 'node:fs';

export type NamespaceKind = 'net' | 'mnt' | 'pid';

/** The namespace inode, or undefined when the process is gone. */
export function namespaceOf(pid: number, kind: NamespaceKind): number | undefined {
  try {
    const m = /\[(\d+)\]/.exec(readlinkSync(`/proc/${pid}/ns/${kind}`));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}
