// The repository root, whether code runs from source (tsx) or from dist/.
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

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
