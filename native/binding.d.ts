// Every function the native addon exports (native/src/addon.cc registers them).
// Functions that make a syscall take a context object last: on failure they return
// undefined and fill it with { errno, syscall } (see common/errors.ts systemError).
import type { SyscallContext } from '../common/errors.js';

export interface PeerCredentials { pid: number; uid: number; gid: number }
export interface UffdApi { features: number; ioctls: number }

export interface NativeBinding {
  /** getsockopt(SO_PEERCRED) on a connected unix socket. */
  peerCred(fd: number, ctx: SyscallContext): PeerCredentials | undefined;
  /** Opens a userfaultfd, negotiates UFFDIO_API with no features, reports what the kernel offers. */
  uffdProbe(ctx: SyscallContext): UffdApi | undefined;
}
