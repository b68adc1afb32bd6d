// Loads the native addon from build/Release or build/Debug and wraps each function
// so that failures become Node-style errors with a JavaScript stack.
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { repoRoot } from '../common/repo-root.js';
import { PjError, codes, systemError, type SyscallContext } from '../common/errors.js';
import type { NativeBinding, PeerCredentials, UffdApi } from './binding.js';

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

function call<T>(fn: (ctx: SyscallContext) => T | undefined): T {
  const ctx: SyscallContext = {};
  const out = fn(ctx);
  if (out === undefined) throw systemError(ctx as Required<SyscallContext>);
  return out;
}

export function peerCred(fd: number): PeerCredentials {
  return call((ctx) => loadBinding().peerCred(fd, ctx));
}

export function uffdProbe(): UffdApi {
  return call((ctx) => loadBinding().uffdProbe(ctx));
}
