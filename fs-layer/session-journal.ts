// What the kernel was told on this FUSE connection, kept in a file so that an
// agent that takes the connection back (fuse-keeper.ts) knows every node id
// and file handle the kernel may still name: nodes with their lookup counts,
// renames, open files and directories, and remote writes the kernel was told
// were done but the owner has not yet confirmed. A record is in the file before
// the reply that reveals it reaches the kernel (the filesystem flushes before
// each reply). The file is rewritten from a snapshot when it grows well past
// what is live. Only the agent's own death is guarded against: a write() to
// the file suffices, no fsync (a host that reboots loses its mounts anyway).
import { closeSync, openSync, readFileSync, renameSync, rmSync, writeSync } from 'node:fs';

/**
 * One record: a node's state (`n`), one more lookup (`l`), a forget (`f`), a rename (`m`), an open
 * file (`o`) and its release (`c`), an open directory (`d`) and its release (`e`), a remote write
 * the kernel was answered for (`w`, its data in base64 and the request's number) and its confirmation by the owner (`a`).
 */
export type JournalRecord =
  | ['n', id: string, kind: string, key: string, host: string, exp: string, rel: string, lookups: number]
  | ['l', id: string]
  | ['f', id: string, count: number]
  | ['m', host: string, exp: string, from: string, to: string, exchange: boolean]
  | ['o', fh: string, node: string, flags: number, backingId: number, device: boolean, uid?: number, gid?: number]
  | ['c', fh: string]
  | ['d', fh: string, node: string]
  | ['e', fh: string]
  | ['w', fh: string, seq: number, offset: number, data: string, unique: string]
  | ['a', fh: string, seq: number];

/** Records appended before the file is rewritten from a snapshot, at the least. */
const COMPACT_AFTER = 100_000;

export class SessionJournal {
  readonly #path: string;
  #fd: number;
  #pending: string[] = [];
  #written = 0;

  /** Opens the journal at `path`, empty unless `keep` (a connection taken back). */
  constructor(path: string, keep: boolean) {
    this.#path = path;
    if (!keep) rmSync(path, { force: true });
    this.#fd = openSync(path, 'a');
  }

  /** The records of the connection this journal describes, in order. */
  read(): JournalRecord[] {
    let text: string;
    try {
      text = readFileSync(this.#path, 'utf8');
    } catch {
      return [];
    }
    const out: JournalRecord[] = [];
    for (const line of text.split('\n')) {
      if (!line) continue;
      try {
        out.push(JSON.parse(line) as JournalRecord);
      } catch {
        break; // a record cut short by the agent's death: its reply never reached the kernel
      }
    }
    this.#written = out.length;
    return out;
  }

  add(r: JournalRecord): void {
    if (this.#fd >= 0) this.#pending.push(JSON.stringify(r));
  }

  /** Writes what was added; call before the kernel hears of it. */
  flush(): void {
    if (!this.#pending.length || this.#fd < 0) return;
    writeSync(this.#fd, this.#pending.join('\n') + '\n');
    this.#written += this.#pending.length;
    this.#pending = [];
  }

  /** Whether the file holds so much more than `live` records that it is worth rewriting. */
  wantsCompaction(live: number): boolean {
    return this.#written > COMPACT_AFTER && this.#written > 4 * live;
  }

  /** Replaces the file by `snapshot`, the live state, written whole before it takes the old one's place. */
  compact(snapshot: JournalRecord[]): void {
    this.#pending = [];
    const tmp = `${this.#path}.new`;
    const fd = openSync(tmp, 'w');
    try {
      writeSync(fd, snapshot.map((r) => JSON.stringify(r)).join('\n') + '\n');
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, this.#path);
    closeSync(this.#fd);
    this.#fd = openSync(this.#path, 'a');
    this.#written = snapshot.length;
  }

  /** Stops journaling (the connection is gone, or handed to a newer journal); `remove`: the file too. */
  close(remove: boolean): void {
    if (this.#fd >= 0) closeSync(this.#fd);
    this.#fd = -1;
    this.#pending = [];
    if (remove) rmSync(this.#path, { force: true });
  }
}
