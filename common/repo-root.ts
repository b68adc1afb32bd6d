// The repository root, whether code runs from source (tsx) or from dist/.
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { copyByContent } from './content-copy.js';
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
  return inJobPrivateDir(path) ? copyByContent(path, '/var/lib/picojump/helpers') : path;
}
