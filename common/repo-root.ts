// The repository root, whether code runs from source (tsx) or from dist/.
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { inJobPrivateDir } from './job-private-dirs.js';

export function repoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(dir, 'binding.gyp'))) return dir;
    const up = dirname(dir);
    if (up === dir) throw new Error(`cannot find the PicoJump repository above ${fileURLToPath(import.meta.url)}`);
    dir = up;
  }
}

/** The built CLI entry point, which agents and tests run. */
export const pjCli = (): string => join(repoRoot(), 'dist', 'cli', 'pj.js');

/**
 * A program of test/helpers by a path jobs can open: from a checkout in a folder each job has its
 * own of (/tmp), a copy named by its content in a folder jobs share.
 */
export function helperProgram(name: string): string {
  const path = join(repoRoot(), 'test', 'helpers', name);
  if (!inJobPrivateDir(path)) return path;
  const bytes = readFileSync(path);
  const dir = join(SHARED_HELPERS, createHash('sha256').update(bytes).digest('hex').slice(0, 16));
  const copy = join(dir, name);
  if (!existsSync(copy)) {
    mkdirSync(dir, { recursive: true });
    writeFileSync(`${copy}.${process.pid}`, bytes, { mode: statSync(path).mode & 0o777 });
    renameSync(`${copy}.${process.pid}`, copy);
  }
  return copy;
}

const SHARED_HELPERS = '/var/lib/picojump/helpers';
