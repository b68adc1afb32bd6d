// A file copied into a folder under a name made from its content (<folder>/<hash>/<name>): the same
// content has the same path on every host that copies it, and a changed file never replaces a copy
// that something still runs.
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';

/** The copy's path (made now if it is not there yet, whole or not at all). */
export function copyByContent(path: string, folder: string): string {
  const bytes = readFileSync(path);
  const dir = join(folder, createHash('sha256').update(bytes).digest('hex').slice(0, 16));
  const copy = join(dir, basename(path));
  if (existsSync(copy)) return copy;
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  const tmp = `${copy}.${process.pid}`;
  writeFileSync(tmp, bytes, { mode: statSync(path).mode & 0o777 });
  renameSync(tmp, copy);
  return copy;
}
