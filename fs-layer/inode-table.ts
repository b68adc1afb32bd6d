// The kernel's node ids for the /pj tree: the root, one directory per host,
// one per export, and the files and directories inside exports, keyed by
// (host, export, the owner's inode number) so that hard links share a node and
// a rename keeps it. Each node remembers its last known path for path-based
// operations on the owner. Nodes live while the kernel holds lookups on them.
import { FUSE_ROOT_ID } from './protocol.js';

/** `device`: an exported character device, shown as a file; its `exp` is the device's name. */
export type NodeKind = 'root' | 'host' | 'export' | 'entry' | 'device';

export interface Node {
  id: bigint;
  key: string;
  kind: NodeKind;
  host: string;
  exp: string;
  rel: string;
  lookups: number;
  /** The owner's version (mtime, ctime, size) at the last open: unchanged, the kernel may keep its cached pages. */
  version?: string;
  /** Passthrough backing file shared by every open of this node (one id per inode). */
  backing?: { id: number; refs: number };
}

export class InodeTable {
  #byId = new Map<bigint, Node>();
  #byKey = new Map<string, Node>();
  #next = BigInt(FUSE_ROOT_ID) + 1n;
  readonly root: Node;

  constructor() {
    this.root = { id: BigInt(FUSE_ROOT_ID), key: '/', kind: 'root', host: '', exp: '', rel: '', lookups: 1 };
    this.#byId.set(this.root.id, this.root);
  }

  get(id: bigint): Node {
    const n = this.#byId.get(id);
    if (!n) throw Object.assign(new Error(`stale node ${id}`), { code: 'ESTALE' });
    return n;
  }

  /** The node, or undefined when the kernel has forgotten it. */
  peek(id: bigint): Node | undefined {
    return this.#byId.get(id);
  }

  /** The node for a key, created if new; counts one kernel lookup. */
  lookup(kind: NodeKind, host: string, exp: string, rel: string, ownerIno: number): Node {
    const key = kind === 'host' ? `h/${host}` : kind === 'export' ? `e/${host}/${exp}` : kind === 'device' ? `d/${host}/${exp}` : `f/${host}/${exp}/${ownerIno}`;
    let n = this.#byKey.get(key);
    if (!n) {
      n = { id: this.#next++, key, kind, host, exp, rel, lookups: 0 };
      this.#byKey.set(key, n);
      this.#byId.set(n.id, n);
    }
    n.rel = rel;
    n.lookups++;
    return n;
  }

  forget(id: bigint, count: number): void {
    const n = this.#byId.get(id);
    if (!n || n.kind === 'root') return;
    n.lookups -= count;
    if (n.lookups > 0 || n.backing) return;
    this.#byId.delete(id);
    this.#byKey.delete(n.key);
  }

  /** After a rename, nodes at or below the old path live at or below the new one; an exchange moves both ways. */
  moved(host: string, exp: string, from: string, to: string, exchange = false): void {
    const under = (rel: string, dir: string) => rel === dir || rel.startsWith(dir + '/');
    for (const n of this.#byId.values()) {
      if (n.kind !== 'entry' || n.host !== host || n.exp !== exp) continue;
      if (under(n.rel, from)) n.rel = to + n.rel.slice(from.length);
      else if (exchange && under(n.rel, to)) n.rel = from + n.rel.slice(to.length);
    }
  }

  get size(): number { return this.#byId.size; }
}
