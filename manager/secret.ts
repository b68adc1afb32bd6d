// The cluster secret that authenticates managers to each other. It must be a
// file only its owner can read: a secret any local user can read is no secret.
import { readFileSync, statSync } from 'node:fs';
import { PjError, codes } from '../common/errors.js';

export function readSecretFile(path: string): Buffer {
  let st;
  try {
    st = statSync(path);
  } catch (e) {
    throw new PjError(codes.USAGE, `secret file: ${(e as Error).message}`);
  }
  if ((st.mode & 0o077) !== 0) throw new PjError(codes.USAGE, `secret file ${path} is readable by others (mode ${(st.mode & 0o777).toString(8)}); chmod 600 it`);
  const secret = readFileSync(path);
  if (secret.length < 16) throw new PjError(codes.USAGE, `secret file ${path} holds ${secret.length} bytes; use at least 16 (e.g. head -c 32 /dev/urandom)`);
  return secret;
}
