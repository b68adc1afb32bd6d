// A change to an export (create, mkdir, unlink, rename…) asked again after the
// client's connection to the owner dropped must not be done twice: the client
// names each change (a request id) and asks again with the same name; the owner
// answers a change it has done already with the answer it gave. An owner whose
// manager restarted in between has forgotten the first answer: then the error a
// second try meets because the first one happened (ENOENT for a removal or a
// rename, EEXIST for a name made) is taken as that first one's success, as an NFS
// client does without a server's reply cache. An exclusive create stays an error
// (EEXIST cannot tell whose file it is).
import { posix } from 'node:path';
import type { ExportServer } from './export-server.js';

/** Operations that change an export and are asked again, by name, when the owner's connection drops. */
export const CHANGES = new Set<string>(['create', 'mkdir', 'unlink', 'rmdir', 'rename', 'symlink', 'link', 'mknod']);
/** Longer than a client asks again (OWNER_RESTART_MS). */
const KEPT_MS = 60_000;
const MAX_KEPT = 20_000;

export class ChangesOnce {
  #answers = new Map<string, { at: number; answer: Promise<unknown> }>();

  constructor(private readonly server: ExportServer) {}

  /** Runs change `op` (named `rid` by `client`) once; `again`: the client asked before and heard nothing. */
  run(client: string, rid: string, again: boolean, op: string, args: unknown[], change: () => unknown): Promise<unknown> {
    const key = `${client}:${rid}`;
    const known = this.#answers.get(key);
    if (known) return known.answer;
    const answer = (async () => change())().catch((e: NodeJS.ErrnoException) => {
      if (!again) throw e;
      const done = this.#doneBefore(op, args, e.code);
      if (done === undefined) throw e;
      return done;
    });
    this.#forgetOld();
    this.#answers.set(key, { at: Date.now(), answer });
    answer.catch(() => {}); // the caller sees it; kept for a second ask
    return answer;
  }

  /** What `op` answers when `code` says that an earlier try of it (forgotten by a restart) did it. */
  #doneBefore(op: string, args: unknown[], code: string | undefined): unknown {
    const [exp, a, b] = args as [string, string, string];
    const dir = (rel: string) => this.server.lstat(exp, posix.dirname(rel));
    try {
      if ((op === 'unlink' || op === 'rmdir') && code === 'ENOENT') return { dir: dir(a), ino: 0 };
      if ((op === 'mkdir' || op === 'symlink' || op === 'mknod') && code === 'EEXIST') return { attr: this.server.lstat(exp, a), dir: dir(a) };
      if (op === 'link' && code === 'EEXIST') return { attr: this.server.lstat(exp, b), dir: dir(b) };
      if (op === 'rename' && code === 'ENOENT') {
        this.server.lstat(exp, b); // the new name is there: the first try renamed it
        return { fromDir: dir(a), toDir: dir(b) };
      }
    } catch {
      return undefined;
    }
    return undefined;
  }

  #forgetOld(): void {
    const old = Date.now() - KEPT_MS;
    for (const [key, v] of this.#answers) {
      if (v.at > old && this.#answers.size < MAX_KEPT) break;
      this.#answers.delete(key);
    }
  }
}
