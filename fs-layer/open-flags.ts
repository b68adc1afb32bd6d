// open(2) flags Node's fs.constants leaves out (x86-64/aarch64 values), beside the ones it has.
import { constants } from 'node:fs';

export const O = {
  ...constants,
  O_ACCMODE: 0o3,
  O_PATH: 0o10000000,
  O_CLOEXEC: 0o2000000,
} as const;
