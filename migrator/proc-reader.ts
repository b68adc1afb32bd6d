// Reads other processes' /proc off the event loop. A process in execve or exit
// holds its exec lock while it waits for this agent to answer its FLUSH on /pj;
// a read of its /proc/<pid>/ns, io, maps or fd made on the thread that must
// answer would never return (FINDINGS 2026-12-05). Here such reads run on a
// thread of their own (proc-worker.ts), one at a time, and the event loop only
// awaits their answers. A read that takes longer than STUCK_MS gives up: its
// thread is left to finish whenever the kernel lets it, and a fresh one serves
// the next reads, so one process stuck for good (in another cluster's dead
// mount, say) cannot stop the reads of every other.
import { Worker } from 'node:worker_threads';
import { PjError, codes } from '../common/errors.js';
import type * as Procs from './job-processes.js';

type Fns = Omit<typeof Procs, 'signalAll'>;
export type ProcFn = { [K in keyof Fns]: Fns[K] extends (...a: never[]) => unknown ? K : never }[keyof Fns];

const STUCK_MS = 10_000;

interface Call { resolve: (v: unknown) => void; reject: (e: Error) => void; worker: Worker; timer: NodeJS.Timeout; what: string }

export class ProcReader {
  #worker: Worker | undefined;
  #calls = new Map<number, Call>();
  #next = 1;
  /** Told when a thread is given up on (for the agent's log). */
  onStuck: (what: string) => void = () => {};

  run<K extends ProcFn>(fn: K, ...args: Parameters<Fns[K]>): Promise<ReturnType<Fns[K]>> {
    const worker = (this.#worker ??= this.#spawn());
    const id = this.#next++;
    const what = `${fn}(${args.join(', ')})`;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => this.#abandon(worker, what), STUCK_MS);
      this.#calls.set(id, { resolve: resolve as (v: unknown) => void, reject, worker, timer, what });
      worker.postMessage({ id, fn, args });
    });
  }

  /** Ends the thread (reads still under way are answered with an error). */
  async close(): Promise<void> {
    const w = this.#worker;
    this.#worker = undefined;
    if (w) {
      this.#fail(w, 'the /proc reader closed');
      await w.terminate();
    }
  }

  #spawn(): Worker {
    // Built, the worker is a .js beside this file; under tsx (tests importing the sources) a .ts.
    const ext = import.meta.url.endsWith('.ts') ? 'ts' : 'js';
    const w = new Worker(new URL(`./proc-worker.${ext}`, import.meta.url));
    w.unref();
    w.on('message', ({ id, value, error }: { id: number; value?: unknown; error?: string }) => {
      const c = this.#calls.get(id);
      if (!c) return;
      this.#calls.delete(id);
      clearTimeout(c.timer);
      if (error === undefined) c.resolve(value);
      else c.reject(new Error(`${c.what}: ${error}`));
    });
    w.on('error', (e) => this.#abandon(w, `the /proc reader failed: ${e.message}`));
    w.on('exit', () => this.#abandon(w, 'the /proc reader exited'));
    return w;
  }

  #abandon(w: Worker, what: string): void {
    if (this.#worker === w) {
      this.#worker = undefined;
      this.onStuck(what);
    }
    this.#fail(w, `reading /proc did not finish within ${STUCK_MS / 1000} s (${what}): a process holds its lock`);
    void w.terminate(); // takes effect once the kernel lets the thread go
  }

  #fail(w: Worker, message: string): void {
    for (const [id, c] of this.#calls) {
      if (c.worker !== w) continue;
      this.#calls.delete(id);
      clearTimeout(c.timer);
      c.reject(new PjError(codes.TIMEOUT, message));
    }
  }
}
