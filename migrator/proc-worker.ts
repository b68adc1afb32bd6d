// The ProcReader's thread: runs the functions of job-processes.ts by name and
// posts back what they return (or the error's message). It may sleep in the
// kernel on a process's exec lock; that only delays its own answers.
import { parentPort } from 'node:worker_threads';
import * as procs from './job-processes.js';

parentPort!.on('message', ({ id, fn, args }: { id: number; fn: string; args: unknown[] }) => {
  try {
    const value = (procs as unknown as Record<string, (...a: unknown[]) => unknown>)[fn](...args);
    parentPort!.postMessage({ id, value });
  } catch (e) {
    parentPort!.postMessage({ id, error: (e as Error).message });
  }
});
