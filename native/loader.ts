// Loads the native addon from build/Release or build/Debug and wraps each function
// so that failures become Node-style errors with a JavaScript stack.
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { repoRoot } from '../common/repo-root.js';
import { PjError, codes, systemError, type SyscallContext } from '../common/errors.js';
import type { NativeBinding, PeerCredentials, UffdApi } from './binding.js';

export type { NativeBinding } from './binding.js';

let binding: NativeBinding | undefined;

export function loadBinding(): NativeBinding {
  if (binding) return binding;
  const root = repoRoot();
  const tried = ['Release', 'Debug'].map((kind) => join(root, 'build', kind, 'pj_native.node'));
  const require = createRequire(import.meta.url);
  for (const path of tried) {
    if (!existsSync(path)) continue;
    binding = require(path) as NativeBinding;
    return binding;
  }
  throw new PjError(codes.NATIVE_MISSING, `native addon not built; tried ${tried.join(', ')} (run scripts/setup)`);
}

/** Calls a native function that fills a context on failure; throws the Node-style error. */
export function call<T>(fn: (ctx: SyscallContext) => T | undefined, path?: string): T {
  const ctx: SyscallContext = {};
  const out = fn(ctx);
  if (out === undefined) throw systemError(ctx as Required<SyscallContext>, path);
  return out;
}

export function peerCred(fd: number): PeerCredentials {
  return call((ctx) => loadBinding().peerCred(fd, ctx));
}

export function uffdProbe(): UffdApi {
  return call((ctx) => loadBinding().uffdProbe(ctx));
}

export const RESOLVE_NO_MAGICLINKS = 0x02;
export const RESOLVE_BENEATH = 0x08;

/** openat2 confined beneath `dirfd`: no "..", absolute symlinks or magic links can leave it. */
export function openBeneath(dirfd: number, path: string, flags: number, mode = 0): number {
  return call((ctx) => loadBinding().openat2(dirfd, path, flags, mode, RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS, ctx), path);
}
