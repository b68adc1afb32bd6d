// The kernel's node ids for the /pj tree: the root, one directory per host,
// one per export, and the files and directories inside exports, keyed by
// (host, export, the owner's inode number) so that hard links share a node and
// a rename keeps it. Each node remembers its last known path for path-based
// operations on the owner, and its other names, for when that one is removed.
// Nodes live while the kernel holds lookups on them.
import { FUSE_ROOT_ID, type Attr } from './protocol.js';
import type { JournalRecord, SessionJournal } from './session-journal.js';

/** `device`: an exported character device, shown as a file; its `exp` is the device's name. */
export type NodeKind = 'root' | 'host' | 'export' | 'entry' | 'device';

export interface Node {
  id: bigint;
  /** The inode number programs see: the same on every host (see inoOf). */
  ino: number;
  key: string;
  kind: NodeKind;
  host: string;
  exp: string;
  rel: string;
  /** Its other names seen (hard links): one takes over `rel` when that name is removed. */
  others?: string[];
  lookups: number;
  /** The owner's version (mtime, ctime, size) at the last open: unchanged, the kernel may keep its cached pages. */
  version?: string;
  /** Passthrough backing file shared by every open of this node (one id per inode). */
  backing?: { id: number; refs: number };
  /** The owner's last word on the attributes, and until when (ms) it is trusted. */
  attr?: Attr;
  attrUntil?: number;
  /** Extended attributes the owner said are absent, and until when (ms): the kernel asks for security.capability before every write. */
  absentXattrs?: Map<string, number>;
}

/**
 * The owner's answers about remote nodes (attributes, absent xattrs) are kept for the attribute
 * timeout, as the kernel keeps them: the kernel drops its copy after each change it makes (a write,
 * a create in a directory), and the owner's post-op attributes answer its next GETATTR without a
 * round trip. Nodes of this host are never cached: passthrough changes them unseen.
 */
/** The key of a node: the kind and what names it on its owner. */
export function keyOf(kind: NodeKind, host: string, exp: string, ownerIno: number): string {
  return kind === 'host' ? `h/${host}` : kind === 'export' ? `e/${host}/${exp}` : kind === 'device' ? `d/${host}/${exp}` : `f/${host}/${exp}/${ownerIno}`;
}

/**
 * The inode number of a key, the same on every host (53 bits of its FNV-1a hash): a program that
 * moves to another host finds its open files where it left them (SQLite checks that the inode of
 * its database's path is still the one it opened, and refuses to write otherwise).
 */
export function inoOf(key: string): number {
  let h = 0xcbf29ce484222325n;
  for (const b of Buffer.from(key)) h = BigInt.asUintN(64, (h ^ BigInt(b)) * 0x100000001b3n);
  return Number((h & 0x1fffffffffffffn) | 2n); // never 0 (no inode) or 1 (the root)
}

const MAX_OTHER_NAMES = 8;

export class InodeTable {
  #byId = new Map<bigint, Node>();
  #byKey = new Map<string, Node>();
  #next = BigInt(FUSE_ROOT_ID) + 1n;
  #replaying = false;
  readonly root: Node;

  constructor(readonly self: string, readonly ttlMs: number, private readonly journal?: SessionJournal) {
    this.root = { id: BigInt(FUSE_ROOT_ID), ino: FUSE_ROOT_ID, key: '/', kind: 'root', host: '', exp: '', rel: '', lookups: 1 };
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
    const key = keyOf(kind, host, exp, ownerIno);
    let n = this.#byKey.get(key);
    const known = n !== undefined && n.rel === rel;
    if (!n) {
      n = { id: this.#next++, ino: inoOf(key), key, kind, host, exp, rel, lookups: 0 };
      this.#byKey.set(key, n);
      this.#byId.set(n.id, n);
    }
    if (n.rel !== rel) {
      n.others = [...(n.others ?? []).filter((o) => o !== rel && o !== n!.rel), n.rel].slice(-MAX_OTHER_NAMES);
      n.rel = rel;
    }
    n.lookups++;
    this.#note(known ? ['l', String(n.id)] : nodeRecord(n));
    return n;
  }

  /** Name `rel` of the node was removed: it goes on by another of its names, if it has one. */
  unlinked(n: Node | undefined, rel: string): void {
    if (!n) return;
    if (n.rel === rel) n.rel = n.others?.pop() ?? rel;
    else n.others = n.others?.filter((o) => o !== rel);
  }

  /** The node of an owner's inode, if the kernel knows it. */
  byInode(host: string, exp: string, ownerIno: number): Node | undefined {
    return this.#byKey.get(keyOf('entry', host, exp, ownerIno));
  }

  remember(n: Node | undefined, attr: Attr): void {
    if (!n || n.host === this.self || n.kind === 'root' || n.kind === 'host') return;
    n.attr = attr;
    n.attrUntil = Date.now() + this.ttlMs;
  }

  /** The attributes the owner gave within the timeout, if any. */
  cached(n: Node): Attr | undefined {
    return n.attr && (n.attrUntil ?? 0) > Date.now() ? n.attr : undefined;
  }

  /** The node changed in a way whose result we were not told. */
  stale(n: Node | undefined): void {
    if (n) n.attrUntil = 0;
  }

  xattrAbsent(n: Node, name: string): boolean {
    return (n.absentXattrs?.get(name) ?? 0) > Date.now();
  }

  /** `name` undefined: the node's extended attributes changed, forget what was absent. */
  absentXattr(n: Node, name?: string): void {
    if (name === undefined) n.absentXattrs = undefined;
    else if (n.host !== this.self) (n.absentXattrs ??= new Map()).set(name, Date.now() + this.ttlMs);
  }

  forget(id: bigint, count: number): void {
    const n = this.#byId.get(id);
    if (!n || n.kind === 'root') return;
    this.#note(['f', String(id), count]);
    n.lookups -= count;
    if (n.lookups > 0 || n.backing) return;
    this.#byId.delete(id);
    this.#byKey.delete(n.key);
  }

  /** After a rename, nodes at or below the old path live at or below the new one; an exchange moves both ways. */
  moved(host: string, exp: string, from: string, to: string, exchange = false): void {
    const under = (rel: string, dir: string) => rel === dir || rel.startsWith(dir + '/');
    this.#note(['m', host, exp, from, to, exchange]);
    for (const n of this.#byId.values()) {
      if (n.kind !== 'entry' || n.host !== host || n.exp !== exp) continue;
      if (n.rel === from || (exchange && n.rel === to)) this.stale(n); // a rename changes the ctime
      const renamed = (rel: string) => (under(rel, from) ? to + rel.slice(from.length) : exchange && under(rel, to) ? from + rel.slice(to.length) : rel);
      n.rel = renamed(n.rel);
      if (n.others) n.others = n.others.map(renamed);
    }
  }

  get size(): number { return this.#byId.size; }

  /** Journals a change, unless it is one being replayed. */
  #note(r: JournalRecord): void {
    if (!this.#replaying) this.journal?.add(r);
  }

  /** The live nodes as journal records (the root is implied). */
  snapshot(): JournalRecord[] {
    return [...this.#byId.values()].filter((n) => n.kind !== 'root').map(nodeRecord);
  }

  /**
   * Replays a journal's node records (see session-journal.ts). Nodes whose lookups reached zero are
   * kept until `prune`, which drops those that no open file holds.
   */
  replay(r: JournalRecord): void {
    if (r[0] === 'n') {
      const [, id, kind, key, host, exp, rel, lookups] = r;
      const n: Node = { id: BigInt(id), ino: inoOf(key), key, kind: kind as NodeKind, host, exp, rel, lookups };
      this.#byKey.set(key, n);
      this.#byId.set(n.id, n);
      if (n.id >= this.#next) this.#next = n.id + 1n;
    } else if (r[0] === 'l' || r[0] === 'f') {
      const n = this.#byId.get(BigInt(r[1]));
      if (n) n.lookups += r[0] === 'l' ? 1 : -r[2];
    } else if (r[0] === 'm') {
      this.#replaying = true;
      this.moved(r[1], r[2], r[3], r[4], r[5]);
      this.#replaying = false;
    }
  }

  prune(): void {
    this.#replaying = true;
    for (const n of [...this.#byId.values()]) if (n.kind !== 'root' && n.lookups <= 0 && !n.backing) this.forget(n.id, 0);
    this.#replaying = false;
  }
}

function nodeRecord(n: Node): JournalRecord {
  return ['n', String(n.id), n.kind, n.key, n.host, n.exp, n.rel, n.lookups];
}
